"""What a file says about itself besides its content: when it was made, its pixel size, and what
its sidecar adds (tags, a note). These become typed columns of the collection (`tags`, `note`,
`created`, `width`, `height`), so filters are SQL on columns, not text matching inside JSON.

* `created`: a photo's EXIF DateTimeOriginal (else DateTime), an audio or video container's
  `creation_time`, else the file's modification time. EXIF dates carry no time zone unless an
  OffsetTimeOriginal tag says so: they are read as UTC, like `--after/--before` dates without one.
* `width`/`height`: an image's pixels, a video's first video stream.
* A sidecar is `<file>.json` beside the file (`beach.jpg.json`: the Google Takeout layout), a JSON
  object: `"tags"` (a list of strings, or one string), `"note"` (a string), anything else kept in
  the item's `metadata`. Ingest reads it with the file (confined like the file), does not ingest it
  as an item of its own, and re-embeds the item when the sidecar changes.

Facts are best effort: a damaged EXIF block or container header gives None, never a failed item.
A sidecar that cannot be used is reported as a note on the item and ignored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnibind.errors import InputError

SIDECAR_SUFFIX = ".json"
MAX_SIDECAR_BYTES = 64 * 1024
MAX_TAGS = 64
MAX_TAG_CHARS = 100
MAX_NOTE_CHARS = 10_000
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")
_SEPARATORS = re.compile(r"[\s_.\-+,;()\[\]{}]+")
EXIF_IFD, DATETIME_ORIGINAL, OFFSET_ORIGINAL, DATETIME = 0x8769, 36867, 36881, 306
EXIF_DATE = re.compile(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")


@dataclass
class Sidecar:
    """What a sidecar file adds to its item, and its digest (a changed sidecar re-ingests the item)."""

    tags: list[str] = field(default_factory=list)
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    digest: str = ""


def normalise_tags(tags: Any, source: str = "tags") -> list[str]:
    """Tags as stored: stripped, lower-cased, without duplicates, in first-seen order. Raises
    ValueError naming `source` for anything that is not a string or a list of strings."""
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags):
        raise ValueError(f"{source}: tags must be a string or a list of strings")
    out: list[str] = []
    for tag in tags:
        clean = " ".join(tag.split()).lower()
        if not clean:
            continue
        if len(clean) > MAX_TAG_CHARS or any(ord(c) < 32 for c in clean):
            raise ValueError(f"{source}: tag {clean[:40]!r}... is over {MAX_TAG_CHARS} characters or has control characters")
        if clean not in out:
            out.append(clean)
    if len(out) > MAX_TAGS:
        raise ValueError(f"{source}: {len(out)} tags, at most {MAX_TAGS}")
    return out


def is_sidecar(path: str, present: set[str]) -> bool:
    """Whether `path` is the sidecar of another file in `present` (`x.jpg.json` beside `x.jpg`)."""
    return path.endswith(SIDECAR_SUFFIX) and path[: -len(SIDECAR_SUFFIX)] in present


def parse_sidecar(data: bytes, source: str) -> Sidecar:
    """A sidecar's bytes -> Sidecar; InputError naming the file and the reason when unusable."""
    if len(data) > MAX_SIDECAR_BYTES:
        raise InputError(source, f"sidecar is {len(data)} bytes, over {MAX_SIDECAR_BYTES}")
    try:
        obj = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(source, f"sidecar is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InputError(source, "sidecar must be a JSON object ({\"tags\": [...], \"note\": \"...\"})")
    note = obj.pop("note", None)
    if note is not None and not isinstance(note, str):
        raise InputError(source, "sidecar 'note' must be a string")
    try:
        tags = normalise_tags(obj.pop("tags", []), source)
    except ValueError as exc:
        raise InputError(source, str(exc).removeprefix(f"{source}: ")) from None
    return Sidecar(tags, note[:MAX_NOTE_CHARS] if note else None, obj, hashlib.sha256(bytes(data)).hexdigest()[:16])


def read_sidecar(path: str | Path, limits: Any, within: str | None = None) -> Sidecar | None:
    """The sidecar of the file at `path`, if there is one (read with the file's confinement)."""
    from omnibind.inputs import read_file

    side = Path(f"{path}{SIDECAR_SUFFIX}")
    if not side.is_file():
        return None
    read = read_file(side, limits, within=within)
    return parse_sidecar(bytes(read.data[: MAX_SIDECAR_BYTES + 1]), str(side))


def facts_of(data: Any, item: Any, mtime: float | None) -> dict[str, Any]:
    """`created`, `width`, `height` of a decoded item from its file's bytes (module docstring)."""
    width = height = None
    created = None
    if item.modality == "image":
        width, height = item.payload.size
        created = image_date(data)
    elif item.modality in ("audio", "video"):
        created, size = container_facts(data)
        if item.modality == "video" and size:
            width, height = size
    return {"created": created if created is not None else mtime, "width": width, "height": height}


def image_date(data: Any) -> float | None:
    """EXIF DateTimeOriginal (else DateTime) of an image file as Unix seconds, or None."""
    from PIL import Image

    from omnibind.decoders import _opener

    try:
        with Image.open(_opener(data)) as image:
            exif = image.getexif()
            sub = exif.get_ifd(EXIF_IFD)
            text, offset = sub.get(DATETIME_ORIGINAL) or exif.get(DATETIME), sub.get(OFFSET_ORIGINAL)
    except Exception:  # noqa: BLE001 - a damaged EXIF block is no date, never a failed item
        return None
    return exif_seconds(text, offset)


def exif_seconds(text: Any, offset: Any = None) -> float | None:
    """'2021:07:14 18:03:59' (+ an optional '+02:00' offset) -> Unix seconds; None if malformed."""
    match = EXIF_DATE.match(str(text or "").strip())
    if not match:
        return None
    try:
        stamp = dt.datetime(*map(int, match.groups()), tzinfo=dt.timezone.utc)
        if isinstance(offset, str) and re.fullmatch(r"[+-]\d{2}:\d{2}", offset.strip()):
            sign = -1 if offset.strip()[0] == "-" else 1
            hours, minutes = map(int, offset.strip()[1:].split(":"))
            stamp -= sign * dt.timedelta(hours=hours, minutes=minutes)
    except ValueError:  # month 13, 00:00:00 dates of unset camera clocks
        return None
    return stamp.timestamp() if stamp.year >= 1900 else None


def container_facts(data: Any) -> tuple[float | None, tuple[int, int] | None]:
    """(creation_time as Unix seconds, (width, height) of the first video stream) of an audio or
    video container, each None when absent or unreadable."""
    import av

    from omnibind.decoders import _opener

    try:
        with av.open(_opener(data)) as container:
            tags = {**dict(container.metadata)}
            for stream in container.streams:
                tags = {**dict(stream.metadata), **tags}
            video = container.streams.video
            size = (int(video[0].codec_context.width), int(video[0].codec_context.height)) if video else None
    except Exception:  # noqa: BLE001 - a header PyAV cannot read is no facts, never a failed item
        return None, None
    return iso_seconds(tags.get("creation_time")), size if size and all(size) else None


def iso_seconds(text: Any) -> float | None:
    """An ISO 8601 time ('2019-03-01T10:00:00.000000Z') as Unix seconds (UTC without an offset)."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        stamp = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    return stamp.timestamp() if stamp.year >= 1900 else None


# -- words: what full-text search reads (omnibind/fulltext.py indexes them) --------------------------


def name_words(source: str | None) -> str:
    """A file name as words: the last path part without its extension, split at `_ - . +`, spaces,
    camelCase and letter-digit boundaries ('RedApple_2024-v2.png' -> 'Red Apple 2024 v 2')."""
    if not source or source.startswith("<"):  # "<text>", "<bytes>": no name
        return ""
    name = re.split(r"[/\\]", str(source).rstrip("/\\"))[-1]
    stem, dot, ext = name.rpartition(".")
    if dot and stem and ext.isalnum() and len(ext) <= 5:
        name = stem
    parts = [p for chunk in _SEPARATORS.split(name) for p in _CAMEL.split(chunk)]
    return " ".join(p for p in parts if p)


def words_of(source: str | None, text: str | None, tags: Sequence[str] | str = (), note: str | None = None) -> str:
    """The text full-text search sees for a row: the file name's words, tags, a note, the text.
    Item rows: `words_of(item.source, text of a text item, tags, note)`; segment rows:
    `words_of(None, segment.text)`."""
    tag_list = [tags] if isinstance(tags, str) else [str(t) for t in tags or ()]
    parts = [name_words(source), " ".join(tag_list), note or "", text or ""]
    return "\n".join(p.strip() for p in parts if p and p.strip())
