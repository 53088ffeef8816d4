"""`POST /v1/search`: a text (JSON) or an uploaded file of any modality (multipart)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from omnibind.collection import Collection
from omnibind.search import Hit
from omnibind.search import search as run_search
from omnibind.server.bodies import SearchBody, json_or_form, parse, read_upload, validate
from omnibind.server.deps import State
from omnibind.server.errors import ApiError
from omnibind.server.shapes import hit_json

router = APIRouter(tags=["search"])


@router.post("/v1/search", openapi_extra=json_or_form(SearchBody))
async def search(request: Request, state: State) -> dict[str, Any]:
    """Search the collection with a text (JSON) or an uploaded file of any modality (multipart)."""
    fields, files = await parse(request, state.settings)
    if files:
        if len(files) != 1:
            raise ApiError(400, "search takes one file")
        query: Any = await read_upload(files[0], state.space.limits)
        fields.setdefault("text", "-")
    body = validate(SearchBody, fields)
    if not files:
        query = body.text
    k = min(body.k, state.settings.max_k)
    # the whole search holds the model lock: the query is embedded inside search() (see state.py)
    hits = await state.run_model(_search, state.collection, query, k, body)
    return {"collection": state.collection.name, "query": files[0].filename if files else body.text,
            "results": [hit_json(h) for h in hits]}


def _search(coll: Collection, query: Any, k: int, body: SearchBody) -> list[Hit]:
    try:
        return run_search(coll, query, k=k, modality=body.modality, where=body.where, calibrated=not body.raw)
    except ValueError as exc:  # unknown modality
        raise ApiError(422, str(exc)) from None
