"""Collections and their items: the listing, one item, and the write endpoints (ingest, delete),
which need the bearer token and take the write lock. Folder paths are listed only to a caller
with the token. Item routes serve the default collection at `/v1/items/{id}` and any served one
at `/v1/collections/{name}/items/{id}`."""

from __future__ import annotations

import os
import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from omnibind.collection import Collection, source_path
from omnibind.ingest import ingest as run_ingest
from omnibind.server.bodies import IngestBody, json_only, parse, validate
from omnibind.server.deps import CallerDep, Coll, State, require_token, scoped_routes
from omnibind.server.errors import ApiError
from omnibind.server.routers.media import open_file
from omnibind.server.settings import confine
from omnibind.server.shapes import item_json

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ITEM_COLUMNS = ["id", "modality", "source", "sha256", "size", "mtime", "metadata", "text", "duration", "tags", "note",
                "created", "width", "height"]
router = APIRouter()


@router.get("/v1/collections", tags=["collections"])
def collections(state: State, caller: CallerDep) -> dict[str, Any]:
    """Every collection under the server's home with its stats (folder paths: with the token only);
    `served`: the default collection's name, `served_all`: every served one's (the default first),
    and each listed collection's `served` (true or false)."""
    if state.settings.serve_all:
        state.open_all()  # collections made beside the server since the last look
    listed = Collection.list(state.home)
    for coll in state.served.values():
        state.refresh(coll)
        if not any(c.get("path") == str(coll.path) for c in listed):
            listed.append(coll.stats())
    paths = {str(c.path) for c in state.served.values()}
    listed = [{**c, "served": c.get("path") in paths} for c in listed]
    if not caller.trusted:
        listed = [{k: ("cannot be read" if k == "error" else v) for k, v in c.items() if k != "path"} for c in listed]
    return {"served": state.collection.name, "served_all": state.names(), "collections": listed}


@scoped_routes(router, "GET", "/v1/items/{item_id:path}", tags=["items"])
def item(item_id: str, state: State, coll: Coll) -> dict[str, Any]:
    """One item (metadata parsed) and its links; `media` only while its file may be served."""
    state.refresh(coll)
    out = item_json(state.row(item_id, ITEM_COLUMNS, coll), state.links_base(coll))
    if source_path(str(out.get("source") or "")).startswith("/"):
        try:
            os.close(open_file(item_id, out["source"], state))
        except ApiError as exc:
            if not (exc.status == 404 and out.get("text") is not None):
                out["links"] = {k: v for k, v in out["links"].items() if k != "media"}
                out["media_error"] = exc.message
    return out


@router.post("/v1/collections/{name}/ingest", tags=["collections"], dependencies=[Depends(require_token)],
             openapi_extra=json_only(IngestBody))
async def ingest(name: str, request: Request, state: State) -> dict[str, Any]:
    """Ingest a server-side folder (inside a --root) into a collection; returns the summary."""
    if not NAME_RE.match(name):
        raise ApiError(400, f"bad collection name {name[:100]!r}: letters, digits, '-', '_', '.'")
    body = validate(IngestBody, (await parse(request, state.settings))[0])
    try:
        path = confine(body.path, state.settings.roots)
    except PermissionError as exc:
        raise ApiError(403, str(exc)) from None
    if not path.exists():
        raise ApiError(404, f"{body.path}: no such file or folder")
    return await run_in_threadpool(_ingest, state, name, path, body.prune, body.reembed)


def _ingest(state: Any, name: str, path: Any, prune: bool, reembed: bool) -> dict[str, Any]:
    target = state.target(name, reembed)
    with state.write_lock:  # the same road as `omnibind ingest`: one library call
        report = run_ingest(target, path, prune=prune, model_lock=state.model_lock)
    return {**report.summary(), "collection": target.name,
            "failures": [{"path": p, "reason": r} for p, r in report.failed]}


@scoped_routes(router, "DELETE", "/v1/items/{item_id:path}", tags=["items"], dependencies=[Depends(require_token)])
def delete(item_id: str, state: State, coll: Coll) -> dict[str, Any]:
    with state.write_lock:
        removed = coll.delete([item_id])
    if not removed:
        raise ApiError(404, f"no item {item_id[:300]!r}")
    return {"deleted": item_id}
