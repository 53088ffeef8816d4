"""The API by concern, one `APIRouter` each; `ROUTERS` is the order `create_app` includes them in
(media before collections: `/v1/items/{id}/media` must be tried before `/v1/items/{id}`)."""

from omnibind.server.routers import collections, embed, media, page, search

ROUTERS = [page.router, search.router, embed.router, media.router, collections.router]

__all__ = ["ROUTERS"]
