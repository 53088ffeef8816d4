"""Ingest on Ray: decode + embed on a pool of Ray actors (Ray Data `map_batches`), commit from
the driver.

The listing (a folder, a glob, or a manifest / Parquet file of URIs, `s3://`-style included
through pyarrow's filesystems) becomes a Ray Dataset; each actor loads the collection's space
once and turns a batch of URIs into table rows: read, sha256, skip if unchanged, decode, embed,
thumbnail, or a failure with its reason. The driver upserts each returned batch in one LanceDB
commit keyed by id, exactly as the local engine does, so the semantics are the same: unchanged
files skipped, changed files replaced, `prune` removes vanished ones, a crash (of the driver or of
a worker) loses at most uncommitted batches and never duplicates a row. Actors are restarted and
their batches retried by Ray when a worker dies.

Writing from the driver keeps one writer per table (LanceDB commits are optimistic; concurrent
merge-inserts from many workers would conflict and retry); the embedding, which is the cost, is
what runs in parallel. Lance's own Ray sink needs the `pylance` package and appends, not merges.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from omnibind.collection import Collection
from omnibind.errors import InputError, OmnibindError
from omnibind.ingest import IngestReport, commit_batch, finish, row_for, walk

URI_COLUMNS = ("uri", "path", "source")


def list_sources(source: str | Path, on_skip: Callable[[str, str], None]) -> list[str]:
    """URIs to ingest: a folder (walked as the local engine walks it), a glob, a Parquet file with
    a uri/path column, a `.uris` / `.lst` manifest (one URI per line), or a single file or URI."""
    text = str(source)
    if "://" not in text and Path(text).is_dir():
        return [str(p) for p in walk(Path(text), on_skip)]
    if any(c in text for c in "*?[") and "://" not in text:
        return sorted(p for p in globlib.glob(os.path.expanduser(text), recursive=True) if os.path.isfile(p))
    if text.endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(text)
        column = next((c for c in URI_COLUMNS if c in table.column_names), None)
        if column is None:
            raise OmnibindError(f"{text}: no {'/'.join(URI_COLUMNS)} column (columns: {', '.join(table.column_names)})")
        return [u for u in table.column(column).to_pylist() if u]
    if text.endswith((".lst", ".uris")) and Path(text).is_file():
        return [line.strip() for line in Path(text).read_text("utf-8").splitlines() if line.strip() and not line.startswith("#")]
    if "://" in text or Path(text).is_file():
        return [text]
    raise OmnibindError(f"{text}: no such folder, file, glob match or manifest")


def _read(uri: str) -> tuple[bytes, float]:
    """(bytes, mtime) of a local path or a URI any pyarrow filesystem understands."""
    if "://" not in uri or uri.startswith("file://"):
        path = uri.removeprefix("file://")
        with open(path, "rb") as fh:
            return fh.read(), os.stat(path).st_mtime
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(uri)
    info = fs.get_file_info(path)
    with fs.open_input_file(path) as fh:
        return fh.read(), (info.mtime.timestamp() if info.mtime else 0.0)


class EmbedBatch:
    """A Ray Data actor: one space per actor, a batch of URIs in, table rows out."""

    def __init__(self, space_ref: str, fingerprint: str, known: Any, crash_marker: str | None = None) -> None:
        import ray
        import torch

        from omnibind.space import load_space

        torch.set_num_threads(1)  # one actor per core: more threads would only contend
        self.space = load_space(space_ref)
        if self.space.fingerprint() != fingerprint:
            raise RuntimeError(f"space {space_ref!r} on this worker is not the collection's ({fingerprint[:12]})")
        self.known = ray.get(known) if isinstance(known, ray.ObjectRef) else known
        self.crash_marker = crash_marker

    def __call__(self, batch: pa.Table) -> pa.Table:
        from omnibind.inputs import load_bytes, load_file

        if self.crash_marker and not os.path.exists(self.crash_marker):  # tests: die once, mid-run
            Path(self.crash_marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        out: list[dict[str, Any]] = []
        todo: list[tuple[str, Any, str, int, float]] = []
        for uri in batch.column("uri").to_pylist():
            try:
                data, mtime = _read(uri)
            except OSError as exc:
                out.append({"id": uri, "status": "failed", "reason": f"cannot read file: {exc.strerror or exc}"})
                continue
            digest = hashlib.sha256(data).hexdigest()
            if self.known.get(uri) == digest:
                out.append({"id": uri, "status": "unchanged"})
                continue
            try:
                local = "://" not in uri or uri.startswith("file://")
                item = load_file(Path(uri.removeprefix("file://")), self.space.limits) if local else \
                    load_bytes(data, uri, self.space.limits)
                todo.append((uri, item, digest, len(data), mtime))
            except InputError as exc:
                out.append({"id": uri, "status": "failed", "reason": exc.reason})
        if todo:
            result = self.space.embed([t[1] for t in todo], on_error="skip")
            for e in result.errors:
                out.append({"id": todo[e.index][0], "status": "failed", "reason": e.reason})
            for vector, j in zip(result.vectors, result.indices):
                uri, item, digest, size, mtime = todo[j]
                row = row_for(item, vector, uri, {}, digest, size, mtime)
                out.append({**row, "vector": [float(x) for x in vector], "status": "embedded"})
        return _rows_table(out, self.space.dim)


def _rows_table(rows: list[dict[str, Any]], dim: int) -> pa.Table:
    schema = pa.schema([
        ("id", pa.string()), ("status", pa.string()), ("reason", pa.string()),
        ("vector", pa.list_(pa.float32(), dim)), ("modality", pa.string()), ("source", pa.string()),
        ("sha256", pa.string()), ("size", pa.int64()), ("mtime", pa.float64()), ("metadata", pa.string()),
        ("text", pa.string()), ("thumbnail", pa.binary()), ("duration", pa.float64()),
    ])
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)


def ray_ingest(collection: Collection, source: str | Path, *, address: str | None = None, actors: int = 2,
               batch_size: int = 32, prune: bool = False, progress: Callable[[int, int], None] | None = None,
               log: Path | None = None, build_index: bool = True, crash_marker: str | None = None,
               num_cpus_per_actor: float = 1.0) -> IngestReport:
    """Bring the collection in line with `source` using a Ray cluster (`address`: None or "auto"
    joins a running cluster if there is one, else starts a local one; "ray://host:10001" a remote).
    Same semantics and report as `omnibind.ingest.ingest`."""
    import ray

    collection.check_consistent()
    start = time.perf_counter()
    local = "://" not in str(source)
    report = IngestReport(root=os.path.abspath(str(source)) if local else str(source))
    uris = list_sources(source, lambda p, r: report.failed.append((p, r)))
    report.seen = len(uris)
    known = collection.manifest()
    previous = set(known)
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    if progress:
        progress(0, len(uris))
    if uris:
        _run(collection, uris, known, report, actors, batch_size, progress, crash_marker, num_cpus_per_actor)
    return finish(collection, report, previous, set(uris), prune, build_index, log, start)


def _run(collection: Collection, uris: Sequence[str], known: dict[str, tuple[str, int, float]], report: IngestReport,
         actors: int, batch_size: int, progress: Callable[[int, int], None] | None, crash_marker: str | None,
         num_cpus_per_actor: float) -> None:
    import logging

    import ray

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # per-operator INFO lines would drown the progress bar
    ray.data.DataContext.get_current().enable_progress_bars = False
    space_record = collection.meta["space"]
    known_ref = ray.put({k: v[0] for k, v in known.items()})  # id -> sha256: what the actors skip
    blocks = max(actors, (len(uris) + batch_size - 1) // batch_size)
    ds = ray.data.from_items([{"uri": u} for u in uris], override_num_blocks=min(blocks, len(uris)))
    ds = ds.map_batches(
        EmbedBatch, batch_size=batch_size, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors),
        fn_constructor_kwargs={"space_ref": space_record["ref"], "fingerprint": space_record["fingerprint"],
                               "known": known_ref, "crash_marker": crash_marker},
        num_cpus=num_cpus_per_actor,
    )  # Ray Data's actor pools restart dead actors and retry their batches (max_restarts / max_task_retries -1)
    done = 0
    for batch in ds.iter_batches(batch_size=batch_size, batch_format="pyarrow"):
        rows = batch.to_pylist()
        stale = []
        for r in rows:
            if r["status"] == "unchanged":
                report.unchanged += 1
            elif r["status"] == "failed":
                report.failed.append((r["id"], r["reason"]))
                if r["id"] in known:
                    stale.append(r["id"])  # it changed into something unreadable: the old vector is wrong
        embedded = [{k: v for k, v in r.items() if k not in ("status", "reason")} for r in rows if r["status"] == "embedded"]
        commit_batch(collection, embedded, stale, known, report)
        done += len(rows)
        if progress:
            progress(done, len(uris))
