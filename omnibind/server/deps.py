"""FastAPI dependencies: the app's state, the collection a route is about, the caller (address,
token or not), and the bearer token that write endpoints require; `scoped_routes` registers an
endpoint at its default-collection path and at its `/v1/collections/{name}/...` alias."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from omnibind.collection import Collection
from omnibind.server.errors import ApiError
from omnibind.server.security import Caller, caller_of
from omnibind.server.state import ServerState


def get_state(request: Request) -> ServerState:
    return request.app.state.server


State = Annotated[ServerState, Depends(get_state)]


def get_collection(request: Request, state: State) -> Collection:
    """The collection a route is about: `{name}` in its path, else the default one (404 if not served)."""
    return state.collection_named(request.path_params.get("name"))


Coll = Annotated[Collection, Depends(get_collection)]

F = TypeVar("F", bound=Callable[..., Any])
NAME_PARAM = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
              "description": "A served collection (GET /v1/collections: `served_all`)."}


def scoped_routes(router: APIRouter, method: str, path: str, **kwargs: Any) -> Callable[[F], F]:
    """Register the endpoint at `path` (`/v1/...`: the default collection) and at
    `/v1/collections/{name}/...` (the served collection `name`; the endpoint reads it through `Coll`)."""
    def register(endpoint: F) -> F:
        router.add_api_route(path, endpoint, methods=[method], **kwargs)
        extra = copy.deepcopy(kwargs.get("openapi_extra") or {})
        extra["parameters"] = [*extra.get("parameters", []), NAME_PARAM]
        alias = "/v1/collections/{name}/" + path.removeprefix("/v1/")
        router.add_api_route(alias, endpoint, methods=[method], **{**kwargs, "openapi_extra": extra})
        return endpoint
    return register


def get_caller(request: Request, state: State) -> Caller:
    return caller_of(request.scope, state.token)


CallerDep = Annotated[Caller, Depends(get_caller)]


_bearer = HTTPBearer(auto_error=False)  # declares the scheme in OpenAPI (the lock in /docs)


def require_token(caller: CallerDep, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """401 unless `Authorization: Bearer <the server's token>` (compared in constant time)."""
    if not caller.trusted:
        raise ApiError(401, "this endpoint needs 'Authorization: Bearer <token>' (printed when the server started; "
                       "or set OMNIBIND_TOKEN)", headers={"WWW-Authenticate": "Bearer"})
