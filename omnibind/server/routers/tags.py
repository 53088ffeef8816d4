"""`PATCH /v1/items/{id}`: change an item's tags (token required, under the write lock). The tags
are typed columns (omnibind/facts.py): searches filter on them at once (`tags` in /v1/search)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from omnibind.collection import CollectionError
from omnibind.server.bodies import TagsBody, json_only, parse, validate
from omnibind.collection import Collection
from omnibind.server.deps import Coll, State, require_token, scoped_routes
from omnibind.server.errors import ApiError

router = APIRouter(tags=["items"])


@scoped_routes(router, "PATCH", "/v1/items/{item_id:path}", dependencies=[Depends(require_token)],
               openapi_extra=json_only(TagsBody))
async def patch_item(item_id: str, request: Request, state: State, coll: Coll) -> dict[str, Any]:
    """Set (`tags`), add or remove an item's tags; answers with the item's tags now."""
    body = validate(TagsBody, (await parse(request, state.settings))[0])
    if body.tags is None and not body.add and not body.remove:
        raise ApiError(422, "invalid request: give tags (replace all), add or remove")
    return await run_in_threadpool(_tag, state, coll, item_id, body)


def _tag(state: Any, coll: Collection, item_id: str, body: TagsBody) -> dict[str, Any]:
    state.refresh(coll)
    with state.write_lock:
        try:
            tags = coll.tag([item_id], add=body.add, remove=body.remove, replace=body.tags)
        except CollectionError as exc:
            raise ApiError(404, str(exc)) from None
        except ValueError as exc:  # a tag too long, or with control characters
            raise ApiError(422, f"invalid request: {exc}") from None
    return {"id": item_id, "tags": tags[item_id]}
