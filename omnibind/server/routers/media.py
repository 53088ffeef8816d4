"""`GET /v1/items/{id}/media` (`/v1/collections/{name}/items/{id}/media` for a served collection
other than the default): an item's file (streamed, HTTP range requests) or its thumbnail.

The file is checked and opened at serve time (`server/files.py`): no symbolic link anywhere in
its stored path, beneath a `--root` when roots are configured; what is streamed is the
descriptor that was checked. Its type comes from the item's modality (an `.html` note is served
as text/plain), and every media answer forbids scripts (`sandbox` CSP, nosniff).
"""

from __future__ import annotations

import mimetypes

from fastapi import APIRouter, Request
from fastapi.responses import Response

from omnibind.collection import source_path
from omnibind.server.deps import Coll, State, scoped_routes
from omnibind.server.errors import ApiError
from omnibind.server.files import OpenFileResponse, open_confined
from omnibind.server.headers import MEDIA_CSP

router = APIRouter(tags=["items"])
MEDIA_HEADERS = {"Content-Security-Policy": MEDIA_CSP, "X-Content-Type-Options": "nosniff"}
TEXT = "text/plain; charset=utf-8"


@scoped_routes(router, "GET", "/v1/items/{item_id:path}/media")
def media(item_id: str, request: Request, state: State, coll: Coll, thumbnail: bool = False) -> Response:
    """The item's file (streamed, HTTP range requests supported) or its JPEG thumbnail."""
    state.refresh(coll)
    row = state.row(item_id, ["id", "modality", "source", "text", "thumbnail"], coll)
    if thumbnail:
        if not row.get("thumbnail"):
            raise ApiError(404, f"item {item_id!r} has no thumbnail ({row['modality']})")
        return Response(row["thumbnail"], media_type="image/jpeg",
                        headers={"Cache-Control": "max-age=3600", **MEDIA_HEADERS})
    source = row.get("source") or ""
    stored_text = row["modality"] == "text" and row.get("text") is not None
    try:
        fd = open_file(item_id, source, state)
    except ApiError as exc:
        if exc.status == 404 and stored_text:  # a note whose file is gone (or never was): its text
            return Response(row["text"], media_type=TEXT, headers=MEDIA_HEADERS)
        raise
    return OpenFileResponse(fd, media_type(row["modality"], source_path(source)), request.headers.get("range"),
                            MEDIA_HEADERS)


def open_file(item_id: str, source: str, state: State) -> int:
    """The item's file, opened under the serve-time rule; 404 if gone, 403 if refused."""
    path = source_path(source)  # an 'fsbytes:' id back to its (not UTF-8) path
    if not path.startswith("/"):
        raise ApiError(404, f"item {item_id!r} has no local file ({source[:200]})")
    try:
        return open_confined(path, state.settings.roots)
    except PermissionError as exc:
        raise ApiError(403, f"the file of item {item_id!r} is not served: {exc}") from None
    except OSError:
        raise ApiError(404, f"the file of item {item_id!r} is no longer at {source}") from None


def media_type(modality: str, source: str) -> str:
    """The file's type as far as its modality allows it (never HTML, SVG or script)."""
    if modality == "text":
        return TEXT
    guessed = mimetypes.guess_type(source)[0] or ""
    if guessed.startswith(f"{modality}/") and "svg" not in guessed:
        return guessed
    return "application/octet-stream"
