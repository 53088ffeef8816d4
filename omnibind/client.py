"""`omnibind search` through a running `omnibind serve`: a warm server answers in milliseconds
what a fresh process needs seconds of model loading for.

`omnibind serve` advertises itself while it runs (`advertise`): a record in
`<home>/servers/<collection>-<port>.json` (mode 0600; named after its default collection) with
its loopback address, process id, the default collection's folder and space fingerprint, the
same for every other collection it serves (`others`, rewritten by `readvertise` when `--all`
serves a new one) and the omnibind version; the record is removed when the server exits.
`search` uses a server only when its record is the user's own, its process is alive, it serves
the same collection folder made by the same space and the same omnibind version, and its address
is a loopback one; it sends the query (no token: search needs none) to `POST /v1/search` (the
default collection) or `POST /v1/collections/{name}/search` (another served one) and checks that
the answer names the collection. Anything else (no
server, a stale record, a refused connection, any error status, a search the server cannot do
exactly like a local one: `--exact`, a file query, k over the server's cap) searches locally, so
the result never depends on whether a server is up: the hits and their rendering are the same.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from omnibind.hits import Hit, Hits
from omnibind.paths import META_FILE, collection_path, omnibind_home
from omnibind.version import __version__

SERVERS = "servers"
CONNECT_TIMEOUT_S = 0.5  # a live loopback server accepts at once
READ_TIMEOUT_S = 120.0  # the server's first query may load its models
SERVER_MAX_K = 100  # ServerSettings.max_k: above it the server would answer fewer hits
LOOPBACK_NAMES = {"localhost": "127.0.0.1"}


@dataclass
class RemoteHit(Hit):
    """A hit as the server sent it: an `omnibind.hits.Hit` whose `to_dict()` is the server's JSON
    (built there by `Hit.to_dict`), so printing it cannot tell where it came from."""

    raw: dict[str, Any] = field(default_factory=dict)  # the server's JSON, links left out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RemoteHit":
        d = {k: v for k, v in d.items() if k != "links"}
        core = ("id", "source", "modality", "score", "score_kind", "cosine", "segment", "z", "probability")
        return cls(d["id"], d.get("source"), d["modality"], float(d["score"]), float(d["cosine"]),
                   {k: v for k, v in d.items() if k not in core}, d.get("score_kind", "cosine"), d.get("segment"),
                   d.get("z"), d.get("probability"), d)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)


@dataclass
class Results:
    """What `search` returns: the collection's name, the hits, and who answered ("server" or "local")."""

    name: str
    hits: list[Any]
    via: str = "local"
    url: str | None = None


def search(collection: str, query: Any, *, k: int = 10, modality: str | None = None, where: str | None = None,
           raw: bool = False, exact: bool = False, local: bool = False, home: Path | None = None,
           loading: Callable[[], AbstractContextManager[Any]] = nullcontext, mode: str | None = None,
           rerank: str | None = None) -> Results:
    """`omnibind.search.search` over a collection, answered by a running server of it when one
    is up (module docstring), else here; `loading()` wraps the local search (a spinner)."""
    if not (local or exact) and isinstance(query, str) and query and k <= SERVER_MAX_K:
        found = server_search(collection, query, k=k, modality=modality, where=where, raw=raw, home=home,
                              extra={"mode": mode, "rerank": rerank})
        if found is not None:
            return found
    from omnibind.collection import Collection
    from omnibind.search import search as run_search

    with loading():
        coll = Collection.open(collection, create=False, home=home)
        hits = run_search(coll, query, k=k, modality=modality, where=where, calibrated=not raw,
                          exact=True if exact else None, mode=mode, rerank=rerank)
    return Results(coll.name, hits)


def spinner(console: Any, text: str) -> Callable[[], AbstractContextManager[Any]]:
    """A Rich status on `console` while models load, only when it is a terminal."""
    return lambda: console.status(text) if console.is_terminal else nullcontext()


def server_search(collection: str, query: str, *, k: int = 10, modality: str | None = None,
                  where: str | None = None, raw: bool = False, home: Path | None = None,
                  extra: dict[str, Any] | None = None) -> Results | None:
    """The hits of a live server of this collection, or None (no server, or it could not answer);
    `extra` fields (mode, rerank) are sent when set."""
    try:
        path = collection_path(collection, home)
        fingerprint = _fingerprint(path)
    except (OSError, ValueError):
        return None
    for record in live_servers(home):
        name = _served_as(record, str(path), fingerprint)
        if name is None:
            continue
        route = "/v1/search" if name == record.get("collection") else f"/v1/collections/{quote(name, safe='')}/search"
        body = {"text": query, "k": k, "modality": modality, "where": where, "raw": raw,
                **{key: v for key, v in (extra or {}).items() if v is not None}}
        answer = _post(record, route, body)
        if answer is not None and answer.get("collection") == name:
            try:
                hits = Hits(RemoteHit.from_json(h) for h in answer["results"])
                hits.note = answer.get("note")
            except (KeyError, TypeError, ValueError):
                continue
            return Results(str(answer["collection"]), hits, "server", _url(record))
    return None


