"""Ingest a folder into a collection: walk, detect, embed in batches, commit, report.

Incremental and resumable by construction: each batch is one commit keyed by file path, and a
file whose sha256 matches its stored row is skipped. Kill the process at any moment and run it
again: committed batches are skipped, the interrupted one is redone, nothing is duplicated.
A bad file (empty, truncated, undecodable, unreadable, a broken link) is reported with its
reason and skipped; it never stops the run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from fnmatch import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omnibind.collection import Collection
from omnibind.errors import InputError, OmnibindError
from omnibind.inputs import Input, load_file

THUMBNAIL_PX = 160


@dataclass
class IngestReport:
    """What an ingest did. `failed` holds (path, reason) for every file that was not stored."""

    root: str
    seen: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    log: str | None = None

    @property
    def embedded(self) -> int:
        return self.added + self.updated

    def summary(self) -> dict[str, Any]:
        return {"root": self.root, "seen": self.seen, "added": self.added, "updated": self.updated,
                "unchanged": self.unchanged, "removed": self.removed, "failed": len(self.failed),
                "seconds": round(self.seconds, 2), "log": self.log}


def excluded(relative: str, patterns: Sequence[str]) -> bool:
    """Whether a path (relative to the walk's root, '/'-separated) matches a glob pattern, by its
    whole relative path ("drafts/*.txt") or by its name ("*.tsv", "Thumbs.db")."""
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch(relative, p) or fnmatch(name, p) for p in patterns)


def walk(root: Path, on_skip: Callable[[str, str], None], exclude: Sequence[str] = ()) -> Iterator[Path]:
    """Every regular file under `root` (sorted, following directory links once), skipping hidden
    names and `exclude` globs. Symlink loops, broken links and unreadable directories go to
    `on_skip(path, reason)`."""
    root = Path(os.path.abspath(root))
    if root.is_file():
        yield root
        return
    if not root.is_dir():
        raise OmnibindError(f"{root}: no such folder")
    seen_dirs: set[tuple[int, int]] = set()

    def visit(folder: Path) -> Iterator[Path]:
        try:
            st = folder.stat()
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                on_skip(str(folder), f"symlink loop: {os.path.realpath(folder)} was already walked")
                return
            seen_dirs.add(key)
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            on_skip(str(folder), f"cannot read folder: {exc.strerror or exc}")
            return
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith(".") or (exclude and excluded(path.relative_to(root).as_posix(), exclude)):
                continue
            try:
                st = entry.stat(follow_symlinks=True)
            except FileNotFoundError:
                on_skip(str(path), "broken symlink" if entry.is_symlink() else "vanished while walking")
                continue
            except OSError as exc:  # ELOOP for a link to itself
                on_skip(str(path), f"cannot stat: {exc.strerror or exc}")
                continue
            if stat.S_ISDIR(st.st_mode):
                yield from visit(path)
            elif stat.S_ISREG(st.st_mode):
                yield path
            else:
                on_skip(str(path), "not a regular file (device, pipe or socket)")

    yield from visit(root)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def thumbnail(item: Input) -> bytes | None:
    """A small JPEG for a result page: the image, or the middle frame of a video."""
    try:
        if item.modality == "image":
            image = item.payload
        elif item.modality == "video":
            image = item.payload.frames(1)[0]
        else:
            return None
        small = image.convert("RGB")
        small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        out = io.BytesIO()
        small.save(out, format="JPEG", quality=80)
        return out.getvalue()
    except OmnibindError:
        return None


def row_for(item: Input, vector: np.ndarray, item_id: str, metadata: dict[str, Any] | None = None,
            sha256: str | None = None, size: int | None = None, mtime: float | None = None) -> dict[str, Any]:
    """The table row of an embedded input."""
    if sha256 is None and item.modality == "text":
        sha256 = hashlib.sha256(item.payload.encode("utf-8")).hexdigest()
    duration = getattr(item.payload, "duration", None) if item.modality in ("audio", "video") else None
    return {
        "id": item_id, "vector": vector, "modality": item.modality, "source": item.source,
        "sha256": sha256, "size": size, "mtime": mtime, "metadata": json.dumps(metadata or {}),
        "text": item.payload if item.modality == "text" else None, "thumbnail": thumbnail(item),
        "duration": float(duration) if duration is not None else None,
    }


def ingest(collection: Collection, root: str | Path, *, batch_size: int = 32, prune: bool = False,
           progress: Callable[[int, int], None] | None = None, log: Path | None = None,
           build_index: bool = True, exclude: Sequence[str] = ()) -> IngestReport:
    """Bring the collection in line with the files under `root`; see the module docstring.

    `progress(done, total)` is called after each batch (`total` is known after the walk);
    every failure is written to `log` (default: <collection>/logs/ingest-<time>.log). Files matching
    an `exclude` glob are neither ingested nor, with `prune`, kept."""

    collection.check_consistent()
    start = time.perf_counter()
    report = IngestReport(root=str(Path(os.path.abspath(root))))
    files = list(walk(Path(root), lambda p, r: report.failed.append((p, r)), exclude))
    report.seen = len(files)
    known = collection.manifest()
    done = 0
    if progress:
        progress(0, len(files))
    previous = set(known)
    for lo in range(0, len(files), batch_size):
        _ingest_batch(collection, files[lo : lo + batch_size], known, report)
        done += len(files[lo : lo + batch_size])
        if progress:
            progress(done, len(files))
    return finish(collection, report, previous, {str(p) for p in files}, prune, build_index, log, start)


def commit_batch(collection: Collection, rows: list[dict[str, Any]], stale: list[str],
                 known: dict[str, tuple[str, int, float]], report: IngestReport) -> None:
    """Store a batch's embedded rows in one commit (counted as added or updated), then drop the
    rows of files that turned unreadable (their old vectors are wrong); keeps `known` current."""
    if rows:
        collection.upsert(rows)  # one commit: the whole batch or none of it
        for r in rows:
            if r["id"] in known:
                report.updated += 1
            else:
                report.added += 1
            known[r["id"]] = (r["sha256"], r["size"], r["mtime"])
    if stale:
        collection.delete(stale)
        for key in stale:
            known.pop(key, None)


def finish(collection: Collection, report: IngestReport, previous: set[str], present: set[str], prune: bool,
           build_index: bool, log: Path | None, start: float) -> IngestReport:
    """The end of an ingest, whatever engine embedded it: prune rows of vanished files under the
    root, keep the index and the calibration sample current, write the failure log."""
    from omnibind.search import refresh_calibration

    if prune:
        prefix = report.root.rstrip(os.sep) + os.sep
        gone = [i for i in previous if (i.startswith(prefix) or i == report.root) and i not in present]
        report.removed = collection.delete(gone)
    if report.embedded or report.removed:
        if build_index:
            collection.ensure_index()
        refresh_calibration(collection)
    report.seconds = time.perf_counter() - start
    report.log = str(_write_log(collection, report, log)) if report.failed else None
    return report


def _ingest_batch(collection: Collection, files: list[Path], known: dict[str, tuple[str, int, float]],
                  report: IngestReport) -> None:
    todo: list[tuple[Path, Input, str, os.stat_result]] = []
    stale: list[str] = []
    rows: list[dict[str, Any]] = []
    for path in files:
        key = str(path)
        try:
            st = path.stat()
            digest = sha256_file(path)
        except OSError as exc:
            report.failed.append((key, f"cannot read file: {exc.strerror or exc}"))
            continue
        if key in known and known[key][0] == digest:
            report.unchanged += 1
            continue
        try:
            todo.append((path, load_file(path, collection.space.limits), digest, st))
        except InputError as exc:
            report.failed.append((key, exc.reason))
            if key in known:
                stale.append(key)  # its content changed into something unreadable: the old vector is wrong
    if todo:
        result = collection.space.embed([t[1] for t in todo], on_error="skip")
        bad = {e.index: e for e in result.errors}
        for j, e in bad.items():
            report.failed.append((str(todo[j][0]), e.reason))
            if str(todo[j][0]) in known:
                stale.append(str(todo[j][0]))
        for vector, j in zip(result.vectors, result.indices):
            path, item, digest, st = todo[j]
            rows.append(row_for(item, vector, str(path), {}, digest, st.st_size, st.st_mtime))
    commit_batch(collection, rows, stale, known, report)


def _write_log(collection: Collection, report: IngestReport, log: Path | None) -> Path:
    path = log or collection.path / "logs" / f"ingest-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"summary": report.summary()}) + "\n")
        for source, reason in report.failed:
            fh.write(json.dumps({"path": source, "reason": reason}) + "\n")
    return path
