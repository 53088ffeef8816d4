"""omnibind: text, images, audio and video in one embedding space, offline by default."""

from omnibind.version import __version__  # noqa: E402
from omnibind.errors import (BackboneError, InputError, MislabelledInputWarning, OmnibindError,  # noqa: E402
                             PathLikeTextWarning, SpaceError)
from omnibind.inputs import File, Input, Limits, Text, to_input  # noqa: E402
from omnibind.space import EmbedResult, Space, load_space  # noqa: E402

__all__ = [
    "__version__", "load_space", "Space", "EmbedResult", "Input", "Limits", "to_input", "Text", "File",
    "OmnibindError", "InputError", "BackboneError", "SpaceError", "MislabelledInputWarning", "PathLikeTextWarning",
]
