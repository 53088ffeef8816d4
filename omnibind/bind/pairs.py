"""Pairs: the paired examples a tower is bound from.

A manifest is JSONL or CSV/TSV with columns `a`, `b` and optional `weight`, `group`. A cell is a
file if it names an existing file (relative to the manifest's folder, or absolute), otherwise it
is text. Bad rows are reported with their line number and skipped, never silently.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omnibind.errors import OmnibindError

_MEDIA_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".wav", ".flac", ".ogg", ".oga", ".mp3",
                   ".m4a", ".opus", ".mp4", ".mkv", ".webm", ".avi", ".mov", ".ogv"}
DEFAULT_TEMPLATES = {
    "image": ("a photo of a {}.",),
    "audio": ("the sound of a {}.",),
    "video": ("a video of a {}.",),
}


@dataclass(frozen=True)
class Pair:
    a: Any  # text (str) or a file (Path), or any object omnibind.to_input accepts
    b: Any
    weight: float = 1.0
    group: str | None = None  # pairs of one group never straddle the train / held-out split
    line: int = 0  # where it came from in the manifest (1-based; 0 = built in code)

    @property
    def group_key(self) -> str:
        return self.group if self.group is not None else f"{self.a}\u241f{self.b}"


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class ManifestError(OmnibindError):
    """The manifest itself cannot be read (missing, wrong format, no usable columns)."""


def read_manifest(path: str | Path) -> tuple[list[Pair], list[BadRow]]:
    """Pairs from a JSONL/CSV/TSV manifest, and the rows that were skipped with why."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    rows = list(_rows(path))
    pairs, bad = [], []
    for line, row in rows:
        if isinstance(row, str):
            bad.append(BadRow(line, row))
            continue
        try:
            pairs.append(_pair(row, line, path.parent))
        except ValueError as exc:
            bad.append(BadRow(line, str(exc)))
    if not pairs and not bad:
        raise ManifestError(f"{path}: no rows")
    return pairs, bad


def _rows(path: Path) -> Iterable[tuple[int, dict | str]]:
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        with open(path, encoding="utf-8") as fh:
            for line, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as exc:
                    yield line, f"not valid JSON: {exc.msg}"
                    continue
                yield line, row if isinstance(row, dict) else "not a JSON object"
        return
    if path.suffix.lower() not in (".csv", ".tsv", ".txt"):
        raise ManifestError(f"{path}: manifest must be .jsonl, .csv or .tsv")
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        if not reader.fieldnames or not {"a", "b"} <= set(reader.fieldnames):
            raise ManifestError(f"{path}: needs a header with columns a and b (got {reader.fieldnames})")
        for row in reader:
            yield reader.line_num, row


def _pair(row: dict, line: int, base: Path) -> Pair:
    cells = []
    for column in ("a", "b"):
        value = row.get(column)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError(f"column {column!r} is empty")
        cells.append(_cell(str(value), base))
    weight = row.get("weight")
    try:
        weight = 1.0 if weight in (None, "") else float(weight)
    except (TypeError, ValueError):
        raise ValueError(f"weight {weight!r} is not a number") from None
    if not weight > 0:
        raise ValueError(f"weight must be positive, got {weight}")
    group = row.get("group")
    return Pair(cells[0], cells[1], weight, None if group in (None, "") else str(group), line)


def _cell(value: str, base: Path) -> Any:
    try:
        candidate = Path(value).expanduser()
        candidate = candidate if candidate.is_absolute() else base / candidate
        if candidate.is_file():
            return candidate
    except (OSError, RuntimeError, ValueError):
        return value  # too long for a file name, "~word" with no such user...: it is text
    if Path(value).suffix.lower() in _MEDIA_SUFFIXES and "\n" not in value and len(value) < 400:
        raise ValueError(f"file {value!r} not found (relative to {base})")
    return value


def pairs_from_labels(items: Sequence[tuple[Any, str]], modality: str, templates: Sequence[str] | None = None,
                      group_by_item: bool = True) -> list[Pair]:
    """Keyword-to-caption (CLAP): each (item, label) becomes (template.format(label), item).

    With several templates, each item is paired with one template, chosen round-robin so the
    templates are used evenly and deterministically.
    """
    templates = tuple(templates or DEFAULT_TEMPLATES.get(modality, ("{}",)))
    pairs = []
    for i, (item, label) in enumerate(items):
        caption = templates[i % len(templates)].format(label)
        group = f"item:{i}" if group_by_item else f"label:{label}"
        pairs.append(Pair(caption, item, group=group))
    return pairs


def pairs_from_folder(root: str | Path, modality: str, templates: Sequence[str] | None = None) -> list[Pair]:
    """Labelled folders: `root/<label>/<file>` -> (caption of label, file); '_' in labels becomes ' '."""
    root = Path(root)
    items = [(f, d.name.replace("_", " ")) for d in sorted(root.iterdir()) if d.is_dir()
             for f in sorted(d.rglob("*")) if f.is_file()]
    if not items:
        raise ManifestError(f"{root}: no labelled sub-folders with files")
    return pairs_from_labels(items, modality, templates)
