"""Where collections live, without importing LanceDB, PyArrow or torch.

`omnibind collections`, `omnibind search` (looking for a running server) and the server settings
need the data folder and a collection's folder long before (or instead of) opening its table;
these lookups live here so that they cost nothing to import. `omnibind.collection` re-exports them.
"""

from __future__ import annotations

import os
from pathlib import Path

from omnibind.errors import OmnibindError

HOME_ENV = "OMNIBIND_HOME"
META_FILE = "collection.json"


class CollectionError(OmnibindError):
    """A collection is missing, malformed, or was made by a different space."""


def omnibind_home() -> Path:
    """Where omnibind keeps user data: $OMNIBIND_HOME, else the platform's user data dir."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("omnibind"))


def collection_path(name_or_path: str | Path, home: Path | None = None) -> Path:
    """A bare name is a folder under <home>/collections; anything with a slash is a path."""
    text = str(name_or_path)
    if not text.strip():
        raise CollectionError("a collection needs a name or a path")
    if isinstance(name_or_path, Path) or os.sep in text or text.startswith((".", "~")):
        return Path(text).expanduser().resolve()
    if text in (".", "..") or any(c in text for c in '\\:*?"<>|'):
        raise CollectionError(f"bad collection name {text!r}: use letters, digits, '-', '_' or a folder path")
    return (home or omnibind_home()) / "collections" / text


def existing_collection(name_or_path: str | Path, home: Path | None = None) -> Path:
    """The folder of a collection that exists; a `CollectionError` naming the ones that do, so a
    typo is never served (or searched) as a new, empty collection."""
    path = collection_path(name_or_path, home)
    if (path / META_FILE).is_file():
        return path
    root = (home or omnibind_home()) / "collections"
    have = sorted(p.name for p in root.glob("*") if (p / META_FILE).is_file()) if root.is_dir() else []
    raise CollectionError(f"no collection {str(name_or_path)!r} at {path} (have: {', '.join(have) or 'none'}); "
                          f"fill it first: omnibind ingest FOLDER -c {name_or_path}")
