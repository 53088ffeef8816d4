"""Tower: a backbone plus a head, for one modality.

Inputs are cut into segments (one for a sentence or an image, one per window for audio),
segments from many inputs share a batch, and the head's outputs are L2-normalised and averaged
per input in the shared space, then normalised again. A bad input fails alone.
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
        """Head + L2 normalisation of a batch of backbone features."""
        out = torch.nn.functional.normalize(self.head(features).float(), dim=-1)
        return out.cpu().numpy()

    def embed(
        self, inputs: Sequence[Input], batch_size: int = 32, progress: Progress | None = None
    ) -> tuple[np.ndarray, dict[int, InputError]]:
        """Vectors for `inputs` (rows of failed inputs are NaN) and the errors by position."""
        n = len(inputs)
        sums = np.zeros((n, self.dim), dtype=np.float64)
        errors: dict[int, InputError] = {}
        segments_of = lambda i: self.backbone.segments(inputs[i])  # noqa: E731
        for features, owners in feature_batches(self.backbone, n, segments_of, batch_size, errors, progress):
            np.add.at(sums, np.asarray(owners), self.project(features))
        for i in errors:
            sums[i] = 0.0  # rows of a failed input that were embedded before it failed
        return _finish(sums, errors), errors


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


def _finish(sums: np.ndarray, errors: dict[int, InputError]) -> np.ndarray:
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    out = (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32)
    for i in errors:
        out[i] = np.nan
    return out
