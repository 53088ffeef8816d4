"""Views: what turns one decoded item into located segments.

A view reads an item (an `Input`) and returns `Segment`s: the words spoken in a recording, the
text in a photo, the pages of a PDF, the chunks of a long note, the time windows of a sound or a
video. A segment carries either words (`text`, embedded by the space's anchor tower) or a piece of
the item (`media`, an `Input` embedded by its own tower), and where in the item it lies.

Views are looked up by name (`get`), built lazily (a view that needs a model loads it on first
use), and chosen per collection (`collection.json` records them). `omnibind/views/embed.py` turns
segments into vectors and folds the words they found into the item's own vector.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from omnibind.inputs import Input
    from omnibind.space import Space

# kind -> what it is; the `kind` column of a segment row
KINDS = {
    "speech": "words spoken in a recording or a video's soundtrack (ASR)",
    "ocr": "text found in an image or a video frame",
    "page": "a page of a document",
    "chunk": "a piece of a long text, cut by the anchor's tokenizer",
    "window": "a time window of a recording",
    "scene": "a time window of a video",
}


@dataclass
class Segment:
    """One located piece of an item. Exactly one of `text` and `media` is set."""

    kind: str
    text: str | None = None  # words: embedded by the anchor tower, shown as the snippet
    media: "Input | None" = None  # a piece of the item (audio window, video scene): its own tower
    start: float | None = None  # seconds from the start of the item
    end: float | None = None
    page: int | None = None  # 1-based page of a document
    chars: tuple[int, int] | None = None  # [start, end) character range in the item's (or page's) text
    confidence: float | None = None  # the view's own confidence (OCR score, ASR log-probability...)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown segment kind {self.kind!r}: choose from {', '.join(KINDS)}")
        if (self.text is None) == (self.media is None):
            raise ValueError("a segment carries either text or media, not both or neither")

    def location(self) -> str:
        """Where the segment lies, for people: '12:31–12:45', 'page 3', 'characters 1200–2400'."""
        parts = []
        if self.page is not None:
            parts.append(f"page {self.page}")
        if self.start is not None:
            parts.append(clock(self.start) + (f"–{clock(self.end)}" if self.end is not None else ""))
        if self.chars is not None and self.page is None:
            parts.append(f"characters {self.chars[0]}–{self.chars[1]}")
        return ", ".join(parts)


def clock(seconds: float) -> str:
    """12:31, or 1:02:03 past an hour."""
    s = int(round(seconds))
    h, m = divmod(s, 3600)
    return f"{h}:{m // 60:02d}:{m % 60:02d}" if h else f"{m // 60}:{m % 60:02d}"


class View(Protocol):
    """What a view provides. `modalities`: the item modalities it reads."""

    name: str
    modalities: tuple[str, ...]
    shapes_vector: bool  # whether its findings fold into the item's own vector (views/embed.py)

    def segments(self, item: "Input", space: "Space") -> list[Segment]:
        """The item's segments (an empty list when there is nothing: a photo without text).
        Raises InputError only for a file that is itself bad (an encrypted PDF)."""
        ...


# name -> "module:factory"; a factory takes no arguments and returns a View
_FACTORIES: dict[str, str] = {
    "speech": "omnibind.views.speech:SpeechView",
    "ocr": "omnibind.views.ocr:OcrView",
    "chunks": "omnibind.views.chunks:ChunksView",
    "pages": "omnibind.views.document:PagesView",
    "windows": "omnibind.views.windows:WindowsView",
}
DEFAULT: tuple[str, ...] = ("chunks", "pages", "speech", "ocr", "windows")  # what a new collection runs
_LOADED: dict[str, View] = {}
_LOCK = threading.Lock()


def names() -> tuple[str, ...]:
    return tuple(_FACTORIES)


def register(name: str, factory: str | Any) -> None:
    """Add a view: a "module:callable" path or a zero-argument callable returning a View."""
    with _LOCK:
        _FACTORIES[name] = factory
        _LOADED.pop(name, None)


def unregister(name: str) -> None:
    with _LOCK:
        _FACTORIES.pop(name, None)
        _LOADED.pop(name, None)


def get(name: str) -> View:
    """The view called `name`, built once per process."""
    with _LOCK:
        if name in _LOADED:
            return _LOADED[name]
        try:
            factory = _FACTORIES[name]
        except KeyError:
            raise ValueError(f"unknown view {name!r}: choose from {', '.join(_FACTORIES)}") from None
        if isinstance(factory, str):
            module, attr = factory.split(":")
            factory = getattr(importlib.import_module(module), attr)
        view = _LOADED[name] = factory()
        return view


def parse(spec: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """A view list from the CLI or an API call ("speech,ocr", "default", "none")."""
    if spec is None or spec == "default":
        return DEFAULT
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if items in (["none"], []):
        return ()
    unknown = [s for s in items if s not in _FACTORIES]
    if unknown:
        raise ValueError(f"unknown view {unknown[0]!r}: choose from {', '.join(_FACTORIES)} (or 'default', 'none')")
    return tuple(dict.fromkeys(items))
