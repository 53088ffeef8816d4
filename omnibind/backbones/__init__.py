"""Backbones: pretrained, usually frozen, encoders for one modality, registered by name.

A backbone cuts each input into one or more *segments* (a sentence, an image, a window of
audio), stacks segments from many inputs into one batch, and returns named feature tensors
(`{"embedding": ...}`, or `{"pooled": ..., "logits": ...}`). Towers fuse the segments of one
input after the head, in the shared space, so long inputs cost bounded memory.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import torch

from omnibind.errors import BackboneError
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

    def describe(self) -> dict[str, Any]:
        """Where the weights come from, for `omnibind info` and provenance."""
        return {"ref": self.ref, "modality": self.modality, "outputs": self.outputs}

    def class_names(self) -> list[list[str]] | None:
        """Synonym lists of the classifier's classes, when the backbone has one."""
        return None


Factory = Callable[[str, str], Backbone]  # (argument after the prefix, modality) -> backbone
_FACTORIES: dict[str, tuple[Factory, str | None]] = {}
_LOADED: dict[tuple[str, str], Backbone] = {}
_LOCK = threading.Lock()


def register(name: str, modality: str | None = None) -> Callable[[Factory], Factory]:
    """Register a factory for `name` (exact) or `name:` (prefix, e.g. `hf:<id>`)."""

    def wrap(factory: Factory) -> Factory:
        _FACTORIES[name] = (factory, modality)
        return factory

    return wrap


def default_modality(ref: str) -> str | None:
    """The modality a plain backbone name serves (None for prefixes that serve several)."""
    _ensure_registered()
    entry = _FACTORIES.get(ref)
    return entry[1] if entry else None


def load_backbone(ref: str, modality: str | None = None) -> Backbone:
    """Load (once per process) the backbone `ref` for `modality`."""
    _ensure_registered()
    if ref in _FACTORIES:
        factory, fixed = _FACTORIES[ref]
        modality = modality or fixed
        arg = ""
        if fixed and modality != fixed:
            raise BackboneError(f"backbone {ref!r} serves {fixed}, not {modality}")
    elif ":" in ref and ref.split(":", 1)[0] + ":" in _FACTORIES:
        prefix, arg = ref.split(":", 1)
        factory, _ = _FACTORIES[prefix + ":"]
        if modality is None:
            raise BackboneError(f"backbone {ref!r} serves several modalities; name one")
    else:
        known = ", ".join(sorted(_FACTORIES))
        raise BackboneError(f"unknown backbone {ref!r}; known: {known} (prefixes end with ':')")
    key = (ref, modality)
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = factory(arg, modality)
        return _LOADED[key]


def _ensure_registered() -> None:
    # Importing the family modules runs their @register decorators; heavy imports stay lazy.
    from omnibind.backbones import aisfx, efficientnet, hf, sentence_transformers  # noqa: F401
