"""The modality table: one row per modality, and the only place that lists them.

A row says how a modality is recognised (file extensions, a content sniffer), decoded, described
to the text anchor (prompt templates), previewed (thumbnail maker) and calibrated (which modality
pair's fit it borrows). Everything else — input detection, search, classification, ingest, the
server — asks this table, so a new modality is a row here (`register`) plus a backbone.

Rows are consulted in registration order, newest first, so a registered modality can claim a
subset of an existing format (a 16-bit PNG depth map before the generic image row).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omnibind import decoders, documents
from omnibind.decoders import Data, Limits
from omnibind.errors import InputError

# (first 4 KiB, the whole buffer, source) -> whether this modality claims the content. Most
# formats need only the first bytes; containers (MP4, Ogg...) are decided by their streams.
Sniffer = Callable[[bytes, Data, str], bool]
Decoder = Callable[[Data, str, Limits], Any]  # (file bytes, source, limits) -> decoded payload
Thumbnailer = Callable[[Any], Any]  # payload -> PIL image for a result page, or None


@dataclass(frozen=True)
class Modality:
    """One row of the table."""

    name: str
    extensions: tuple[str, ...] = ()
    templates: tuple[str, ...] = ("{}",)  # label -> text; the first is the caption for label pairs
    sniff: Sniffer | None = None
    decode: Decoder | None = None
    thumbnail: Thumbnailer | None = None
    calibrate_as: str | None = None  # borrow this modality's calibration fit (video -> image)
    composite: bool = False  # embedded through other towers (video: image frames + soundtrack)

    @property
    def calibration_name(self) -> str:
        return self.calibrate_as or self.name


_ROWS: dict[str, Modality] = {}
_LOCK = threading.Lock()


def register(row: Modality, replace: bool = False) -> Modality:
    """Add a modality row (a new modality, or a replacement with `replace=True`)."""
    with _LOCK:
        if row.name in _ROWS and not replace:
            raise ValueError(f"modality {row.name!r} is already registered")
        _ROWS.pop(row.name, None)
        _ROWS[row.name] = row
    return row


def unregister(name: str) -> None:
    """Remove a row (tests that register a toy modality clean up with this)."""
    with _LOCK:
        _ROWS.pop(name, None)


def names() -> tuple[str, ...]:
    """Every registered modality, built-ins first, in registration order."""
    _ensure_builtins()
    return tuple(_ROWS)


def get(name: str) -> Modality:
    _ensure_builtins()
    try:
        return _ROWS[name]
    except KeyError:
        raise ValueError(f"unknown modality {name!r}: choose from {', '.join(_ROWS)}") from None


def templates(name: str) -> tuple[str, ...]:
    """The prompt templates that turn a label into text describing an item of this modality."""
    return get(name).templates


def by_extension(path: str | Path) -> str | None:
    """The modality a file name claims (None when the suffix is unknown)."""
    suffix = Path(path).suffix.lower()
    return next((m.name for m in reversed(names_rows()) if suffix in m.extensions), None)


def names_rows() -> list[Modality]:
    _ensure_builtins()
    return list(_ROWS.values())


def detect(head: bytes, data: Data, source: str) -> Modality | None:
    """The newest row whose sniffer claims this content (None: no modality knows it)."""
    return next((m for m in reversed(names_rows()) if m.sniff is not None and m.sniff(head, data, source)), None)


def decode(row: Modality, data: Data, source: str, limits: Limits) -> Any:
    if row.decode is None:
        raise InputError(source, f"modality {row.name!r} has no decoder")
    return row.decode(data, source, limits)


def thumbnail(name: str, payload: Any) -> Any:
    """A PIL image that previews an item, or None (sounds and texts have none)."""
    row = get(name)
    return row.thumbnail(payload) if row.thumbnail is not None else None


_BUILTINS_DONE = False


def _ensure_builtins() -> None:
    global _BUILTINS_DONE
    if _BUILTINS_DONE:
        return
    with _LOCK:
        if not _BUILTINS_DONE:
            for row in _builtin_rows():
                _ROWS.setdefault(row.name, row)
            _BUILTINS_DONE = True


def _format_is(kind: str) -> Sniffer:
    return lambda head, data, source: decoders.sniff(head) == kind


def _streams_are(kind: str) -> Sniffer:
    """Audio or video: by magic bytes, or a container (MP4, Matroska, Ogg, AVI) by its streams."""
    def claims(head: bytes, data: Data, source: str) -> bool:
        family = decoders.sniff(head)
        if family == "container":
            return decoders.container_modality(data, source) == kind
        return family == kind

    return claims


def _builtin_rows() -> list[Modality]:
    return [
        Modality("text", (".txt", ".md"), ("{}", "this text is about {}.", "a text about {}."),
                 sniff=_format_is("text"), decode=decoders.decode_text_input),
        Modality("image", (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"),
                 ("a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a close-up photo of the {}."),
                 sniff=_format_is("image"), decode=decoders.open_image, thumbnail=lambda image: image),
        # The first template is the caption used for label pairs (classification
        # averages all four, so their order does not matter there).
        Modality("audio", (".wav", ".flac", ".mp3", ".m4a", ".opus", ".oga", ".ogg"),
                 ("the sound of a {}.", "the sound of {}.", "a recording of {}.", "{} can be heard."),
                 sniff=_streams_are("audio"), decode=decoders.open_audio),
        Modality("video", (".mp4", ".mkv", ".webm", ".avi", ".mov", ".ogv"),
                 ("a video of a {}.", "a video showing {}.", "footage of a {}."),
                 sniff=_streams_are("video"), decode=decoders.open_video,
                 thumbnail=lambda clip: clip.frames(1)[0], calibrate_as="image", composite=True),
        # Documents are embedded through their words (the pages view, then the text tower):
        # composite, calibrated like text. Markdown stays text.
        Modality("document", (".pdf", ".html", ".htm", ".xhtml"),
                 ("a document about {}.", "a text about {}.", "{}"),
                 sniff=documents.sniff_document, decode=documents.decode_document, thumbnail=documents.thumbnail,
                 calibrate_as="text", composite=True),
    ]

