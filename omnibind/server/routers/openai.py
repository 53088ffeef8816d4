"""`POST /v1/embeddings` and `GET /v1/models`: OpenAI's embeddings API over the served space, so
RAG stacks written for OpenAI (the `openai` client, LangChain's or LlamaIndex's OpenAI embeddings,
any HTTP client) use omnibind by changing the base URL (issue 19, interoperability).

* `input`: a string or a list of strings. Token arrays (lists of integers) are refused: they are
  another model's tokens, which omnibind cannot read back into text. Extension: a string that is
  a data URL of an image, audio or video file (`data:image/png;base64,...`) is decoded as that
  file, within the server's usual per-item and per-request limits (`server/budget.py`); the
  whole JSON body is still at most `max_json_bytes`. The content must decode as the modality the
  media type names (`image/...` an image), else a 400.
* `model`: the served space's name or "omnibind"; any other name is a 404 `model_not_found`.
* `encoding_format`: "float" (lists of numbers) or "base64" (little-endian float32 bytes, what the
  `openai` client asks for by default and decodes itself).
* `dimensions`: Matryoshka truncation, renormalised; at most the space's dimension.
* `usage`: tokens of the text tower's own tokenizer where the backbone has one (sentence-
  transformers and Hugging Face towers), else whitespace-separated words; media inputs count 0.
* Auth: as `/v1/embed` — no key gets the anonymous limits, the server's token lifts them; a key
  that is not the token is a 401 (a misconfigured client should not silently become anonymous).

Errors raised here are OpenAI-shaped, `{"error": {"message", "type", "param", "code"}}`;
refusals by the middleware before the route runs (body too large, rate limit, host check) keep
the server's own `{"error": "..."}` shape, with the same status codes.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from omnibind.errors import InputError
from omnibind.inputs import Input, load_bytes
from omnibind.server.bodies import json_only, parse, validate
from omnibind.server.budget import Budget, release_memory
from omnibind.server.deps import CallerDep, State
from omnibind.server.errors import ApiError
from omnibind.server.gate import Job, MeteredSpace
from omnibind.server.security import bearer_ok

router = APIRouter()
ALIAS = "omnibind"  # a model name every omnibind server answers to, whatever its space is called
MEDIA_TYPES = ("image/", "audio/", "video/")
DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)((?:;[\w.+-]+=[^;,]*)*);base64,", re.ASCII)
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
               413: "invalid_request_error", 415: "invalid_request_error", 422: "invalid_request_error",
               429: "rate_limit_error"}


class EmbeddingsBody(BaseModel):
    input: Any = Field(..., description="A string or a list of strings; a data URL "
                                        "(data:image/png;base64,...) is decoded as a media file.")
    model: str = Field(..., min_length=1, max_length=200, description=f"The served space's name, or '{ALIAS}'.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, le=65536, description="Matryoshka truncation (renormalised).")
    user: str | None = Field(None, max_length=1000, description="Accepted and ignored.")


class OpenAIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers

    def response(self) -> JSONResponse:
        kind = ERROR_TYPES.get(self.status, "server_error")
        body = {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


@router.post("/v1/embeddings", tags=["openai"], openapi_extra=json_only(EmbeddingsBody), response_model=None)
async def embeddings(request: Request, state: State, caller: CallerDep,
                     background: BackgroundTasks) -> dict[str, Any] | JSONResponse:
    """OpenAI-compatible embeddings (see the module docstring)."""
    try:
        return await _embeddings(request, state, caller, background)
    except OpenAIError as exc:
        return exc.response()
    except ApiError as exc:
        return _from_api_error(exc).response()
    except InputError as exc:
        return OpenAIError(400, str(exc), "input", "invalid_input").response()


@router.get("/v1/models", tags=["openai"])
async def models(state: State) -> dict[str, Any]:
    """The model names `/v1/embeddings` answers to: the served space, and the alias 'omnibind'."""
    names = dict.fromkeys([state.space.name, ALIAS])
    return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "omnibind"}
                                       for n in names]}


async def _embeddings(request: Request, state: State, caller: CallerDep, background: BackgroundTasks) -> dict[str, Any]:
    authorization = request.headers.get("authorization")
    if authorization and authorization.partition(" ")[2].strip() and not bearer_ok(authorization, state.token):
        raise OpenAIError(401, "incorrect API key: use the server's token (printed when it started, or "
                          "OMNIBIND_TOKEN), or send no key for the anonymous limits", None, "invalid_api_key")
    fields, _ = await parse(request, state.settings)
    body = validate(EmbeddingsBody, fields)
    if body.model not in (state.space.name, ALIAS):
        raise OpenAIError(404, f"the model {body.model!r} does not exist: this server embeds with space "
                          f"{state.space.name!r} (or say {ALIAS!r})", "model", "model_not_found")
    if body.dimensions is not None and body.dimensions > state.space.dim:
        raise OpenAIError(400, f"dimensions: at most {state.space.dim} (the space's dimension)", "dimensions")
    budget = Budget(state.settings, state.space.limits)
    inputs = await _read_inputs(_input_list(body.input), budget)
    if budget.big:
        background.add_task(release_memory)

    def work(job: Job) -> Any:
        return MeteredSpace(state.space, job).embed(inputs, dim=body.dimensions)

    vectors = np.asarray(await state.gate.run(caller, work), dtype="<f4")
    tokens = count_tokens(state.space, [x for x in inputs if isinstance(x, str)])
    data = [{"object": "embedding", "index": i, "embedding": _encoded(v, body.encoding_format)}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": state.space.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _input_list(value: Any) -> list[str]:
    """`input` as a non-empty list of strings; token arrays and other shapes refused."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise OpenAIError(400, "input: give a string or a non-empty list of strings", "input")
    if all(isinstance(x, int) and not isinstance(x, bool) for x in items) or any(isinstance(x, list) for x in items):
        raise OpenAIError(400, "input: token arrays are not supported: omnibind embeds text, not another model's "
                          "token ids; send the strings", "input", "unsupported_input")
    for i, x in enumerate(items):
        if not isinstance(x, str):
            raise OpenAIError(400, f"input[{i}]: expected a string, got {type(x).__name__}", "input")
        if not x.strip():
            raise OpenAIError(400, f"input[{i}]: empty string", "input")
    return items


