"""The HTTP API and the search page, over one collection and its space.

Endpoints are plain functions run in FastAPI's thread pool, so embedding and LanceDB work never
blocks the event loop; model calls are serialised by one lock (torch and ONNX Runtime already use
every core for one batch), LanceDB reads run concurrently, writes take a write lock. Every error
is JSON `{"error": ..., ...}` with a fitting status; tracebacks stay in the server log.
"""

from __future__ import annotations

import functools
import json
import logging
import mimetypes
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from omnibind.collection import Collection, CollectionError
from omnibind.errors import InputError, OmnibindError
from omnibind.server.settings import ServerSettings, confine

STATIC = Path(__file__).parent / "static"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
log = logging.getLogger("omnibind.server")


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


# -- request bodies (JSON); multipart forms carry the same fields ------------------------------------


class SearchBody(BaseModel):
    text: str = Field(..., min_length=1, max_length=10_000, description="Text query.")
    k: int = Field(10, ge=1, le=1000)
    modality: str | None = Field(None, description="Item modalities, e.g. 'image,audio'.")
    where: str | None = Field(None, max_length=2000, description="LanceDB SQL filter, e.g. \"size > 1000\".")
    raw: bool = Field(False, description="Rank on raw cosine instead of calibrated scores.")


class EmbedBody(BaseModel):
    texts: list[str] = Field(..., min_length=1)
    dim: int | None = Field(None, ge=1, description="Matryoshka truncation.")


class ClassifyBody(BaseModel):
    texts: list[str] = Field(..., min_length=1)
    labels: list[str] = Field(..., min_length=2)


class IngestBody(BaseModel):
    path: str = Field(..., description="A folder or file on the server, inside one of its --root folders.")
    prune: bool = False


_MULTIPART = {"multipart/form-data": {"schema": {"type": "object", "properties": {
    "file": {"type": "string", "format": "binary"}, "k": {"type": "integer"}, "modality": {"type": "string"},
    "where": {"type": "string"}, "labels": {"type": "string"}, "texts": {"type": "string"}}}}}


def create_app(settings: ServerSettings, token: str, collection: Collection | None = None) -> FastAPI:
    """The app for one collection (opened or created from `settings` unless given)."""
    coll = collection or Collection.open(settings.collection, space=settings.space, home=settings.home)
    _serialise_embedding(coll.space)
    write_lock = threading.Lock()
    app = FastAPI(title="omnibind", version=_version(), description="Embed, search and classify text, images, "
                  "audio and video in one space; write endpoints need `Authorization: Bearer <token>`.")
    app.state.collection, app.state.settings = coll, settings
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    _install_error_handlers(app)
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

    @app.post("/v1/search", tags=["search"], openapi_extra={"requestBody": {"content": {
        "application/json": {"schema": SearchBody.model_json_schema()}, **_MULTIPART}}})
    async def search(request: Request) -> dict[str, Any]:
        """Search the collection with a text (JSON) or an uploaded file of any modality (multipart)."""
        fields, files = await _parse(request, settings)
        if files:
            if len(files) != 1:
                raise ApiError(400, "search takes one file")
            query: Any = await _read_upload(files[0], coll)
            fields.setdefault("text", "-")
        body = _validate(SearchBody, fields)
        if not files:
            query = body.text
        k = min(body.k, settings.max_k)
        hits = await run_in_threadpool(_search, coll, query, k, body)
        return {"collection": coll.name, "query": files[0].filename if files else body.text,
                "results": [_hit_json(h) for h in hits]}

    @app.post("/v1/embed", tags=["embed"], openapi_extra={"requestBody": {"content": {
        "application/json": {"schema": EmbedBody.model_json_schema()}, **_MULTIPART}}})
    async def embed(request: Request) -> dict[str, Any]:
        """Vectors for texts (JSON `texts`) or uploaded files (multipart `file`, repeatable)."""
        fields, files = await _parse(request, settings)
        items = [await _read_upload(f, coll) for f in files]
        texts = fields.get("texts") or []
        texts = [texts] if isinstance(texts, str) else texts
        if not files:
            body = _validate(EmbedBody, fields)
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

    @app.post("/v1/classify", tags=["classify"], openapi_extra={"requestBody": {"content": {
        "application/json": {"schema": ClassifyBody.model_json_schema()}, **_MULTIPART}}})
    async def classify(request: Request) -> dict[str, Any]:
        """Zero-shot probabilities over `labels` for texts (JSON) or files (multipart, labels='a,b,c')."""
        from omnibind.classify import classify as run_classify

        fields, files = await _parse(request, settings)
        items = [await _read_upload(f, coll) for f in files]
        if files:
            labels = [x.strip() for x in str(fields.get("labels", "")).split(",") if x.strip()]
            if len(labels) < 2:
                raise ApiError(422, "give at least two comma-separated labels in the 'labels' field")
            inputs: list[Any] = items
        else:
            body = _validate(ClassifyBody, fields)
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
        return _with_links({**row, "metadata": json.loads(row.get("metadata") or "{}")})

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


