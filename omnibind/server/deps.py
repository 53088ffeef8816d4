"""FastAPI dependencies: the app's state, and the bearer token that write endpoints require."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from omnibind.server.errors import ApiError
from omnibind.server.state import ServerState


def get_state(request: Request) -> ServerState:
    return request.app.state.server


State = Annotated[ServerState, Depends(get_state)]
_bearer = HTTPBearer(auto_error=False)


def require_token(state: State,
                  creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """401 unless `Authorization: Bearer <the server's token>` (compared in constant time)."""
    if creds is None or not hmac.compare_digest(creds.credentials.encode(), state.token.encode()):
        raise ApiError(401, "this endpoint needs 'Authorization: Bearer <token>' (printed when the server started; "
                       "or set OMNIBIND_TOKEN)")
