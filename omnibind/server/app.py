"""The HTTP API and the search page, over one collection and its space.

`create_app` builds the app's state (`server/state.py`), includes one router per concern
(`server/routers/`: page + health, search, embed + classify, media, collections + items) and
installs the body limit and the JSON error handlers. Endpoints get the state through FastAPI
dependencies (`server/deps.py`) and run in FastAPI's thread pool, so embedding and LanceDB work
never blocks the event loop; model calls hold the state's model lock (torch and ONNX Runtime
already use every core for one batch), LanceDB reads run concurrently, writes take the write
lock. Every error is JSON `{"error": ..., ...}` with a fitting status; tracebacks stay in the
server log.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from omnibind.collection import Collection
from omnibind.server.errors import install_error_handlers
from omnibind.server.limits import BodyLimit
from omnibind.server.routers import ROUTERS
from omnibind.server.routers.page import STATIC
from omnibind.server.settings import ServerSettings
from omnibind.server.state import ServerState

from omnibind.version import __version__

DESCRIPTION = ("Embed, search and classify text, images, audio and video in one space; write endpoints need "
               "`Authorization: Bearer <token>`.")


def create_app(settings: ServerSettings, token: str, collection: Collection | None = None) -> FastAPI:
    """The app for one collection (opened or created from `settings` unless given)."""
    state = ServerState.open(settings, token, collection)
    app = FastAPI(title="omnibind", version=__version__, description=DESCRIPTION)
    app.state.server = state
    app.state.collection, app.state.settings = state.collection, settings  # read by `omnibind serve`
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
