"""The app's explicit state: the served collection, its space, the settings, the locks and the
anonymous limits.

One `ServerState` per app, kept at `app.state.server` and handed to endpoints by the FastAPI
dependencies in `server/deps.py`; nothing is attached to or wrapped around library objects.

* `model_lock`: one model call at a time, first come first served (`gate.FairLock`). Torch and
  ONNX Runtime already use every core for one batch; concurrent batches would only fight over
  them. Endpoints run model work through `gate.run` (`server/gate.py`): a search holds the lock
  while its query is embedded, an embed or classify for each small chunk of its inputs, so
  searches answer between them; anonymous work is queued, bounded and timed.
* `write_lock`: one write (ingest, delete) at a time. Reads (items, media, listing) take no lock.
* An HTTP ingest is one call of `omnibind.ingest.ingest`, the CLI's road, under the write lock;
  it holds `model_lock` around each batch's decoding and embedding (`ingest(model_lock=...)`),
  so searches answer between batches.
* `refresh()`: read endpoints first re-read the table's latest version, so rows another process
  wrote (an `omnibind ingest` beside the server) are seen.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnibind.collection import Collection
from omnibind.server.errors import ApiError
from omnibind.server.gate import FairLock, ModelGate
from omnibind.server.settings import ServerSettings
from omnibind.server.throttle import TokenBuckets
from omnibind.space import Space


@dataclass
class ServerState:
    collection: Collection
    space: Space
    settings: ServerSettings
    token: str
    model_lock: FairLock = field(default_factory=FairLock)
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    refresh_lock: threading.Lock = field(default_factory=threading.Lock)
    gate: ModelGate = field(init=False)
    buckets: TokenBuckets = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.gate = ModelGate(self.model_lock, s)
        self.buckets = TokenBuckets(s.rate_per_s, s.rate_burst, s.max_tracked_clients)

    @classmethod
    def open(cls, settings: ServerSettings, token: str, collection: Collection | None = None) -> "ServerState":
        """The state over `collection`, or the one `settings` names (created if missing) under `settings.home`."""
        coll = collection or Collection.open(settings.collection, space=settings.space, home=settings.home)
        return cls(collection=coll, space=coll.space, settings=settings, token=token)

    @property
    def home(self) -> Path | None:
        return self.settings.home

    def refresh(self) -> None:
        """See other processes' writes (`Collection.refresh`, where the library has it); one
        thread refreshes at a time, requests arriving meanwhile go on with the version they see."""
        refresh = getattr(self.collection, "refresh", None)
        if refresh is None or not self.refresh_lock.acquire(blocking=False):
            return
        try:
            refresh()
        finally:
            self.refresh_lock.release()

    def target(self, name: str, reembed: bool = False) -> Collection:
        """The collection called `name` under the same home: the served one, or another one opened
        (created if missing) with the served space; `reembed` lets one made by another space be
        re-embedded with it (the ingest then does so first, as `omnibind ingest --reembed` does)."""
        if name == self.collection.name:
            return self.collection
        return Collection.open(name, space=self.space, home=self.home, reembed=reembed)

    def row(self, item_id: str, columns: list[str]) -> dict[str, Any]:
        """One item of the served collection, or a 404."""
        if not item_id or "\x00" in item_id or len(item_id) > 4096:
            raise ApiError(404, "no such item")
        rows = self.collection.get([item_id], columns)
        if not rows:
            raise ApiError(404, f"no item {item_id[:300]!r} in collection {self.collection.name!r}")
        return rows[0]
