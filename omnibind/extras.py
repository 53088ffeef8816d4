"""Optional extras: the core install embeds, binds, ingests and searches; the server, Ray and the
evaluation reports need `omnibind[serve]`, `omnibind[ray]` and `omnibind[eval]` (`[all]` for every
one). `require` imports a module of an extra or says, in one line, which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from omnibind.errors import OmnibindError

EXTRAS = {"serve": "the HTTP server", "ray": "the Ray engine", "eval": "evaluation reports and plots",
          "langchain": "the LangChain adapter", "llamaindex": "the LlamaIndex adapter"}


class MissingExtraError(OmnibindError):
    """A feature needs an optional extra that is not installed."""


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or raise MissingExtraError naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module
        raise MissingExtraError(
            f"{EXTRAS.get(extra, extra)} needs the '{extra}' extra ({missing} is not installed): "
            f"pip install 'omnibind[{extra}]'"
        ) from exc
