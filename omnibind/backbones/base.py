"""The Backbone interface: a pretrained, usually frozen, encoder for one modality.

A backbone cuts each input into one or more *segments* (a sentence, an image, a window of
audio), stacks segments from many inputs into one batch, and returns named feature tensors
(`{"embedding": ...}`, or `{"pooled": ..., "logits": ...}`). Towers fuse the segments of one
input after the head, in the shared space, so long inputs cost bounded memory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import torch

from omnibind.inputs import Input

Features = dict[str, torch.Tensor]


class Backbone(ABC):
    """One pretrained encoder. Subclasses set `ref`, `modality` and `outputs`."""

    ref: str
    modality: str
    outputs: dict[str, int]  # feature name -> width
    # Backbones whose cost grows with segment length (transformers on text) set `sort_key`:
    # the tower then buffers `flush_batches` batches, sorts them by it and cuts batches of
    # similar length, as sentence-transformers' encode() does, so little compute goes to padding.
    flush_batches: int = 1
    # Backbones with a fixed cost per call (Apertium starts its pipeline processes for each batch)
    # ask for batches of at least `min_batch` segments, whatever the caller's batch size.
    min_batch: int = 1

    def sort_key(self, segment: Any) -> int | None:
        return None

    @abstractmethod
    def segments(self, item: Input) -> Iterator[Any]:
        """Yield the preprocessed segments of one input; raise InputError if it is bad."""

    def collate(self, segments: list[Any]) -> Any:
        """Stack segments into what `features` takes (tensors by default)."""
        return torch.stack([torch.as_tensor(s) for s in segments])

    @abstractmethod
    def features(self, batch: Any) -> Features:
        """Frozen features of a batch of segments, one row per segment."""

    def preprocess_config(self) -> dict[str, Any]:
        """What turns an input into segments (size, mean, std, resize rule, sample rate, window...).

        Part of the backbone's description (as open_clip keeps it in the model config) and of the
        feature-cache key: change a parameter and cached features are never served stale."""
        return {}

    def describe(self) -> dict[str, Any]:
        """Where the weights come from, for `omnibind info` and provenance."""
        return {"ref": self.ref, "modality": self.modality, "outputs": self.outputs,
                "preprocess": self.preprocess_config()}

    def class_names(self) -> list[list[str]] | None:
        """Synonym lists of the classifier's classes, when the backbone has one."""
        return None
