"""`omnibind collections` without LanceDB: each collection's stats, cached beside its table.

Importing LanceDB alone takes 1.5-2 s, longer than everything else `collections` does. The row
counts, modalities and index type change only when the table gets a new version (every commit
writes a new manifest under `db/items.lance/_versions/`) or the collection record changes, so
the stats row of `Collection.stats` is kept in `<collection>/stats-cache.json`, keyed by the names
of the table's manifests and the record's size and mtime. A listing whose every key matches
reads JSON only; any miss (new commit, new collection, unreadable cache) lists through
`Collection.list`, as before, and refreshes the caches. Rows that are errors are never cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from omnibind.paths import META_FILE, omnibind_home

CACHE_FILE = "stats-cache.json"
VERSIONS = Path("db") / "items.lance" / "_versions"  # LanceDB's table `items` (collection.TABLE)


def list_collections(home: Path | None = None) -> list[dict[str, Any]]:
    """The same rows as `Collection.list(home)`, from the caches when every one is current."""
    root = (home or omnibind_home()) / "collections"
    folders = [f for f in sorted(root.glob("*/")) if (f / META_FILE).exists()] if root.is_dir() else []
    keys = [state_key(f) for f in folders]  # taken before any stats are read: a commit meanwhile misses next time
    rows = [_cached(f, key) for f, key in zip(folders, keys)]
    if all(r is not None for r in rows):
        return rows  # type: ignore[return-value]
    from omnibind.collection import Collection

    fresh = Collection.list(home)
    for folder, key in zip(folders, keys):
        row = next((r for r in fresh if r.get("path") == str(folder)), None)
        if key is not None and row is not None and "error" not in row:
            _write_cache(folder, key, row)
    return fresh


def remember(collection: Any) -> None:
    """Cache an open collection's stats now (after an ingest, say): the next listing reads JSON."""
    key = state_key(collection.path)
    if key is not None:
        _write_cache(collection.path, key, collection.stats())


def state_key(folder: Path) -> str | None:
    """A digest of what the stats depend on: the table's manifest names and the record's
    size and mtime. None when the table folder is not where LanceDB keeps it (then: no cache)."""
    try:
        manifests = sorted(e.name for e in os.scandir(folder / VERSIONS) if e.name.endswith(".manifest"))
        meta = (folder / META_FILE).stat()
    except OSError:
        return None
    if not manifests:
        return None
    text = json.dumps([manifests, meta.st_size, meta.st_mtime_ns])
    return hashlib.sha256(text.encode()).hexdigest()


def _cached(folder: Path, key: str | None) -> dict[str, Any] | None:
    if key is None:
        return None
    try:
        saved = json.loads((folder / CACHE_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("key") != key or not isinstance(saved.get("row"), dict):
        return None
    return saved["row"] if saved["row"].get("path") == str(folder) else None  # a copied folder: recount


def _write_cache(folder: Path, key: str, row: dict[str, Any]) -> None:
    """Atomic (temp file + rename); a read-only collection folder just stays uncached."""
    tmp = folder / f".{CACHE_FILE}.tmp-{os.getpid()}"
    try:
        tmp.write_text(json.dumps({"key": key, "row": row}, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, folder / CACHE_FILE)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
