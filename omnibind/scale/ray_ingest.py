"""The Ray engine of ingest: the pipeline's batches run on a pool of Ray actors (Ray Data
`map_batches`), the driver commits them.

Each actor loads the collection's space once and runs `omnibind.pipeline.embed_batch` — the same
per-batch function as the local engine — on a batch of URIs (local paths, or `s3://`-style URIs
read through pyarrow's filesystems), returning the `BatchResult` as Arrow. The driver
(`omnibind.ingest.ingest(..., engine="ray")`) commits each batch in one LanceDB commit keyed by id,
exactly as the local engine does: unchanged files skipped, changed files replaced, `prune` removes
vanished ones, a crash (of the driver or of a worker) loses at most uncommitted batches and never
duplicates a row. Ray Data's actor pools restart dead actors and retry their batches.

Writing from the driver keeps one writer per table (LanceDB commits are optimistic; concurrent
merge-inserts from many workers would conflict and retry); the embedding, which is the cost, is
what runs in parallel. Lance's own Ray sink needs the `pylance` package and appends, not merges.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from omnibind.collection import Collection
from omnibind.device import chosen
from omnibind.extras import require
from omnibind.pipeline import BatchResult, embed_batch


class EmbedBatch:
    """A Ray Data actor: one space per actor, a batch of URIs in, the pipeline's result out."""

    def __init__(self, space_ref: str, fingerprint: str, known: Any, crash_marker: str | None = None,
                 root: str | None = None, views: Sequence[str] = (), runtime: dict[str, Any] | None = None,
                 tags: Sequence[str] = (), refresh: frozenset[str] = frozenset()) -> None:
        import ray
        import torch

        from omnibind.device import configure
        from omnibind.space import load_space

        configure(**(runtime or {}))  # the driver's --device / --precision (None: this worker's auto)
        torch.set_num_threads(1)  # one actor per core: more threads would only contend
        self.space = load_space(space_ref)
        if self.space.fingerprint() != fingerprint:
            raise RuntimeError(f"space {space_ref!r} on this worker is not the collection's ({fingerprint[:12]})")
        self.known = ray.get(known) if isinstance(known, ray.ObjectRef) else known
        self.crash_marker, self.root, self.views, self.tags = crash_marker, root, tuple(views), tuple(tags)
        self.refresh = frozenset(refresh)

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.crash_marker and not os.path.exists(self.crash_marker):  # tests: die once, mid-run
            Path(self.crash_marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        uris = batch.column("uri").to_pylist()
        return embed_batch(self.space, uris, self.known, self.root, self.views, self.tags,
                           self.refresh).to_arrow(self.space.dim)


def ray_batches(collection: Collection, uris: Sequence[str], known: dict[str, str], *, address: str | None = None,
                actors: int = 2, batch_size: int = 32, crash_marker: str | None = None,
                num_cpus_per_actor: float = 1.0, root: str | None = None,
                views: Sequence[str] = (), tags: Sequence[str] = (),
                refresh: frozenset[str] = frozenset()) -> Iterator[tuple[int, BatchResult]]:
    """(files, result) of each batch, embedded on Ray actors (`address`: None or "auto" joins a
    running cluster if there is one, else starts a local one; "ray://host:10001" a remote)."""
    ray = require("ray", "ray")
    require("ray.data", "ray")
    if not uris:
        return
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # per-operator INFO lines would drown the progress bar
    ray.data.DataContext.get_current().enable_progress_bars = False
    space_record = collection.meta["space"]
    blocks = max(actors, (len(uris) + batch_size - 1) // batch_size)
    ds = ray.data.from_items([{"uri": u} for u in uris], override_num_blocks=min(blocks, len(uris)))
    ds = ds.map_batches(
        EmbedBatch, batch_size=batch_size, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors),
        fn_constructor_kwargs={"space_ref": space_record["ref"], "fingerprint": space_record["fingerprint"],
                               "known": ray.put(known), "crash_marker": crash_marker,
                               "root": root, "views": tuple(views), "runtime": chosen(),
                               "tags": tuple(tags), "refresh": frozenset(refresh)},
        num_cpus=num_cpus_per_actor,
    )  # Ray Data's actor pools restart dead actors and retry their batches (max_restarts / max_task_retries -1)
    waiting: list[dict[str, Any]] = []  # rows of items whose other rows are still on their way
    parts: dict[str, int] = {}
    for batch in ds.iter_batches(batch_size=batch_size, batch_format="pyarrow"):
        result = BatchResult.from_arrow(batch, known)
        parts.update(result.parts)
        result.rows, waiting = _complete_items(waiting + result.rows, parts)
        yield result.items + len(result.failed) + len(result.unchanged), result


def _complete_items(rows: list[dict[str, Any]], parts: dict[str, int]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows of items that arrived whole, rows still waiting): an item and its segments are
    committed together, even when Ray Data cut them into two batches."""
    count: dict[str, int] = {}
    for r in rows:
        count[r["item"]] = count.get(r["item"], 0) + 1
    whole = {i for i, n in count.items() if n >= parts[i]}
    return [r for r in rows if r["item"] in whole], [r for r in rows if r["item"] not in whole]
