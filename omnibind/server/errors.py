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

log = logging.getLogger("omnibind.server")


class ApiError(Exception):
    """An error answered as `{"error": message, **extra}` with `status`."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def reply(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Typed errors to their status; anything else to a 500 without details (logged)."""
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
    app.add_exception_handler(Exception, _internal)


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return reply(500, "internal server error (details are in the server log)")
