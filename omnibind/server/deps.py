"""FastAPI dependencies: the app's state, the caller (address, token or not), and the bearer
token that write endpoints require."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from omnibind.server.errors import ApiError
from omnibind.server.security import Caller, caller_of
from omnibind.server.state import ServerState


def get_state(request: Request) -> ServerState:
    return request.app.state.server


State = Annotated[ServerState, Depends(get_state)]


def get_caller(request: Request, state: State) -> Caller:
    return caller_of(request.scope, state.token)


CallerDep = Annotated[Caller, Depends(get_caller)]


_bearer = HTTPBearer(auto_error=False)  # declares the scheme in OpenAPI (the lock in /docs)


def require_token(caller: CallerDep, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """401 unless `Authorization: Bearer <the server's token>` (compared in constant time)."""
    if not caller.trusted:
        raise ApiError(401, "this endpoint needs 'Authorization: Bearer <token>' (printed when the server started; "
                       "or set OMNIBIND_TOKEN)", headers={"WWW-Authenticate": "Bearer"})
