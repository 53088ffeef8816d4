"""The HTTP API and the search page, over one or more collections (each searched with its own
space; `server/state.py`).

`create_app` builds the app's state (`server/state.py`), includes one router per concern
(`server/routers/`: page + health, search, embed + classify, media, collections + items) and
installs the middleware and the JSON error handlers. From the outside in:

* `SecurityHeaders` (`server/security.py`): CSP, nosniff, frame and referrer policies on every answer;
* `HostCheck`: the Host header must name this server, an Origin header this very origin (DNS
  rebinding, cross-site forms);
* `RateLimit` (`server/throttle.py`): a token bucket per anonymous client address on `/v1/`;
* `BodyLimit` (`server/limits.py`): the request body size, before anything is parsed.

Endpoints get the state and the caller through FastAPI dependencies (`server/deps.py`) and run
in the thread pool, so embedding and LanceDB work never blocks the event loop. Requests are
sized before any work (`server/budget.py`); model work goes through the gate (`server/gate.py`:
FIFO model lock, small chunks, anonymous queue and time budget); LanceDB reads run concurrently
and first see other processes' writes; writes take the write lock. Every error is JSON
`{"error": ..., ...}` with a fitting status; tracebacks stay in the server log.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from omnibind.collection import Collection
from omnibind.server.errors import install_error_handlers
from omnibind.server.limits import BodyLimit
from omnibind.server.routers import ROUTERS
from omnibind.server.routers.page import STATIC
from omnibind.server.security import HostCheck, SecurityHeaders
from omnibind.server.settings import ServerSettings
from omnibind.server.state import ServerState
from omnibind.server.throttle import RateLimit

from omnibind.version import __version__

DESCRIPTION = ("Embed, search and classify text, images, audio and video in one space; write endpoints need "
               "`Authorization: Bearer <token>`, which also lifts the anonymous rate, queue and time limits.")


def create_app(settings: ServerSettings, token: str, collection: Collection | None = None,
               others: Sequence[Collection] = ()) -> FastAPI:
    """The app for the default collection (opened or created from `settings` unless given), `others`
    and those `settings.others` names (`settings.serve_all`: every collection under the home)."""
    state = ServerState.open(settings, token, collection, others)
    app = FastAPI(title="omnibind", version=__version__, description=DESCRIPTION)
    app.state.server = state
    app.state.collection, app.state.settings = state.collection, settings  # read by `omnibind serve`
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)  # added last = runs first: listed inside out
    app.add_middleware(RateLimit, token=token, buckets=state.buckets)
    app.add_middleware(HostCheck, allowed=settings.host_names())
    app.add_middleware(SecurityHeaders)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
