"""Every error is JSON `{"error": ..., ...}` with a fitting status; tracebacks stay in the server log."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from omnibind.collection import CollectionError
from omnibind.errors import InputError, OmnibindError
from omnibind.server.headers import security_headers

log = logging.getLogger("omnibind.server")


class ApiError(Exception):
    """An error answered as `{"error": message, **extra}` with `status` (and `headers`, e.g. Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.headers, self.extra = status, message, headers, extra


def too_large(message: str, limit: str, most: float, **extra: Any) -> ApiError:
    """A 413 that names the limit (a `ServerSettings` field) and its value."""
    return ApiError(413, message, limit=limit, max=most, **extra)


def retry_later(status: int, message: str, seconds: float) -> ApiError:
    """A 429 or 503 with `Retry-After` (whole seconds, at least 1)."""
    after = max(1, int(seconds + 0.999))
    return ApiError(status, message, headers={"Retry-After": str(after)}, retry_after=after)


def reply(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Typed errors to their status; anything else to a 500 without details (logged)."""
    handlers: dict[Any, Callable[..., Any]] = {
        ApiError: lambda r, e: reply(e.status, e.message, e.headers, **e.extra),
        InputError: lambda r, e: reply(422, str(e), source=e.source, reason=e.reason),
        CollectionError: lambda r, e: reply(400, str(e)),
        OmnibindError: lambda r, e: reply(400, str(e)),
        HTTPException: lambda r, e: reply(e.status_code, str(e.detail)),
        RequestValidationError: lambda r, e: reply(422, "invalid request: " + "; ".join(
            f"{'.'.join(str(x) for x in err.get('loc', ()))}: {err.get('msg')}" for err in e.errors())),
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)
    app.add_exception_handler(Exception, _internal)


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    # answered outside the middleware stack (Starlette's ServerErrorMiddleware): add the security headers here
    return reply(500, "internal server error (details are in the server log)", security_headers(request.url.path))
