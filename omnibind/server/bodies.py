"""Request bodies: JSON and multipart forms share one endpoint per operation, parsed by hand so
that both are documented in OpenAPI and validated by the same pydantic model.

A JSON body needs `Content-Type: application/json` (a page on another site cannot send one
without a CORS preflight, which this server never grants) and at most `max_json_bytes`; forms
are `multipart/form-data`. Anything else is a 415. Every malformed body is a 4xx: bad JSON,
JSON nested too deeply, numbers too long to parse, fields of the wrong type or range.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from omnibind.errors import InputError
from omnibind.inputs import Input, load_bytes
from omnibind.server.budget import Budget
from omnibind.server.errors import ApiError, too_large
from omnibind.server.limits import BodyTooLarge
from omnibind.server.settings import ServerSettings


class SearchBody(BaseModel):
    text: str = Field(..., min_length=1, max_length=10_000, description="Text query.")
    k: int = Field(10, ge=1, le=1000)
    modality: str | None = Field(None, max_length=100, description="Item modalities, e.g. 'image,audio'.")
    where: str | None = Field(None, max_length=2000, description="LanceDB SQL filter, e.g. \"size > 1000\".")
    raw: bool = Field(False, description="Rank on raw cosine instead of calibrated scores.")
    tags: list[str] | str | None = Field(None, description="Only items with every one of these tags.")
    after: str | None = Field(None, max_length=64, description="Only items created at or after: 2024-05-01, 30d.")
    before: str | None = Field(None, max_length=64, description="Only items created before this date or age.")
    path_glob: str | None = Field(None, max_length=1000, description="Only paths matching: '*.jpg', '/photos/**'.")
    like: str | None = Field(None, max_length=4096, description="More like this stored item (its id); `text` is then ignored.")
    mode: str | None = Field(None, max_length=16, description="hybrid (default), vector or text (words, BM25).")
    rerank: str | None = Field(None, max_length=64, description="A reranker HTTP callers may name: hubness.")
    collection: str | None = Field(None, max_length=200, description="A served collection (default: the default one).")

    def filters(self) -> "Any":
        """The typed filters (omnibind/filters.py) these fields ask for; FilterError when malformed."""
        from omnibind.filters import Filters

        return Filters.parse(self.where, self.tags, self.after, self.before, self.path_glob)


class TagsBody(BaseModel):
    """PATCH /v1/items/{id}: `tags` replaces them all; else `add`, then `remove`."""

    tags: list[str] | None = Field(None, max_length=64)
    add: list[str] = Field(default_factory=list, max_length=64)
    remove: list[str] = Field(default_factory=list, max_length=64)


class EmbedBody(BaseModel):
    texts: list[str] = Field(..., min_length=1)
    dim: int | None = Field(None, ge=1, le=65536, description="Matryoshka truncation (at most the space's dim).")


class EmbedForm(BaseModel):
    texts: list[str] = Field(default_factory=list)
    dim: int | None = Field(None, ge=1, le=65536)


class ClassifyBody(BaseModel):
    texts: list[str] = Field(..., min_length=1)
    labels: list[str] = Field(..., min_length=2)


class ClassifyForm(BaseModel):
    labels: str = Field("", description="Comma-separated labels.")


class IngestBody(BaseModel):
    path: str = Field(..., min_length=1, max_length=4096,
                      description="A folder or file on the server, inside one of its --root folders.")
    prune: bool = False
    reembed: bool = Field(False, description="Re-embed a collection made by another space with the served one "
                                             "(resumable), before ingesting.")


_MULTIPART = {"multipart/form-data": {"schema": {"type": "object", "properties": {
    "file": {"type": "string", "format": "binary"}, "k": {"type": "integer"}, "modality": {"type": "string"},
    "where": {"type": "string"}, "labels": {"type": "string"}, "texts": {"type": "string"}}}}}


def json_or_form(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` of an endpoint that takes `model` as JSON or the same fields as a form."""
    return {"requestBody": {"content": {"application/json": {"schema": model.model_json_schema()}, **_MULTIPART}}}


