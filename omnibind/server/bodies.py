"""Request bodies: JSON and multipart forms share one endpoint per operation, parsed by hand so
that both are documented in OpenAPI and validated by the same pydantic model."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from omnibind.inputs import Limits, load_bytes
from omnibind.server.errors import ApiError
from omnibind.server.limits import BodyTooLarge
from omnibind.server.settings import ServerSettings


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


def json_or_form(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` of an endpoint that takes `model` as JSON or the same fields as a form."""
    return {"requestBody": {"content": {"application/json": {"schema": model.model_json_schema()}, **_MULTIPART}}}


async def parse(request: Request, settings: ServerSettings) -> tuple[dict[str, Any], list[UploadFile]]:
    """JSON body or multipart form: (fields, uploaded files)."""
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=settings.max_files, max_fields=64)
        except BodyTooLarge:
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


def validate(model: type[BaseModel], fields: dict[str, Any]) -> Any:
    """`model` from parsed fields; the first problem as a 422 (all of them under `details`)."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        raise ApiError(422, f"invalid request: {where}: {first.get('msg')}", details=json.loads(exc.json())) from None


async def read_upload(upload: UploadFile, limits: Limits) -> Any:
    """Decode an uploaded file with the space's decoding limits (typed errors name the file)."""
    data = await upload.read()
    name = upload.filename or "<upload>"
    return await run_in_threadpool(load_bytes, data, name, limits)
