"""The app's explicit state: the served collections, their spaces, the settings, the locks and
the anonymous limits.

One `ServerState` per app, kept at `app.state.server` and handed to endpoints by the FastAPI
dependencies in `server/deps.py`; nothing is attached to or wrapped around library objects.

* Collections: a registry by name (`served`). `collection` is the default one (the first `-c`),
  which the unscoped routes (`/v1/search`, `/v1/items/{id}`...) serve; `collection_named(name)`
  finds the others (`/v1/collections/{name}/...`, or the search body's `collection`), a 404
  naming the served ones otherwise. Each collection is searched with the space that made it;
  spaces are loaded once per fingerprint (`spaces`), so collections of one space share it.
  `--all` (`settings.serve_all`): every collection under the home, also those created later (by
  the ingest endpoint, or by `omnibind ingest` beside the server: opened on first request).
* `model_lock`: one model call at a time, first come first served (`gate.FairLock`), one per
  server whatever the number of collections or spaces. Torch and ONNX Runtime already use every
  core for one batch; concurrent batches would only fight over them. Endpoints run model work
  through `gate.run` (`server/gate.py`): a search holds the lock while its query is embedded, an
  embed or classify for each small chunk of its inputs, so searches answer between them;
  anonymous work is queued, bounded and timed.
* `write_lock`: one write (ingest, delete) at a time. Reads (items, media, listing) take no lock.
* An HTTP ingest is one call of `omnibind.ingest.ingest`, the CLI's road, under the write lock;
  it holds `model_lock` around each batch's decoding and embedding (`ingest(model_lock=...)`),
  so searches answer between batches.
* `refresh(coll)`: read endpoints first re-read the table's latest version, so rows another
  process wrote (an `omnibind ingest` beside the server) are seen.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from omnibind.collection import Collection
from omnibind.errors import OmnibindError
from omnibind.paths import META_FILE, collection_path
from omnibind.server.errors import ApiError
from omnibind.server.gate import FairLock, ModelGate
from omnibind.server.settings import ServerSettings
from omnibind.server.throttle import TokenBuckets
from omnibind.space import Space


@dataclass
class ServerState:
    collection: Collection  # the default collection: the first `-c`, served by the unscoped routes
    space: Space  # its space: embed and classify use it
    settings: ServerSettings
    token: str
    model_lock: FairLock = field(default_factory=FairLock)
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    refresh_lock: threading.Lock = field(default_factory=threading.Lock)  # guards refresh_locks
    gate: ModelGate = field(init=False)
    buckets: TokenBuckets = field(init=False)
    served: dict[str, Collection] = field(init=False)  # by name, the default first
    spaces: dict[str, Space] = field(init=False)  # by fingerprint: each space loaded once
    skipped: dict[str, str] = field(default_factory=dict)  # `--all`: collections that could not be opened, and why
    on_change: list[Callable[[], None]] = field(default_factory=list)  # called after a collection is added
    refresh_locks: dict[str, threading.Lock] = field(default_factory=dict)
    registry_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        s = self.settings
        self.gate = ModelGate(self.model_lock, s)
        self.buckets = TokenBuckets(s.rate_per_s, s.rate_burst, s.max_tracked_clients)
        self.served = {self.collection.name: self.collection}
        self.spaces = {_fingerprint(self.collection): self.space}

    @classmethod
    def open(cls, settings: ServerSettings, token: str, collection: Collection | None = None,
             others: Sequence[Collection] = ()) -> "ServerState":
        """The state over `collection` (else the one `settings.collection` names, created if
        missing) and `others`, then every name in `settings.others` (which must exist) and, with
        `settings.serve_all`, every collection under the home that opens."""
        coll = collection or Collection.open(settings.collection, space=settings.space, home=settings.home)
        state = cls(collection=coll, space=coll.space, settings=settings, token=token)
        for other in others:
            state.add(other)
        for name in settings.others:
            if collection_path(name, settings.home) not in {c.path for c in state.served.values()}:
                state.add(state.open_collection(name, create=False))
        if settings.serve_all:
            state.open_all()
        return state

    @property
    def home(self) -> Path | None:
        return self.settings.home

    @property
    def default(self) -> Collection:
        return self.collection

    def names(self) -> list[str]:
        """The served collections' names, the default first."""
        return list(self.served)

    def add(self, coll: Collection) -> Collection:
        """Serve `coll` under its name (refused if another folder has that name), its space cached."""
        with self.registry_lock:
            known = self.served.get(coll.name)
            if known is not None and known.path != coll.path:
                raise ValueError(f"two collections are called {coll.name!r}: {known.path} and {coll.path}")
            self.served[coll.name] = coll
            self.spaces.setdefault(_fingerprint(coll), coll.space)
        for listener in list(self.on_change):
            listener()
        return coll

    def open_collection(self, name: str, create: bool = False, reembed: bool = False) -> Collection:
        """Open `name` under the home with the space that made it: the cached one of the same
        fingerprint, else the recorded one (loaded, then cached); a new one gets the default space."""
        path = collection_path(name, self.home)
        recorded = _recorded_fingerprint(path)
        if recorded is None or reembed:
            return Collection.open(name, space=self.space, create=create, reembed=reembed, home=self.home)
        return Collection.open(name, space=self.spaces.get(recorded), create=False, home=self.home)

    def open_all(self) -> None:
        """Serve every collection under the home not served yet (`skipped` says which would not open)."""
        for entry in Collection.list(self.home):
            name = entry.get("name")
            if not isinstance(name, str) or name in self.served:
                continue
            try:
                self.add(self.open_collection(name))
                self.skipped.pop(name, None)
            except (OmnibindError, OSError, ValueError) as exc:
                self.skipped[name] = str(exc)

    def collection_named(self, name: str | None = None) -> Collection:
        """The served collection called `name` (None: the default); a 404 naming the served ones.
        With `--all`, a collection created under the home since the start is opened and served."""
        if name is None or name == "":
            return self.collection
        found = self.served.get(name)
        if found is not None:
            return found
        if self.settings.serve_all and _recorded_fingerprint(self._path_or_none(name)) is not None:
            try:
                return self.add(self.open_collection(name))
            except (OmnibindError, OSError, ValueError) as exc:
                raise ApiError(404, f"collection {name[:100]!r} cannot be served: {exc}") from None
        raise ApiError(404, f"no collection {name[:100]!r} is served here (served: {', '.join(self.served)})",
                       served=self.names())

    def _path_or_none(self, name: str) -> Path | None:
        if "/" in name or name.startswith((".", "~")):
            return None  # names only, never a path from a request
        try:
            return collection_path(name, self.home)
        except OmnibindError:
            return None

    def refresh(self, coll: Collection | None = None) -> None:
        """See other processes' writes to `coll` (default: the default collection); one thread
        refreshes a collection at a time, requests arriving meanwhile go on with the version they see."""
        coll = coll or self.collection
        refresh = getattr(coll, "refresh", None)
        if refresh is None:
            return
        with self.refresh_lock:
            lock = self.refresh_locks.setdefault(str(coll.path), threading.Lock())
        if not lock.acquire(blocking=False):
            return
        try:
            refresh()
        finally:
            lock.release()

    def target(self, name: str, reembed: bool = False) -> Collection:
        """The collection called `name` under the same home, for an ingest: a served one, or
        another one opened (created if missing) with the default space, as before multi-serving
        (with `--all`: with the space that made it, and then served); `reembed` lets one made by
        another space be re-embedded with the default space (the ingest then does so first, as
        `omnibind ingest --reembed` does)."""
        found = self.served.get(name)
        if found is not None and (not reembed or found is self.collection):
            return found
        if self.settings.serve_all:
            return self.add(self.open_collection(name, create=True, reembed=reembed))
        coll = Collection.open(name, space=self.space, home=self.home, reembed=reembed)
        return self.add(coll) if found is not None else coll

    def row(self, item_id: str, columns: list[str], coll: Collection | None = None) -> dict[str, Any]:
        """One item of `coll` (default: the default collection), or a 404."""
        coll = coll or self.collection
        if not item_id or "\x00" in item_id or len(item_id) > 4096:
            raise ApiError(404, "no such item")
        rows = coll.get([item_id], columns)
        if not rows:
            raise ApiError(404, f"no item {item_id[:300]!r} in collection {coll.name!r}")
        return rows[0]

    def links_base(self, coll: Collection) -> str:
        """Where `coll`'s items are: `/v1/items/` for the default collection, else `/v1/collections/{name}/items/`."""
        return "/v1/items/" if coll is self.collection else f"/v1/collections/{quote(coll.name, safe='')}/items/"


def _fingerprint(coll: Collection) -> str:
    return str(coll.meta["space"]["fingerprint"])


def _recorded_fingerprint(path: Path | None) -> str | None:
    """The space fingerprint a collection folder records, or None (no collection there)."""
    if path is None:
        return None
    try:
        return str(json.loads((path / META_FILE).read_text("utf-8"))["space"]["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
