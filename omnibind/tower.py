"""Tower: a backbone plus a head, for one modality, and the one projection step of omnibind.

Inputs are cut into segments (one for a sentence or an image, one per window for audio),
segments from many inputs share a batch, and the head's outputs are L2-normalised and averaged
per input in the shared space, then normalised again (`fuse`). A bad input fails alone. Video,
the feature cache (`bind.cache.project_items`), merge and evaluation all fuse through `fuse`.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from omnibind.backbones import Backbone, load_backbone
from omnibind.errors import InputError
from omnibind.heads import Head
from omnibind.inputs import Input

Progress = Callable[[int], None]  # called with how many more inputs are finished
DECODE_THREADS_ENV = "OMNIBIND_DECODE_THREADS"  # threads cutting segments ahead of the backbone (0: none)


@dataclass
class Tower:
    modality: str
    backbone_ref: str
    head: Head
    _backbone: Backbone | None = field(default=None, repr=False)

    @property
    def backbone(self) -> Backbone:
        if self._backbone is None:
            self._backbone = load_backbone(self.backbone_ref, self.modality)
        return self._backbone

    @property
    def dim(self) -> int:
        return self.head.out_dim

    def config(self) -> dict[str, Any]:
        return {"modality": self.modality, "backbone": self.backbone_ref, "head": self.head.config()}

    @torch.inference_mode()
    def project(self, features: dict[str, torch.Tensor]) -> np.ndarray:
        """Head + L2 normalisation of a batch of segment features: one unit vector per segment."""
        return torch.nn.functional.normalize(self.head(features).float(), dim=-1).cpu().numpy()

    def embed(
        self, inputs: Sequence[Input], batch_size: int = 32, progress: Progress | None = None
    ) -> tuple[np.ndarray, dict[int, InputError]]:
        """Vectors for `inputs` (rows of failed inputs are NaN) and the errors by position."""
        n = len(inputs)
        vectors: list[np.ndarray] = []
        owners: list[int] = []
        errors: dict[int, InputError] = {}
        segments_of = lambda i: self.backbone.segments(inputs[i])  # noqa: E731
        for features, batch_owners in feature_batches(self.backbone, n, segments_of, batch_size, errors, progress):
            vectors.append(self.project(features))
            owners += batch_owners
        kept = [j for j, o in enumerate(owners) if o not in errors]  # rows of inputs that failed later
        stacked = np.concatenate(vectors)[kept] if vectors else np.zeros((0, self.dim), np.float32)
        out = fuse(stacked, np.asarray(owners, dtype=np.int64)[kept], n).numpy()
        refuse_non_finite(out, [x.source for x in inputs], errors)
        out[list(errors)] = np.nan
        return out, errors


def refuse_non_finite(vectors: np.ndarray, sources: Sequence[str], errors: dict[int, InputError]) -> None:
    """A row with NaN or inf becomes that input's InputError (in `errors`): never a result."""
    for i in np.flatnonzero(~np.isfinite(vectors).all(axis=1)).tolist():
        if i not in errors:
            errors[i] = InputError(sources[i], "the model produced a non-finite vector (NaN or inf)").with_index(i)


def fuse(vectors: torch.Tensor | np.ndarray, owners: Sequence[int] | np.ndarray, n: int,
         weights: Sequence[float] | np.ndarray | None = None) -> torch.Tensor:
    """Unit-normalise each segment vector, (weighted) sum them per owner, unit-normalise: the
    one per-input fusion of omnibind (windows of a sound, frames and soundtrack of a video).
    Inputs with no segment get a zero row."""
    v = torch.as_tensor(np.asarray(vectors) if not isinstance(vectors, torch.Tensor) else vectors).double()
    unit = torch.nn.functional.normalize(v, dim=-1)
    if weights is not None:
        unit = unit * torch.as_tensor(np.asarray(weights, dtype=np.float64))[:, None]
    sums = torch.zeros(n, unit.shape[1] if unit.ndim == 2 else 0, dtype=torch.float64)
    sums.index_add_(0, torch.as_tensor(np.asarray(owners, dtype=np.int64)), unit)
    return torch.nn.functional.normalize(sums, dim=-1).float()


