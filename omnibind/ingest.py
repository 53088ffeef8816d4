"""Ingest: bring a collection in line with a folder (or a glob, a manifest, URIs) and report.

Incremental and resumable by construction: each batch is one commit keyed by the file's path, and
a file whose sha256 matches its stored row is skipped. Kill the process at any moment and run it
again: committed batches are skipped, the interrupted one is redone, nothing is duplicated. A bad
file (empty, truncated, undecodable, unreadable, a broken link) is reported with its reason and
skipped; it never stops the run.

`ingest` is the one entry point of the CLI, the server and Python: it finishes a pending re-embed,
lists the sources, runs the batches of omnibind/pipeline.py on an engine ("local": in this process;
"ray": on Ray actors, omnibind/scale/ray_ingest.py), commits each batch here, then prunes, indexes
and recalibrates.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnibind.collection import ITEM, ITEMS_ONLY, Collection, file_state, item_words, source_path
from omnibind.facts import normalise_tags
from omnibind.fulltext import ensure_fts
from omnibind.inputs import beneath
from omnibind.pipeline import BatchResult, embed_batch, list_sources
from omnibind.views import parse as views_parse

ENGINES = ("local", "ray")

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
    notes: list[tuple[str, str]] = field(default_factory=list)  # stored, but a view could not read it all
    segments: int = 0  # segment rows written (words, pages, chunks, time windows)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (old, new): a vanished file's content came back
    missing: int = 0  # items whose files under the root are gone, kept (prune=False)
    seconds: float = 0.0
    log: str | None = None

    @property
    def embedded(self) -> int:
        return self.added + self.updated

    def summary(self) -> dict[str, Any]:
        return {"root": self.root, "seen": self.seen, "added": self.added, "updated": self.updated,
                "unchanged": self.unchanged, "removed": self.removed, "failed": len(self.failed),
                "segments": self.segments, "notes": len(self.notes), "renamed": len(self.renamed),
                "missing": self.missing,
                "seconds": round(self.seconds, 2), "log": self.log}


def ingest(collection: Collection, source: str | Path, *, engine: str = "local", batch_size: int = 32,
           prune: bool = True, progress: Callable[[int, int], None] | None = None, log: Path | None = None,
           build_index: bool = True, exclude: Sequence[str] = (), reembed_progress: Callable[[int], None] | None = None,
           model_lock: AbstractContextManager | None = None, links: str = "inside", address: str | None = None,
           actors: int = 2, views: Sequence[str] | str | None = None, tags: Sequence[str] = (),
           **ray_options: Any) -> IngestReport:
    """Bring the collection in line with `source`; see the module docstring.

    The whole job holds the collection's writer lock (omnibind/writer.py): a second ingest of the
    same collection waits, then finds everything already stored. A collection opened with a new
    space (`Collection.open(..., reembed=True)`) is re-embedded first (rows whose file is gone are
    dropped and reported). `progress(done, total)` is called after each batch; every failure is
    written to `log` (default: <collection>/logs/ingest-<time>.log). Files matching an `exclude`
    glob are neither ingested nor, with `prune` (the default), kept: items whose files under the
    root are gone are removed and reported, a file whose content reappears under another name as
    renamed (`prune=False` keeps them and counts them as `missing`). A folder's symbolic links are followed only
    when they resolve inside it (`links`: "inside", "all" or "none"), and every file opened must
    still resolve inside it. `engine="ray"` runs the batches on a Ray cluster (`address`, `actors`;
    omnibind/scale/ray_ingest.py). `model_lock` (the server's) is held around each local batch's
    decoding and embedding, so an ingest takes turns with other model calls. `views` (names,
    "default" or "none"; None keeps the collection's) are recorded in the collection, and items
    stored with other views are redone even when their file is unchanged. `tags` are added to every
    item under `source`, unchanged ones included (besides each file's sidecar tags: omnibind/facts.py);
    an item re-embedded without a sidecar keeps the tags it had."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: {' or '.join(ENGINES)}")
    start = time.perf_counter()
    local = "://" not in str(source)
    # a local folder by its real path: ids are real paths, which the server's media rule (no
    # symbolic link on the way) accepts even when the folder was named through a link (~/media -> /mnt/..)
    named = local and Path(source).exists()  # a folder or file, not a glob or a manifest of URIs
    report = IngestReport(root=os.path.realpath(source) if named else os.path.abspath(source) if local else str(source))
    root = report.root if named and Path(source).is_dir() and links != "all" else None
    with collection.writer:
        if views is not None:
            collection.set_views(views_parse(views))
        if "pending_space" in collection.meta:
            collection.reembed(batch_size, reembed_progress, lambda src, why: report.failed.append((src, f"dropped: {why}")))
        collection.check_consistent()
        sources = list_sources(report.root if named else source, lambda p, r: report.failed.append((p, r)), exclude, links)
        report.seen = len(sources)
        known = collection.manifest()
        previous = set(known)
        redo = collection.stale_views()  # stored with other views: embedded again, unchanged or not
        tags = normalise_tags(list(tags), "--tag")
        run = _Run(collection, engine, batch_size, model_lock or nullcontext(), root, address, actors, ray_options, tags,
                   frozenset(collection.unread_facts()))
        for done, result in _batches(run, sources, {k: v for k, v in known.items() if k not in redo}, progress):
            commit_batch(collection, result, known, report)
            if tags and result.unchanged:
                collection.tag(result.unchanged, add=tags)
        return finish(collection, report, previous, set(sources), prune, build_index, log, start)


@dataclass
class _Run:
    """How the batches of one ingest run: where, how big, under which lock, confined to which root."""

    collection: Collection
    engine: str
    batch_size: int
    lock: AbstractContextManager
    root: str | None
    address: str | None
    actors: int
    ray_options: dict[str, Any]
    tags: Sequence[str] = ()
    refresh: frozenset[str] = frozenset()  # unchanged files whose typed columns were never read (format 2)


def _batches(run: _Run, sources: list[str], known: dict[str, tuple[str, int, float]],
             progress: Callable[[int, int], None] | None) -> Iterator[tuple[int, BatchResult]]:
    """(files done so far, the batch's result), batch after batch, from the chosen engine."""
    digests = {k: v[0] for k, v in known.items()}  # `known` here: items whose views are current
    if progress:
        progress(0, len(sources))
    done = 0
    for size, result in _engine_batches(run, sources, digests):
        done += size
        yield done, result
        if progress:
            progress(done, len(sources))


def _engine_batches(run: _Run, sources: list[str], digests: dict[str, str]) -> Iterator[tuple[int, BatchResult]]:
    if run.engine == "ray":
        from omnibind.scale.ray_ingest import ray_batches

        yield from ray_batches(run.collection, sources, digests, address=run.address, actors=run.actors,
                               batch_size=run.batch_size, root=run.root, views=run.collection.views,
                               tags=run.tags, refresh=run.refresh, **run.ray_options)
        return
    for lo in range(0, len(sources), run.batch_size):
        part = sources[lo : lo + run.batch_size]
        with run.lock:
            result = embed_batch(run.collection.space, part, digests, run.root, run.collection.views, run.tags,
                                 run.refresh)
        yield len(part), result


def commit_batch(collection: Collection, result: BatchResult, known: dict[str, tuple[str, int, float]],
                 report: IngestReport) -> None:
    """Store a batch's rows in one commit (counted as added or updated), then drop the rows of
    files that turned unreadable (their old vectors are wrong); keeps `known` current."""
    report.unchanged += len(result.unchanged)
    report.failed.extend(result.failed)
    report.notes.extend(result.notes)
    if result.rows:
        _keep_tags(collection, result.rows, known)
        collection.upsert(result.rows)  # one commit: the whole batch (items and segments) or none of it
        for r in result.rows:
            if r.get("kind", ITEM) != ITEM:
                report.segments += 1
            elif r["id"] in known:
                report.updated += 1
            else:
                report.added += 1
            known[r["id"]] = (file_state(r["sha256"], r.get("sidecar")), r["size"], r["mtime"])
    if result.facts:
        collection.set_facts(result.facts)  # read again from unchanged files: their vectors stay
    if result.stale:
        collection.delete(result.stale)
        for key in result.stale:
            known.pop(key, None)


def _keep_tags(collection: Collection, rows: list[dict[str, Any]], known: dict[str, Any]) -> None:
    """Stored items re-embedded without a sidecar keep the tags they had (set by PATCH, `tag` or an
    earlier --tag) beside this run's: a sidecar, where there is one, says the tags itself."""
    again = [r["id"] for r in rows if r.get("kind", ITEM) == ITEM and r["id"] in known and not r.get("sidecar")]
    if not again:
        return
    old = {r["id"]: r["tags"] or [] for r in collection.get(again, ["id", "tags"])}
    for r in rows:
        if old.get(r.get("item") or r["id"]):
            r["tags"] = list(dict.fromkeys([*old[r.get("item") or r["id"]], *(r.get("tags") or [])]))
            if r.get("kind", ITEM) == ITEM:
                r["words"] = item_words(r)


def finish(collection: Collection, report: IngestReport, previous: set[str], present: set[str], prune: bool,
           build_index: bool, log: Path | None, start: float) -> IngestReport:
    """The end of an ingest, whatever engine embedded it: prune rows of vanished files under the
    root, keep the index and the calibration sample current, write the failure log."""
    # under the root by path components: pruning /data/media never touches /data/media2
    gone = [i for i in previous if beneath(source_path(i), report.root) and i not in present]
    if prune and gone:
        report.renamed = _renamed(collection, gone, present)
        report.removed = collection.delete(gone)
    elif gone:
        report.missing = len(gone)
    if report.embedded or report.removed:
        if build_index:
            collection.ensure_index()
            ensure_fts(collection)  # the full-text index on `words` (omnibind/fulltext.py), caught up
        collection.calibration.refresh()
    report.seconds = time.perf_counter() - start
    report.log = str(_write_log(collection, report, log)) if report.failed or report.notes else None
    return report


def _renamed(collection: Collection, gone: list[str], present: set[str]) -> list[tuple[str, str]]:
    """(old, new) pairs of a vanished item and a present one with the same content: a moved file."""
    t = collection.column("id", "sha256", where=ITEMS_ONLY)  # content only: a sidecar may differ
    content = dict(zip(t.column("id").to_pylist(), t.column("sha256").to_pylist()))
    by_hash = {content[i]: i for i in sorted(present) if i in content}
    return sorted((old, by_hash[content[old]]) for old in gone if old in content and content[old] in by_hash)


def _write_log(collection: Collection, report: IngestReport, log: Path | None) -> Path:
    path = log or collection.path / "logs" / f"ingest-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"summary": report.summary()}) + "\n")
        for source, reason in report.failed:
            fh.write(json.dumps({"path": source, "reason": reason}) + "\n")
        for source, note in report.notes:
            fh.write(json.dumps({"path": source, "note": note}) + "\n")
    return path
