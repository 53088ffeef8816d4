"""Typed errors: library code raises these, the CLI and server turn them into messages."""

from __future__ import annotations


class OmnibindError(Exception):
    """Base class of every error omnibind raises on purpose."""


class InputError(OmnibindError):
    """An input could not be turned into something a tower can embed.

    `source` names the input (a path, or a short description of an in-memory object);
    `reason` says what is wrong with it in words a user can act on.
    """

    def __init__(self, source: str, reason: str, index: int | None = None) -> None:
        self.source = source
        self.reason = reason
        self.index = index
        super().__init__(f"{source}: {reason}")

    def with_index(self, index: int) -> "InputError":
        """The same error, tagged with its position in a batch."""
        return InputError(self.source, self.reason, index)


class BackboneError(OmnibindError):
    """A backbone reference is unknown or its weights cannot be loaded."""


class SpaceError(OmnibindError):
    """A space folder is missing, malformed, or of an unsupported format version."""


class MislabelledInputWarning(UserWarning):
    """A file's name says one type, its content another; omnibind trusts the content."""


class PathLikeTextWarning(UserWarning):
    """A `str` that looks like a file path is embedded as text (str is text, as in
    sentence-transformers); pass `pathlib.Path` / `omnibind.File` for the file, `omnibind.Text` for
    the words. `warnings.simplefilter("error", PathLikeTextWarning)` makes it an error (strict mode)."""
