"""`POST /v1/search`: a text (JSON) or an uploaded file of any modality (multipart), in the default
collection or the served one the body's `collection` names; `POST /v1/collections/{name}/search`
is the same in collection `name`. The query is embedded by that collection's own space."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from starlette.concurrency import run_in_threadpool

from omnibind import fulltext
from omnibind.collection import Collection
from omnibind.search import Hit, embedded_query
from omnibind.search import search as run_search
from omnibind.server.bodies import SearchBody, form_limits, json_or_form, parse, read_uploads, validate
from omnibind.server.budget import Budget, release_memory
from omnibind.server.deps import CallerDep, State, scoped_routes
from omnibind.server.errors import ApiError
from omnibind.server.gate import Job
from omnibind.server.shapes import hit_json

router = APIRouter(tags=["search"])


@scoped_routes(router, "POST", "/v1/search", openapi_extra=json_or_form(SearchBody))
async def search(request: Request, state: State, caller: CallerDep, background: BackgroundTasks) -> dict[str, Any]:
    """Search a collection with a text (JSON) or an uploaded file of any modality (multipart)."""
    fields, files = await parse(request, state.settings, form_limits(state.settings, "search"))
    if len(files) > 1:
        raise ApiError(400, "search takes one file")
    if files:
        fields.setdefault("text", "-")
    if fields.get("like") and not files:
        fields.setdefault("text", "-")
    body = validate(SearchBody, fields)
    coll = _collection(state, request.path_params.get("name"), body.collection)
    where, reranker = _checked(body, coll)
    k = min(body.k, state.settings.max_k)
    items = state.links_base(coll)
    if body.like and not files:
        await run_in_threadpool(state.refresh, coll)
        hits = await run_in_threadpool(_like, coll, body.like, k, body, where)
        return {"collection": coll.name, "query": body.like, "like": body.like,
                "results": [hit_json(h, items) for h in hits], "note": getattr(hits, "note", None)}
    budget = Budget(state.settings, coll.space.limits)
    query: Any = (await read_uploads(files, budget))[0] if files else budget.text(body.text, "text")
    if budget.big:
        background.add_task(release_memory)
    await run_in_threadpool(state.refresh, coll)
    if reranker is not None:  # a reranker may run a model: the whole search holds the model lock
        hits = await state.gate.run(caller, lambda job: job.locked(_search, coll, query, None, k, body, where, reranker))
    else:  # only the query's embedding holds the model lock; ranking (words, vectors) runs beside it
        vector, modality, item = await state.gate.run(caller, lambda job: job.locked(embedded_query, coll, query, None))
        hits = await run_in_threadpool(_search, coll, vector, modality, k, body, where, None, item)
    return {"collection": coll.name, "query": files[0].filename if files else body.text,
            "results": [hit_json(h, items) for h in hits], "note": getattr(hits, "note", None)}


def _collection(state: Any, in_path: str | None, in_body: str | None) -> Collection:
    """The collection to search: the path's, else the body's `collection`, else the default (both: they must agree)."""
    if in_path is not None and in_body and in_body != in_path:
        raise ApiError(400, f"the path names collection {in_path[:100]!r}, the body {in_body[:100]!r}")
    return state.collection_named(in_path or in_body or None)


def _checked(body: SearchBody, coll: Collection) -> tuple[str | None, Any]:
    """(SQL filter, reranker or None) of a search body; 422 for a malformed filter, an unknown
    mode or a reranker HTTP callers may not name (a local model path)."""
    from omnibind import rerank

    try:
        fulltext.check_mode(body.mode or fulltext.DEFAULT_MODE)
        where = body.filters().sql()  # FilterError: a date, a tag or a glob that cannot be read
        return where, rerank.get(body.rerank, coll.space, served_only=True) if body.rerank else None
    except ValueError as exc:
        raise ApiError(422, f"invalid request: {exc}") from None


def _search(coll: Collection, query: Any, modality: str | None, k: int, body: SearchBody, where: str | None,
            reranker: Any = None, item: Any = None) -> list[Hit]:
    try:
        return run_search(coll, query, k=k, modality=body.modality, where=where, calibrated=not body.raw,
                          query_modality=modality, mode=body.mode, rerank=reranker, query_item=item)
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