async def _parse(request: Request, settings: ServerSettings) -> tuple[dict[str, Any], list[UploadFile]]:
    """JSON body or multipart form: (fields, uploaded files)."""
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=settings.max_files, max_fields=64)
        except _TooLarge:
            raise
        except Exception as exc:  # starlette's MultiPartException, or the HTTPException it becomes
            why = str(getattr(exc, "detail", exc))
            raise ApiError(413 if "Too many files" in why else 400, f"bad multipart form: {why}") from None
        fields: dict[str, Any] = {}
        files = []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append(value)
            elif key in fields:
                fields[key] = (fields[key] if isinstance(fields[key], list) else [fields[key]]) + [value]
            else:
                fields[key] = value
        return fields, files
    if kind.startswith("application/json") or not kind:
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(422, "the JSON body must be an object")
        return data, []
    raise ApiError(415, f"unsupported content type {kind!r}: send application/json or multipart/form-data")


def _validate(model: type[BaseModel], fields: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        raise ApiError(422, f"invalid request: {where}: {first.get('msg')}", details=json.loads(exc.json())) from None


async def _read_upload(upload: UploadFile, coll: Collection) -> Any:
    """Decode an uploaded file with the space's decoding limits (typed errors name the file)."""
    from omnibind.inputs import load_bytes

    data = await upload.read()
    name = upload.filename or "<upload>"
    return await run_in_threadpool(load_bytes, data, name, coll.space.limits)


def _row(coll: Collection, item_id: str, columns: list[str]) -> dict[str, Any]:
    rows = coll.get([item_id], columns)
    if not rows:
        raise ApiError(404, f"no item {item_id!r} in collection {coll.name!r}")
    return rows[0]


def _is_file(source: str | None) -> bool:
    return bool(source) and not source.startswith("<") and Path(source).is_file()  # type: ignore[union-attr]


def _with_links(d: dict[str, Any]) -> dict[str, Any]:
    base = "/v1/items/" + quote(d["id"], safe="")
    links = {"media": base + "/media"}
    if d.get("modality") in ("image", "video"):
        links["thumbnail"] = base + "/media?thumbnail=true"
    return {**d, "links": links}


def _hit_json(hit: Any) -> dict[str, Any]:
    d = hit.to_dict()
    d["metadata"] = json.loads(d.get("metadata") or "{}")
    return _with_links(d)


def _install_error_handlers(app: FastAPI) -> None:
    def reply(status: int, message: str, **extra: Any) -> JSONResponse:
        return JSONResponse({"error": message, **extra}, status_code=status)

    handlers: dict[Any, Callable[..., Any]] = {
        ApiError: lambda r, e: reply(e.status, e.message, **e.extra),
        InputError: lambda r, e: reply(422, str(e), source=e.source, reason=e.reason),
        CollectionError: lambda r, e: reply(400, str(e)),
        OmnibindError: lambda r, e: reply(400, str(e)),
        HTTPException: lambda r, e: reply(e.status_code, str(e.detail)),
        RequestValidationError: lambda r, e: reply(422, "invalid request: " + "; ".join(
            f"{'.'.join(str(x) for x in err.get('loc', ()))}: {err.get('msg')}" for err in e.errors())),
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)

    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return reply(500, "internal server error (details are in the server log)")

    app.add_exception_handler(Exception, internal)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Reject request bodies over `max_bytes` with 413, by Content-Length or while streaming
    (chunked uploads are counted as they arrive), before anything is parsed or spooled."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(send)
            return
        received = 0
        started = False

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Callable) -> None:
        body = json.dumps({"error": f"request body over the limit of {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
