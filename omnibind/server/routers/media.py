"""`GET /v1/items/{id}/media`: an item's file (streamed, HTTP range requests) or its thumbnail."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from omnibind.server.deps import State
from omnibind.server.errors import ApiError

router = APIRouter(tags=["items"])


@router.get("/v1/items/{item_id:path}/media")
def media(item_id: str, state: State, thumbnail: bool = False) -> Response:
    """The item's file (streamed, HTTP range requests supported) or its JPEG thumbnail."""
    row = state.row(item_id, ["id", "modality", "source", "text", "thumbnail"])
    if thumbnail:
        if not row.get("thumbnail"):
            raise ApiError(404, f"item {item_id!r} has no thumbnail ({row['modality']})")
        return Response(row["thumbnail"], media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})
    if row["modality"] == "text" and row.get("text") is not None and not _is_file(row.get("source")):
        return Response(row["text"], media_type="text/plain; charset=utf-8")
    source = row.get("source")
    if not _is_file(source):
        raise ApiError(404, f"the file of item {item_id!r} is no longer at {source}")
    kind = mimetypes.guess_type(source)[0] or "application/octet-stream"  # type: ignore[arg-type]
    return FileResponse(source, media_type=kind)  # type: ignore[arg-type]


def _is_file(source: str | None) -> bool:
    return bool(source) and not source.startswith("<") and Path(source).is_file()  # type: ignore[union-attr]
