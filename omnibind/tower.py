"""Tower: a backbone plus a head, for one modality, and the one projection step of omnibind.

Inputs are cut into segments (one for a sentence or an image, one per window for audio),
segments from many inputs share a batch, and the head's outputs are L2-normalised and averaged
per input in the shared space, then normalised again (`fuse`). A bad input fails alone. Video,
the feature cache (`bind.cache.project_items`), merge and evaluation all fuse through `fuse`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from omnibind.backbones import Backbone, load_backbone
from omnibind.errors import InputError
from omnibind.heads import Head
from omnibind.inputs import Input

Progress = Callable[[int], None]  # called with how many more inputs are finished


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
    errors: dict[int, InputError], progress: Progress | None = None,
) -> Iterator[tuple[dict[str, torch.Tensor], list[int]]]:
    """Backbone features of the segments of items 0..n-1, batched across items: (features, owners).

    Segments from many inputs share a batch (sorted by the backbone's `sort_key` when it has one);
    an input whose segments raise InputError is recorded in `errors` and its queued segments are
    dropped, so one bad input fails alone. Rows already yielded for it are the caller's to discard.
    """
    pending: list[Any] = []
    owners: list[int] = []
    ready = 0  # inputs whose segments are all queued but not yet reported done
    batch_size = max(batch_size, getattr(backbone, "min_batch", 1))  # a fixed cost per call asks for more
    buffer = batch_size * max(1, backbone.flush_batches)

    def drain() -> Iterator[tuple[dict[str, torch.Tensor], list[int]]]:
        nonlocal ready
        for rows in _batches(pending, batch_size, backbone.sort_key):
            yield backbone.features(backbone.collate([pending[j] for j in rows])), [owners[j] for j in rows]
        pending.clear()
        owners.clear()
        if progress and ready:
            progress(ready)
        ready = 0

    for i in range(n):
        try:
            for segment in segments_of(i):
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


def _batches(segments: list[Any], batch_size: int, sort_key: Callable[[Any], Any]) -> list[list[int]]:
    """Positions of `segments` cut into batches, grouped by `sort_key` when it gives one."""
    order = list(range(len(segments)))
    if segments and sort_key(segments[0]) is not None:
        order.sort(key=lambda j: sort_key(segments[j]))
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]

