"""Adapters that let other libraries embed through an omnibind space (issue 19,
interoperability): LanceDB's embedding-function registry (`integrations/lancedb.py`), LangChain
(`integrations/langchain.py`) and LlamaIndex (`integrations/llamaindex.py`). Each imports its
library only when used, and names the extra to install when it is missing; all of them embed
with `Space.encode_query` (queries) and `Space.encode_document` (documents).

`resolve_space` turns what an adapter was given (a `Space`, a space name or folder, or None for
the default space) into a `Space`, loading each name once per process (the backbones are shared
by every space that names them anyway)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

_SPACES: dict[str, Any] = {}
_LOCK = threading.Lock()


def resolve_space(space: Any = None) -> Any:
    """A `Space`: `space` itself, or the space named by a name/folder (None: "default")."""
    if space is not None and not isinstance(space, (str, Path)):
        return space
    from omnibind.space import load_space

    key = str(space) if space is not None else "default"
    with _LOCK:
        if key not in _SPACES:
            _SPACES[key] = load_space(key)
        return _SPACES[key]
