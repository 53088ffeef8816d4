"""Pairs: the paired examples a tower is bound from.

A manifest is JSONL or CSV/TSV with columns `a`, `b` and optional `weight`, `group`. A cell is a
file if it names an existing file (relative to the manifest's folder, or absolute), otherwise it
is text. Bad rows are reported with their line number and skipped, never silently.

A bound space records `manifest_sha256`: the sha256 of the manifest files' bytes
(`manifest_sha256(*paths)`), whether binding starts from the CLI, `bind_manifest` or `bind` on
pairs that `read_manifest` returned (they remember the bytes they were parsed from).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omnibind import modalities
from omnibind.errors import OmnibindError


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
    manifest: str | None = None  # the manifest file the row is in, where known

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class ManifestError(OmnibindError):
    """The manifest itself cannot be read (missing, wrong format, no usable columns)."""


class ManifestPairs(list[Pair]):
    """The pairs of one manifest file (a list of `Pair`), remembering the file and the bytes they
    were parsed from, so that `bind` records the same `manifest_sha256` as the CLI."""

    def __init__(self, pairs: Iterable[Pair], path: Path, raw: bytes) -> None:
        super().__init__(pairs)
        self.path = path
        self._raw = raw
        self._as_read = tuple(self)

    @property
    def sha256(self) -> str:
        """`manifest_sha256(self.path)` as the file was when read."""
        return hashlib.sha256(self._raw).hexdigest()

    def unchanged(self) -> bool:
        """Whether the list still holds exactly the pairs read (else the file no longer describes it)."""
        return len(self) == len(self._as_read) and all(a is b for a, b in zip(self, self._as_read))


def manifest_sha256(*paths: str | Path) -> str:
    """The sha256 of the manifests' bytes, concatenated in order: what a bound space records."""
    h = hashlib.sha256()
    for path in paths:
        h.update(Path(path).read_bytes())
    return h.hexdigest()


def manifest_sha256_of(*pair_lists: Sequence[Pair]) -> str | None:
    """`manifest_sha256` of the files these pair lists were read from, without reading them again;
    None unless every non-empty list is an unchanged `read_manifest` result (pairs built in code)."""
    lists = [p for p in pair_lists if isinstance(p, ManifestPairs) or len(p)]
    if not lists or not all(isinstance(p, ManifestPairs) and p.unchanged() for p in lists):
        return None
    h = hashlib.sha256()
    for p in lists:
        h.update(p._raw)
    return h.hexdigest()


def manifest_path(pairs: Sequence[Pair]) -> str | None:
    """The manifest file a pair list was read from, if it was."""
    return str(pairs.path) if isinstance(pairs, ManifestPairs) else None


def read_manifest(path: str | Path) -> tuple[ManifestPairs, list[BadRow]]:
    """Pairs from a JSONL/CSV/TSV manifest, and the rows that were skipped with why.

    The file is read once: the pairs are parsed from the bytes they carry for `manifest_sha256`."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    raw = path.read_bytes()
    suffixes = _media_suffixes()
    pairs, bad = [], []
    for line, row in _rows(path, raw):
        if isinstance(row, str):
            bad.append(BadRow(line, row, str(path)))
            continue
        try:
            pairs.append(_pair(row, line, path.parent, suffixes))
        except ValueError as exc:
            bad.append(BadRow(line, str(exc), str(path)))
    if not pairs and not bad:
        raise ManifestError(f"{path}: no rows")
    return ManifestPairs(pairs, path, raw), bad


def _media_suffixes() -> frozenset[str]:
    """File suffixes of every modality but the text anchor's: a cell ending in one must be a file."""
    return frozenset(ext for row in modalities.names_rows() if row.name != "text" for ext in row.extensions)


def _rows(path: Path, raw: bytes) -> Iterable[tuple[int, dict | str]]:
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".txt"):
        raise ManifestError(f"{path}: manifest must be .jsonl, .csv or .tsv")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if suffix in (".jsonl", ".json", ".ndjson"):
        with io.StringIO(text, newline=None) as fh:  # universal newlines, as open() reads text
            for line, row_text in enumerate(fh, start=1):
                if not row_text.strip():
                    continue
                try:
                    row = json.loads(row_text)
                except json.JSONDecodeError as exc:
                    yield line, f"not valid JSON: {exc.msg}"
                    continue
                yield line, row if isinstance(row, dict) else "not a JSON object"
        return
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
        if not reader.fieldnames or not {"a", "b"} <= set(reader.fieldnames):
            raise ManifestError(f"{path}: needs a header with columns a and b (got {reader.fieldnames})")
        for row in reader:
            yield reader.line_num, row


def _pair(row: dict, line: int, base: Path, suffixes: frozenset[str]) -> Pair:
    cells = []
    for column in ("a", "b"):
        value = row.get(column)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError(f"column {column!r} is empty")
        cells.append(_cell(str(value), base, suffixes))
    weight = row.get("weight")
    try:
        weight = 1.0 if weight in (None, "") else float(weight)
    except (TypeError, ValueError):
        raise ValueError(f"weight {weight!r} is not a number") from None
    if not weight > 0:
        raise ValueError(f"weight must be positive, got {weight}")
    group = row.get("group")
    return Pair(cells[0], cells[1], weight, None if group in (None, "") else str(group), line)


def _cell(value: str, base: Path, suffixes: frozenset[str]) -> Any:
    try:
        candidate = Path(value).expanduser()
        candidate = candidate if candidate.is_absolute() else base / candidate
        if candidate.is_file():
            return candidate
    except (OSError, RuntimeError, ValueError):
        return value  # too long for a file name, "~word" with no such user...: it is text
    if Path(value).suffix.lower() in suffixes and "\n" not in value and len(value) < 400:
        raise ValueError(f"file {value!r} not found (relative to {base})")
    return value


def pairs_from_labels(items: Sequence[tuple[Any, str]], modality: str, templates: Sequence[str] | None = None,
                      group_by_item: bool = True) -> list[Pair]:
    """Keyword-to-caption (CLAP): each (item, label) becomes (template.format(label), item).

    With several templates, each item is paired with one template, chosen round-robin so the
    templates are used evenly and deterministically. The default is the modality table's first
    template (`omnibind.modalities.templates(modality)[0]`, e.g. "a photo of a {}.").
    """
    templates = tuple(templates or modalities.templates(modality)[:1])
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
