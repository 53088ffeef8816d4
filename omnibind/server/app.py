"""The HTTP API and the search page, over one collection and its space.

Endpoints are plain functions run in FastAPI's thread pool, so embedding and LanceDB work never
blocks the event loop; model calls are serialised by one lock (torch and ONNX Runtime already use
every core for one batch), LanceDB reads run concurrently, writes take a write lock. Every error
is JSON `{"error": ..., ...}` with a fitting status; tracebacks stay in the server log.
"""

from __future__ import annotations

import functools
import mimetypes
import re
import threading
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from omnibind.collection import Collection
from omnibind.server.bodies import (ClassifyBody, EmbedBody, IngestBody, SearchBody, json_or_form, parse, read_upload,
                                    validate)
from omnibind.server.errors import ApiError, install_error_handlers
from omnibind.server.limits import BodyLimit
from omnibind.server.settings import ServerSettings, confine
from omnibind.server.shapes import hit_json, item_json

STATIC = Path(__file__).parent / "static"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def create_app(settings: ServerSettings, token: str, collection: Collection | None = None) -> FastAPI:
    """The app for one collection (opened or created from `settings` unless given)."""
    coll = collection or Collection.open(settings.collection, space=settings.space, home=settings.home)
    _serialise_embedding(coll.space)
    write_lock = threading.Lock()
    app = FastAPI(title="omnibind", version=_version(), description="Embed, search and classify text, images, "
                  "audio and video in one space; write endpoints need `Authorization: Bearer <token>`.")
    app.state.collection, app.state.settings = coll, settings
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    install_error_handlers(app)
    bearer = HTTPBearer(auto_error=False)

    def require_token(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        import hmac

        if creds is None or not hmac.compare_digest(creds.credentials.encode(), token.encode()):
            raise ApiError(401, "this endpoint needs 'Authorization: Bearer <token>' (printed when the server started; "
                           "or set OMNIBIND_TOKEN)")

    # -- read endpoints -------------------------------------------------------------------------

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "collection": coll.name, "items": len(coll), "space": coll.space.name}

    @app.post("/v1/search", tags=["search"], openapi_extra=json_or_form(SearchBody))
    async def search(request: Request) -> dict[str, Any]:
        """Search the collection with a text (JSON) or an uploaded file of any modality (multipart)."""
        fields, files = await parse(request, settings)
        if files:
            if len(files) != 1:
                raise ApiError(400, "search takes one file")
            query: Any = await read_upload(files[0], coll.space.limits)
            fields.setdefault("text", "-")
        body = validate(SearchBody, fields)
        if not files:
            query = body.text
        k = min(body.k, settings.max_k)
        hits = await run_in_threadpool(_search, coll, query, k, body)
        return {"collection": coll.name, "query": files[0].filename if files else body.text,
                "results": [hit_json(h) for h in hits]}

    @app.post("/v1/embed", tags=["embed"], openapi_extra=json_or_form(EmbedBody))
    async def embed(request: Request) -> dict[str, Any]:
        """Vectors for texts (JSON `texts`) or uploaded files (multipart `file`, repeatable)."""
        fields, files = await parse(request, settings)
        items = [await read_upload(f, coll.space.limits) for f in files]
        texts = fields.get("texts") or []
        texts = [texts] if isinstance(texts, str) else texts
        if not files:
            body = validate(EmbedBody, fields)
            texts, dim = body.texts, body.dim
        else:
            dim = int(fields["dim"]) if fields.get("dim") else None
        if len(texts) > settings.max_texts:
            raise ApiError(413, f"at most {settings.max_texts} texts per request")
        inputs = items + list(texts)
        vectors = await run_in_threadpool(lambda: coll.space.embed(inputs, dim=dim))
        sources = [f.filename for f in files] + ["<text>"] * len(texts)
        modalities = [getattr(x, "modality", "text") for x in items] + ["text"] * len(texts)
        return {"dim": int(vectors.shape[1]), "items": [{"source": s, "modality": m, "vector": v.tolist()}
                                                        for s, m, v in zip(sources, modalities, vectors)]}

    @app.post("/v1/classify", tags=["classify"], openapi_extra=json_or_form(ClassifyBody))
    async def classify(request: Request) -> dict[str, Any]:
        """Zero-shot probabilities over `labels` for texts (JSON) or files (multipart, labels='a,b,c')."""
        from omnibind.classify import classify as run_classify

        fields, files = await parse(request, settings)
        items = [await read_upload(f, coll.space.limits) for f in files]
        if files:
            labels = [x.strip() for x in str(fields.get("labels", "")).split(",") if x.strip()]
            if len(labels) < 2:
                raise ApiError(422, "give at least two comma-separated labels in the 'labels' field")
            inputs: list[Any] = items
        else:
            body = validate(ClassifyBody, fields)
            labels, inputs = body.labels, list(body.texts)
            if len(inputs) > settings.max_texts:
                raise ApiError(413, f"at most {settings.max_texts} texts per request")
        results = await run_in_threadpool(run_classify, coll.space, inputs, labels)
        names = [f.filename for f in files] if files else ["<text>"] * len(inputs)
        return {"results": [{**r.to_dict(), "source": n} for r, n in zip(results, names)]}

    @app.get("/v1/collections", tags=["collections"])
    def collections() -> dict[str, Any]:
        listed = Collection.list(settings.home)
        if not any(c.get("path") == str(coll.path) for c in listed):
            listed.append(coll.stats())
        return {"served": coll.name, "collections": listed}

    @app.get("/v1/items/{item_id:path}/media", tags=["items"])
    def media(item_id: str, thumbnail: bool = False) -> Response:
        """The item's file (streamed, HTTP range requests supported) or its JPEG thumbnail."""
        row = _row(coll, item_id, ["id", "modality", "source", "text", "thumbnail"])
        if thumbnail:
            if not row.get("thumbnail"):
                raise ApiError(404, f"item {item_id!r} has no thumbnail ({row['modality']})")
            return Response(row["thumbnail"], media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})
        if row["modality"] == "text" and row.get("text") is not None and not _is_file(row.get("source")):
            return Response(row["text"], media_type="text/plain; charset=utf-8")
        source = row.get("source")
        if not _is_file(source):
            raise ApiError(404, f"the file of item {item_id!r} is no longer at {source}")
        kind = mimetypes.guess_type(source)[0] or "application/octet-stream"
        return FileResponse(source, media_type=kind)

    @app.get("/v1/items/{item_id:path}", tags=["items"])
    def item(item_id: str) -> dict[str, Any]:
        row = _row(coll, item_id, ["id", "modality", "source", "sha256", "size", "mtime", "metadata", "text", "duration"])
        return item_json(row)

    # -- write endpoints ----------------------------------------------------------------------------

    @app.post("/v1/collections/{name}/ingest", tags=["collections"], dependencies=[Depends(require_token)])
    def ingest(name: str, body: IngestBody) -> dict[str, Any]:
        """Ingest a server-side folder (inside a --root) into a collection; returns the summary."""
        from omnibind.ingest import ingest as run_ingest

        if not NAME_RE.match(name):
            raise ApiError(400, f"bad collection name {name!r}: letters, digits, '-', '_', '.'")
        try:
            path = confine(body.path, settings.roots)
        except PermissionError as exc:
            raise ApiError(403, str(exc)) from None
        if not path.exists():
            raise ApiError(404, f"{body.path}: no such file or folder")
        target = coll if name == coll.name else Collection.open(name, space=coll.space, home=settings.home)
        with write_lock:
            report = run_ingest(target, path, prune=body.prune)
        return {**report.summary(), "collection": target.name,
                "failures": [{"path": p, "reason": r} for p, r in report.failed]}

    @app.delete("/v1/items/{item_id:path}", tags=["items"], dependencies=[Depends(require_token)])
    def delete(item_id: str) -> dict[str, Any]:
        with write_lock:
            removed = coll.delete([item_id])
        if not removed:
            raise ApiError(404, f"no item {item_id!r}")
        return {"deleted": item_id}

    # -- the page -----------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text("utf-8"))

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


# -- helpers ----------------------------------------------------------------------------------------


def _version() -> str:
    from omnibind import __version__

    return __version__


def _serialise_embedding(space: Any) -> None:
    """One model call at a time: concurrent batches would only fight over the same cores."""
    if getattr(space, "_serialised", False):
        return
    lock, inner = threading.Lock(), space.embed

    @functools.wraps(inner)
    def embed(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return inner(*args, **kwargs)

    space.embed, space._serialised = embed, True


def _search(coll: Collection, query: Any, k: int, body: SearchBody) -> list[Any]:
    from omnibind.search import search

    try:
        return search(coll, query, k=k, modality=body.modality, where=body.where, calibrated=not body.raw)
    except ValueError as exc:  # unknown modality
        raise ApiError(422, str(exc)) from None




def _row(coll: Collection, item_id: str, columns: list[str]) -> dict[str, Any]:
    rows = coll.get([item_id], columns)
    if not rows:
        raise ApiError(404, f"no item {item_id!r} in collection {coll.name!r}")
    return rows[0]


def _is_file(source: str | None) -> bool:
    return bool(source) and not source.startswith("<") and Path(source).is_file()  # type: ignore[union-attr]