def _served_as(record: dict[str, Any], path: str, fingerprint: str | None) -> str | None:
    """The name under which the server of `record` serves the collection at `path` made by the
    space `fingerprint` (its default collection, or one of its `others`), or None."""
    others = record.get("others")
    for entry in [record, *(others if isinstance(others, list) else [])]:
        if (isinstance(entry, dict) and entry.get("path") == path and entry.get("fingerprint") == fingerprint
                and isinstance(entry.get("collection"), str)):
            return str(entry["collection"])
    return None


def live_servers(home: Path | None = None) -> list[dict[str, Any]]:
    """Records of this user's running servers with this omnibind version (stale records of
    dead processes are removed)."""
    folder = (home or omnibind_home()) / SERVERS
    out = []
    for file in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            st = file.stat()
            record = json.loads(file.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if st.st_uid != os.getuid() or st.st_mode & 0o022 or not isinstance(record, dict):
            continue  # not written by this user, or writable by others: never trusted
        alive = _alive(record.get("pid"))
        if alive is False:
            with contextlib.suppress(OSError):
                file.unlink()
        elif alive and record.get("version") == __version__ and _url(record):
            out.append(record)
    return out


@contextlib.contextmanager
def advertise(collection: Any, host: str, port: int, home: Path | None = None,
              others: Sequence[Any] = ()) -> Iterator[Path | None]:
    """While the block runs, a record that lets `omnibind search` use this server for `collection`
    (its default) and `others` (none when the server is not reachable on a loopback address);
    removed on exit."""
    address = _loopback(host)
    if address is None or port <= 0:
        yield None
        return
    folder = (home or omnibind_home()) / SERVERS
    file = folder / f"{collection.name}-{port}.json"
    record = {"host": address, "port": port, "pid": os.getpid(), **_entry(collection),
              "others": [_entry(c) for c in others], "version": __version__, "started": time.time()}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_private(file, json.dumps(record, indent=2) + "\n")
    except OSError:
        file = None  # type: ignore[assignment]  # an unwritable home: serve without advertising
    previous = _on_terminate(lambda: _withdraw(file))
    try:
        yield file
    finally:
        _withdraw(file)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def readvertise(file: Path | None, others: Sequence[Any]) -> None:
    """Rewrite this process's record with the other collections it now serves (`serve --all`)."""
    with contextlib.suppress(OSError, ValueError):
        if file is not None:
            record = json.loads(file.read_text("utf-8"))
            if record.get("pid") == os.getpid():
                _write_private(file, json.dumps({**record, "others": [_entry(c) for c in others]}, indent=2) + "\n")


def _entry(collection: Any) -> dict[str, Any]:
    return {"collection": collection.name, "path": str(collection.path),
            "fingerprint": collection.meta["space"]["fingerprint"]}


def _withdraw(file: Path | None) -> None:
    """Remove this process's record (not one a later server on the same port wrote)."""
    with contextlib.suppress(OSError, ValueError):
        if file is not None and json.loads(file.read_text("utf-8")).get("pid") == os.getpid():
            file.unlink()


def _on_terminate(cleanup: Callable[[], None]) -> Any:
    """Run `cleanup` on SIGTERM, then die of it as before. uvicorn restores this handler after its
    graceful shutdown and re-raises the signal, which would otherwise skip every `finally`.
    Returns the previous handler (None outside the main thread, where no handler can be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: Any) -> None:
        cleanup()
        signal.signal(signum, previous if callable(previous) else signal.SIG_DFL)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, handler)
    return previous


def _write_private(file: Path, text: str) -> None:
    """Atomic, mode 0600."""
    tmp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, file)


def _fingerprint(path: Path) -> str | None:
    meta = json.loads((path / META_FILE).read_text("utf-8"))
    return meta.get("space", {}).get("fingerprint")


def _alive(pid: Any) -> bool | None:
    """True: a process of this user; False: no such process; None: someone else's, or no pid."""
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return None
    except OSError:
        return None
    return True


def _loopback(host: str) -> str | None:
    """The loopback address a client reaches a server bound to `host` by, or None."""
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    host = LOOPBACK_NAMES.get(host, host)
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None


def _url(record: dict[str, Any]) -> str | None:
    host, port = record.get("host"), record.get("port")
    if not isinstance(host, str) or not isinstance(port, int) or _loopback(host) != host or not 0 < port < 65536:
        return None
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _post(record: dict[str, Any], route: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON answer of a 200, or None (refused, timed out, any other status, not JSON)."""
    conn = http.client.HTTPConnection(record["host"], record["port"], timeout=CONNECT_TIMEOUT_S)
    try:
        conn.connect()
        conn.sock.settimeout(READ_TIMEOUT_S)
        conn.request("POST", route, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            return None
        answer = json.loads(data)
        return answer if isinstance(answer, dict) else None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()
