"""The API by concern, one `APIRouter` each; `ROUTERS` is the order `create_app` includes them in
(media and preview before collections: `/v1/items/{id}/media` and `/v1/items/{id}/preview` must be
tried before `/v1/items/{id}`)."""

from omnibind.server.routers import collections, embed, media, openai, page, preview, search, tags

ROUTERS = [page.router, search.router, embed.router, openai.router, media.router, preview.router, tags.router,
           collections.router]

__all__ = ["ROUTERS"]
