"""`POST /v1/search`: a text (JSON) or an uploaded file of any modality (multipart)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from starlette.concurrency import run_in_threadpool

from omnibind.collection import Collection
from omnibind.search import Hit, query_input
from omnibind.search import search as run_search
from omnibind.server.bodies import SearchBody, form_limits, json_or_form, parse, read_uploads, validate
from omnibind.server.budget import Budget, release_memory
from omnibind.server.deps import CallerDep, State
from omnibind.server.errors import ApiError
from omnibind.server.gate import Job
from omnibind.server.shapes import hit_json

router = APIRouter(tags=["search"])


@router.post("/v1/search", openapi_extra=json_or_form(SearchBody))
async def search(request: Request, state: State, caller: CallerDep, background: BackgroundTasks) -> dict[str, Any]:
    """Search the collection with a text (JSON) or an uploaded file of any modality (multipart)."""
    fields, files = await parse(request, state.settings, form_limits(state.settings, "search"))
    if len(files) > 1:
        raise ApiError(400, "search takes one file")
    if files:
        fields.setdefault("text", "-")
    if fields.get("like") and not files:
        fields.setdefault("text", "-")
    body = validate(SearchBody, fields)
    where, reranker = _checked(body, state)
    k = min(body.k, state.settings.max_k)
    if body.like and not files:
        await run_in_threadpool(state.refresh)
        hits = await run_in_threadpool(_like, state.collection, body.like, k, body, where)
        return {"collection": state.collection.name, "query": body.like, "like": body.like,
                "results": [hit_json(h) for h in hits], "note": getattr(hits, "note", None)}
    budget = Budget(state.settings, state.space.limits)
    query: Any = (await read_uploads(files, budget))[0] if files else budget.text(body.text, "text")
    if budget.big:
        background.add_task(release_memory)
    await run_in_threadpool(state.refresh)
    if reranker is not None or (body.mode or "vector").strip().lower() != "vector":  # words or a reranker: the
        hits = await state.gate.run(caller, lambda job: job.locked(  # query's input, not only its vector
            _search, state.collection, query, None, k, body, where, reranker))
    else:  # only the query's embedding holds the model lock; ranking (in memory or LanceDB) runs beside it
        vector, modality = await state.gate.run(caller, lambda job: job.locked(query_input, state.collection, query))
        hits = await run_in_threadpool(_search, state.collection, vector, modality, k, body, where)
    return {"collection": state.collection.name, "query": files[0].filename if files else body.text,
            "results": [hit_json(h) for h in hits], "note": getattr(hits, "note", None)}


def _checked(body: SearchBody, state: Any) -> tuple[str | None, Any]:
    """(SQL filter, reranker or None) of a search body; 422 for a malformed filter, an unknown
    mode or a reranker HTTP callers may not name (a local model path)."""
    from omnibind import fulltext, rerank

    try:
        fulltext.check_mode(body.mode or fulltext.DEFAULT_MODE)
        where = body.filters().sql()  # FilterError: a date, a tag or a glob that cannot be read
        return where, rerank.get(body.rerank, state.space, served_only=True) if body.rerank else None
    except ValueError as exc:
        raise ApiError(422, f"invalid request: {exc}") from None


def _search(coll: Collection, query: Any, modality: str | None, k: int, body: SearchBody, where: str | None,
            reranker: Any = None) -> list[Hit]:
    try:
        return run_search(coll, query, k=k, modality=body.modality, where=where, calibrated=not body.raw,
                          query_modality=modality, mode=body.mode, rerank=reranker)
    except ValueError as exc:  # unknown modality, a file query in text mode
        raise ApiError(422, str(exc)) from None


def _like(coll: Collection, item_id: str, k: int, body: SearchBody, where: str | None) -> list[Hit]:
    """More like a stored item: its own vector is the query (no model call), the item left out."""
    from omnibind.neighbours import more_like

    if not coll.get([item_id], ["id"]):
        raise ApiError(404, f"no item {item_id[:300]!r} in collection {coll.name!r}")
    try:
        return more_like(coll, item_id, k=k, modality=body.modality, where=where, calibrated=not body.raw)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
