"""Collections and their items: the listing, one item, and the write endpoints (ingest, delete),
which need the bearer token and take the write lock."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends

from omnibind.collection import Collection
from omnibind.ingest import ingest as run_ingest
from omnibind.server.bodies import IngestBody
from omnibind.server.deps import State, require_token
from omnibind.server.errors import ApiError
from omnibind.server.settings import confine
from omnibind.server.shapes import item_json

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
router = APIRouter()


@router.get("/v1/collections", tags=["collections"])
def collections(state: State) -> dict[str, Any]:
    coll = state.collection
    listed = Collection.list(state.home)
    if not any(c.get("path") == str(coll.path) for c in listed):
        listed.append(coll.stats())
    return {"served": coll.name, "collections": listed}


@router.get("/v1/items/{item_id:path}", tags=["items"])
def item(item_id: str, state: State) -> dict[str, Any]:
    return item_json(state.row(item_id, ["id", "modality", "source", "sha256", "size", "mtime", "metadata", "text",
                                         "duration"]))


@router.post("/v1/collections/{name}/ingest", tags=["collections"], dependencies=[Depends(require_token)])
def ingest(name: str, body: IngestBody, state: State) -> dict[str, Any]:
    """Ingest a server-side folder (inside a --root) into a collection; returns the summary."""
    if not NAME_RE.match(name):
        raise ApiError(400, f"bad collection name {name!r}: letters, digits, '-', '_', '.'")
    try:
        path = confine(body.path, state.settings.roots)
    except PermissionError as exc:
        raise ApiError(403, str(exc)) from None
    if not path.exists():
        raise ApiError(404, f"{body.path}: no such file or folder")
    target = state.target(name)
    with state.write_lock:  # the same road as `omnibind ingest`: one library call
        report = run_ingest(target, path, prune=body.prune, model_lock=state.model_lock)
    return {**report.summary(), "collection": target.name,
            "failures": [{"path": p, "reason": r} for p, r in report.failed]}


@router.delete("/v1/items/{item_id:path}", tags=["items"], dependencies=[Depends(require_token)])
def delete(item_id: str, state: State) -> dict[str, Any]:
    with state.write_lock:
        removed = state.collection.delete([item_id])
    if not removed:
        raise ApiError(404, f"no item {item_id!r}")
    return {"deleted": item_id}