def json_only(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


@dataclass(frozen=True)
class FormLimits:
    """How many text fields a multipart form may have and how big each (files are counted apart)."""

    fields: int
    part_bytes: int
    limit: str  # the ServerSettings field a too-big part is over


def form_limits(settings: ServerSettings, endpoint: str) -> FormLimits:
    """Fields of an endpoint's form: texts of `max_text_chars`, or classify's comma-separated labels."""
    text = 4 * settings.max_text_chars + 64  # UTF-8: up to 4 bytes a character
    if endpoint == "classify":
        return FormLimits(8, 4 * settings.max_labels * (settings.max_label_chars + 1), "max_labels")
    return FormLimits(16 + (settings.max_texts if endpoint == "embed" else 0), text, "max_text_chars")


async def parse(request: Request, settings: ServerSettings,
                form: FormLimits | None = None) -> tuple[dict[str, Any], list[UploadFile]]:
    """JSON body or (if `form`) multipart form: (fields, uploaded files)."""
    kind = request.headers.get("content-type", "").lower()
    if form and kind.startswith("multipart/form-data"):
        return await _form(request, settings, form)
    if kind.split(";")[0].strip() == "application/json":
        data = await read_json(request, settings.max_json_bytes)
        if not isinstance(data, dict):
            raise ApiError(422, "the JSON body must be an object")
        return data, []
    wanted = "application/json or multipart/form-data" if form else "application/json"
    raise ApiError(415, f"unsupported content type {kind[:100]!r}: send {wanted}")


async def read_json(request: Request, most: int) -> Any:
    """The JSON body, refused (413) past `most` bytes before or while it is read."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > most:
        raise too_large(f"JSON body of {length} bytes, over the limit of {most}", "max_json_bytes", most)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > most:
            raise too_large(f"JSON body over the limit of {most} bytes", "max_json_bytes", most)
    try:
        return json.loads(body)
    except RecursionError:
        raise ApiError(400, "body is not valid JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, and integers too long to convert
        raise ApiError(400, f"body is not valid JSON: {str(exc)[:200]}") from None


async def _form(request: Request, settings: ServerSettings,
                limits: FormLimits) -> tuple[dict[str, Any], list[UploadFile]]:
    try:
        form = await request.form(max_files=settings.max_files, max_fields=limits.fields,
                                  max_part_size=limits.part_bytes)
    except BodyTooLarge:
        raise
    except Exception as exc:  # starlette's MultiPartException, or the HTTPException it becomes
        why = str(getattr(exc, "detail", exc))[:200]
        if "Too many files" in why:
            raise too_large(f"bad multipart form: {why}", "max_files", settings.max_files) from None
        if "exceeded maximum size" in why:
            raise too_large(f"a form field is over {limits.part_bytes} bytes", limits.limit,
                            getattr(settings, limits.limit)) from None
        raise ApiError(400, f"bad multipart form: {why}") from None
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


def validate(model: type[BaseModel], fields: dict[str, Any]) -> Any:
    """`model` from parsed fields; the first problem as a 422 (the first ones under `details`,
    without the values sent)."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        first = errors[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors[:10]]
        raise ApiError(422, f"invalid request: {where}: {first.get('msg')}", details=details) from None


async def read_upload(upload: UploadFile, budget: Budget) -> Input:
    """Decode an uploaded file within the request's budget (typed errors name the file; one over
    a limit is a 413 that names the limit)."""
    name = (upload.filename or "<upload>")[:200]
    if upload.size is not None and upload.size > budget.per_item.max_file_bytes:
        raise too_large(f"{name}: {upload.size} bytes, over the limit of {budget.per_item.max_file_bytes}",
                        "max_upload_bytes", budget.settings.max_upload_bytes)
    data = await upload.read()
    limits = budget.limits()
    try:
        item = await run_in_threadpool(load_bytes, data, name, limits)
    except InputError as exc:
        raise budget.refused(exc, limits) from None
    del data
    budget.spend(item)
    return item


async def read_uploads(files: list[UploadFile], budget: Budget) -> list[Input]:
    budget.count(len(files))
    return [await read_upload(f, budget) for f in files]