def feature_batches(
    backbone: Backbone, n: int, segments_of: Callable[[int], Iterable[Any]], batch_size: int,
    errors: dict[int, InputError], progress: Progress | None = None, workers: int | None = None,
) -> Iterator[tuple[dict[str, torch.Tensor], list[int]]]:
    """Backbone features of the segments of items 0..n-1, batched across items: (features, owners).

    Segments from many inputs share a batch (sorted by the backbone's `sort_key` when it has one);
    an input whose segments raise InputError is recorded in `errors` and its queued segments are
    dropped, so one bad input fails alone. Rows already yielded for it are the caller's to discard.
    For backbones that set `prefetch` (decoding and resizing images, resampling audio: work that
    releases the GIL), `workers` threads (default `prefetch_workers()`) cut the segments of the
    next inputs while the backbone runs on this batch; order, errors and progress are as without.
    """
    pending: list[Any] = []
    owners: list[int] = []
    ready = 0  # inputs whose segments are all queued but not yet reported done
    batch_size = max(batch_size, getattr(backbone, "min_batch", 1))  # a fixed cost per call asks for more
    buffer = batch_size * max(1, backbone.flush_batches)
    if workers is None:
        workers = prefetch_workers() if getattr(backbone, "prefetch", False) and n > 1 else 0

    def drain() -> Iterator[tuple[dict[str, torch.Tensor], list[int]]]:
        nonlocal ready
        for rows in _batches(pending, batch_size, backbone.sort_key):
            yield backbone.features(backbone.collate([pending[j] for j in rows])), [owners[j] for j in rows]
        pending.clear()
        owners.clear()
        if progress and ready:
            progress(ready)
        ready = 0

    for i, segments in ahead(n, segments_of, workers, lookahead=buffer, per_item=batch_size):
        try:
            for segment in segments:
                pending.append(segment)
                owners.append(i)
                if len(pending) >= buffer:
                    yield from drain()
        except InputError as exc:
            errors[i] = exc.with_index(i)
            keep = [j for j, o in enumerate(owners) if o != i]
            pending[:] = [pending[j] for j in keep]
            owners[:] = [owners[j] for j in keep]
        ready += 1
    yield from drain()


def prefetch_workers() -> int:
    """Threads that cut segments ahead of the backbone: $OMNIBIND_DECODE_THREADS, else one per
    core beyond the first (at least one), at most 4."""
    wanted = os.environ.get(DECODE_THREADS_ENV, "").strip()
    if wanted.isdigit():
        return int(wanted)
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def ahead(n: int, segments_of: Callable[[int], Iterable[Any]], workers: int, lookahead: int,
          per_item: int) -> Iterator[tuple[int, Iterator[Any]]]:
    """(i, segments of input i) for i in 0..n-1, in order. With `workers` > 0, threads cut the
    segments of up to `lookahead` inputs ahead, each into a queue of at most `per_item` segments
    (memory stays bounded however long an input is); an exception is raised where the segment
    it replaced would have been, in the consumer's thread. With 0 workers: lazily, in this thread."""
    if workers <= 0:
        for i in range(n):
            yield i, _lazy(segments_of, i)
        return
    stop = threading.Event()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="omnibind-segments")
    queues: deque[queue.Queue] = deque()
    try:
        for i in range(n):
            while len(queues) < lookahead and i + len(queues) < n:
                q: queue.Queue = queue.Queue(maxsize=max(1, per_item))
                pool.submit(_fill, segments_of, i + len(queues), q, stop)
                queues.append(q)
            yield i, _drain(queues.popleft())
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


def _lazy(segments_of: Callable[[int], Iterable[Any]], i: int) -> Iterator[Any]:
    yield from segments_of(i)


_SEGMENT, _END, _ERROR = 0, 1, 2


def _fill(segments_of: Callable[[int], Iterable[Any]], i: int, q: queue.Queue, stop: threading.Event) -> None:
    """Worker: the segments of input i into q, then an end mark (or the exception it raised)."""
    try:
        for segment in segments_of(i):
            if not _put(q, (_SEGMENT, segment), stop):
                return
        _put(q, (_END, None), stop)
    except BaseException as exc:  # handed to the consumer, raised there as it would have been
        _put(q, (_ERROR, exc), stop)


def _put(q: queue.Queue, entry: tuple[int, Any], stop: threading.Event) -> bool:
    """Put, waiting while the queue is full, unless the consumer has gone: False then."""
    while not stop.is_set():
        try:
            q.put(entry, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _drain(q: queue.Queue) -> Iterator[Any]:
    while True:
        kind, value = q.get()
        if kind == _END:
            return
        if kind == _ERROR:
            raise value
        yield value


def _batches(segments: list[Any], batch_size: int, sort_key: Callable[[Any], Any]) -> list[list[int]]:
    """Positions of `segments` cut into batches, grouped by `sort_key` when it gives one."""
    order = list(range(len(segments)))
    if segments and sort_key(segments[0]) is not None:
        order.sort(key=lambda j: sort_key(segments[j]))
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]

