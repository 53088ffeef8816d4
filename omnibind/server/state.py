"""The app's explicit state: the served collection, its space, the settings and the two locks.

One `ServerState` per app, kept at `app.state.server` and handed to endpoints by the FastAPI
dependencies in `server/deps.py`; nothing is attached to or wrapped around library objects.

* `model_lock`: one model call at a time. Torch and ONNX Runtime already use every core for one
  batch; concurrent batches would only fight over them. Endpoints run model work through
  `run_model` (async endpoints) or `locked_model` (from a worker thread). A search holds it only
  while its query is embedded (`search.query_input`); ranking runs beside other requests.
* `write_lock`: one write (ingest, delete) at a time. Reads (items, media, listing) take no lock.
* An HTTP ingest is one call of `omnibind.ingest.ingest`, the CLI's road, under the write lock;
  it holds `model_lock` around each batch's decoding and embedding (`ingest(model_lock=...)`),
  so searches answer between batches.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

from omnibind.collection import Collection
from omnibind.server.errors import ApiError
from omnibind.server.settings import ServerSettings
from omnibind.space import Space

T = TypeVar("T")


@dataclass
class ServerState:
    collection: Collection
    space: Space
    settings: ServerSettings
    token: str
    model_lock: threading.Lock = field(default_factory=threading.Lock)
    write_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, settings: ServerSettings, token: str, collection: Collection | None = None) -> "ServerState":
        """The state over `collection`, or the one `settings` names (created if missing) under `settings.home`."""
        coll = collection or Collection.open(settings.collection, space=settings.space, home=settings.home)
        return cls(collection=coll, space=coll.space, settings=settings, token=token)

    @property
    def home(self) -> Path | None:
        return self.settings.home

    def locked_model(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` while holding the model lock (call it from a worker thread)."""
        with self.model_lock:
            return fn(*args, **kwargs)

    async def run_model(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in the thread pool, holding the model lock: never on the event loop."""
        return await run_in_threadpool(self.locked_model, fn, *args, **kwargs)

    def target(self, name: str) -> Collection:
        """The collection called `name` under the same home: the served one, or another one opened
        (created if missing) with the served space."""
        if name == self.collection.name:
            return self.collection
        return Collection.open(name, space=self.space, home=self.home)

    def row(self, item_id: str, columns: list[str]) -> dict[str, Any]:
        """One item of the served collection, or a 404."""
        rows = self.collection.get([item_id], columns)
        if not rows:
            raise ApiError(404, f"no item {item_id!r} in collection {self.collection.name!r}")
        return rows[0]
