"""omnibind: text, images, audio and video in one embedding space, offline by default.

`import omnibind` is cheap: the names below are imported on first use (PEP 562), so a command
that lists collections or describes a space never pays for torch or LanceDB.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from omnibind.version import __version__

_LAZY = {
    "BackboneError": "omnibind.errors", "InputError": "omnibind.errors", "OmnibindError": "omnibind.errors",
    "MislabelledInputWarning": "omnibind.errors", "SpaceError": "omnibind.errors", "PathLikeTextWarning": "omnibind.errors",
    "Input": "omnibind.inputs", "Limits": "omnibind.inputs", "to_input": "omnibind.inputs",
    "Text": "omnibind.inputs", "File": "omnibind.inputs",
    "EmbedResult": "omnibind.space", "Space": "omnibind.space", "load_space": "omnibind.space",
}

__all__ = [
    "__version__", "load_space", "Space", "EmbedResult", "Input", "Limits", "to_input", "Text", "File",
    "OmnibindError", "InputError", "BackboneError", "SpaceError", "MislabelledInputWarning", "PathLikeTextWarning",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from omnibind.errors import (BackboneError, InputError, MislabelledInputWarning, OmnibindError,
                                 PathLikeTextWarning, SpaceError)
    from omnibind.inputs import File, Input, Limits, Text, to_input
    from omnibind.space import EmbedResult, Space, load_space


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'omnibind' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