async def _read_inputs(items: list[str], budget: Budget) -> list[str | Input]:
    """Texts as they are and data URLs decoded, in order, each checked against the budget."""
    budget.count(len(items))
    out: list[str | Input] = []
    for i, item in enumerate(items):
        match = DATA_URL.match(item)
        if match is None:
            out.append(budget.text(item, f"input[{i}]"))
            continue
        out.append(await _read_data_url(item, match, f"input[{i}]", budget))
    return out


async def _read_data_url(item: str, match: re.Match[str], where: str, budget: Budget) -> Input:
    mime = match.group(1).lower()
    if not mime.startswith(MEDIA_TYPES):
        raise OpenAIError(400, f"{where}: data URL of type {mime!r}: only image/*, audio/* and video/* are "
                          "embedded as files (send text as a plain string)", "input")
    payload = item[match.end():]
    if 3 * len(payload) // 4 > budget.per_item.max_file_bytes:
        raise OpenAIError(413, f"{where}: over the limit of {budget.per_item.max_file_bytes} bytes", "input",
                          "max_upload_bytes")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise OpenAIError(400, f"{where}: the data URL is not valid base64", "input") from None
    limits = budget.limits()
    try:
        decoded = await run_in_threadpool(load_bytes, data, where, limits)
    except InputError as exc:
        raise budget.refused(exc, limits) from None
    budget.spend(decoded)
    if decoded.modality != mime.partition("/")[0]:
        raise OpenAIError(400, f"{where}: the data URL says {mime} but its content decodes as {decoded.modality}",
                          "input", "invalid_input")
    return decoded


def _encoded(vector: np.ndarray, encoding_format: str) -> Any:
    if encoding_format == "base64":
        return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector.tolist()


def count_tokens(space: Any, texts: list[str]) -> int:
    """Tokens of the text tower's tokenizer (special tokens included) when its backbone is loaded
    and has one, else whitespace-separated words."""
    tower = getattr(space, "towers", {}).get("text")
    backbone = getattr(tower, "_backbone", None)  # never load a backbone just to count
    tokenizer = getattr(getattr(backbone, "model", None), "tokenizer", None)
    if texts and callable(tokenizer):
        try:
            return sum(len(ids) for ids in tokenizer(texts)["input_ids"])
        except Exception:  # noqa: BLE001 - a tokenizer of another shape: fall back to words
            pass
    return sum(len(t.split()) for t in texts)


def _from_api_error(exc: ApiError) -> OpenAIError:
    """The server's own refusals (limits, budget, gate, body parsing) in OpenAI's shape."""
    details = exc.extra.get("details") or []
    param = str(details[0]["loc"][0]) if details and details[0].get("loc") else exc.extra.get("limit")
    status = 400 if exc.status == 422 else exc.status  # OpenAI answers malformed bodies with 400
    return OpenAIError(status, exc.message, param, exc.extra.get("limit"), exc.headers)
