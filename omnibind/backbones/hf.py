"""Hugging Face transformers towers by id or local folder: `hf:<id>` for CLIP (text, image),
SigLIP (text, image) and CLAP (text, audio). The modality picks which half of the joint model
a tower uses, so a CLIP space is `text: hf:<id>` + `image: hf:<id>` with identity heads.

Nothing here downloads at import time; loading an id that is not in the local Hugging Face cache
needs network access (set HF_HUB_OFFLINE=1 to make that fail fast).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from omnibind.backbones.base import Backbone, Features
from omnibind.backbones.registry import register
from omnibind.device import resolve_device
from omnibind.errors import BackboneError
from omnibind.inputs import AudioClip, Input, to_rgb

_SUPPORTED = {"clip": ("text", "image"), "siglip": ("text", "image"), "clap": ("text", "audio")}


def _pooled(out: Any) -> torch.Tensor:
    """transformers < 5 returns a tensor from get_*_features, 5.x a ModelOutput."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


_SHARED: dict[str, tuple[Any, Any, Any]] = {}
_SHARED_LOCK = threading.Lock()


def _load(model_id: str, modality: str) -> tuple[Any, Any, Any]:
    """(config, model, processor) of `model_id`, loaded once and shared by its modalities.

    A CLIP space has a text and an image tower over the same checkpoint; both use one copy.
    """
    from transformers import AutoConfig, AutoModel, AutoProcessor

    with _SHARED_LOCK:
        if model_id in _SHARED:
            config = _SHARED[model_id][0]
        else:
            try:
                config = AutoConfig.from_pretrained(model_id)
            except Exception as exc:
                raise BackboneError(f"cannot load Hugging Face config {model_id!r}: {exc}") from exc
        kind = config.model_type
        if kind not in _SUPPORTED:
            raise BackboneError(f"hf:{model_id} is a {kind!r} model; supported: {', '.join(_SUPPORTED)}")
        if modality not in _SUPPORTED[kind]:
            raise BackboneError(f"hf:{model_id} ({kind}) has no {modality} tower; it has {_SUPPORTED[kind]}")
        if model_id not in _SHARED:
            try:
                model = AutoModel.from_pretrained(model_id).eval()
                processor = AutoProcessor.from_pretrained(model_id)
            except Exception as exc:
                raise BackboneError(f"cannot load Hugging Face model {model_id!r}: {exc}") from exc
            _SHARED[model_id] = (config, model, processor)
        return _SHARED[model_id]


def _max_tokens(config: Any, tokenizer: Any) -> int:
    """Longest token sequence the text tower can take.

    The tokenizer's `model_max_length` is missing (a huge sentinel) in some saved tokenizers;
    the position table of the text model is the hard limit. RoBERTa-style text towers (CLAP)
    number positions from `pad_token_id + 1`.
    """
    text = config.text_config
    limit = int(getattr(text, "max_position_embeddings", 0) or 0)
    if limit and config.model_type == "clap":
        limit -= int(getattr(text, "pad_token_id", None) or 0) + 1
    declared = int(getattr(tokenizer, "model_max_length", 0) or 0)
    if 0 < declared < 1_000_000:
        limit = min(limit, declared) if limit > 0 else declared
    if limit <= 0:
        raise BackboneError(f"cannot tell the text length limit of {config.model_type} model")
    return limit


class HFBackbone(Backbone):
    """One modality of a transformers dual encoder; features are its projected embeddings."""

    def __init__(self, model_id: str, modality: str) -> None:
        config, self.model, self.processor = _load(model_id, modality)
        self.device = resolve_device()  # CUDA when there is one (omnibind.device), else CPU
        self.model.to(self.device)
        kind = config.model_type
        self.ref, self.modality, self.kind, self.model_id = f"hf:{model_id}", modality, kind, model_id
        width = getattr(config, "projection_dim", None) or config.text_config.hidden_size
        self.outputs = {"embedding": int(width)}
        if modality == "text":
            self.max_tokens = _max_tokens(config, self.processor.tokenizer)
        if modality == "audio":
            fe = self.processor.feature_extractor
            self.sampling_rate = int(fe.sampling_rate)
            self.window_samples = int(fe.nb_max_samples)

    def segments(self, item: Input) -> Iterator[Any]:
        if self.modality == "audio":
            clip: AudioClip = item.payload
            emitted = False
            for window in clip.stream(self.sampling_rate, self.window_samples):
                if emitted and window.shape[0] < self.sampling_rate:
                    continue
                emitted = True
                yield window
        elif self.modality == "image":
            yield to_rgb(item.payload)
        else:
            yield item.payload

    def collate(self, segments: list[Any]) -> list[Any]:
        return list(segments)

    @torch.inference_mode()
    def features(self, batch: list[Any]) -> Features:
        if self.modality == "text":
            # SigLIP was trained on texts padded to the full length; CLIP and CLAP mask padding.
            padding = "max_length" if self.kind == "siglip" else True
            tok = self.processor.tokenizer(
                batch, padding=padding, truncation=True, max_length=self.max_tokens, return_tensors="pt"
            )
            out = self.model.get_text_features(**tok.to(self.device))
        elif self.modality == "image":
            pixels = self.processor.image_processor(batch, return_tensors="pt")["pixel_values"]
            out = self.model.get_image_features(pixel_values=pixels.to(self.device))
        else:
            feats = self.processor.feature_extractor(
                [np.asarray(w, dtype=np.float32) for w in batch], sampling_rate=self.sampling_rate, return_tensors="pt"
            )
            # No window is longer than the extractor's maximum, so none is "longer". The extractor
            # would otherwise mark a random window of the batch as longer (a training trick),
            # which makes fused CLAP models give batch-dependent, non-reproducible vectors.
            is_longer = torch.zeros((len(batch), 1), dtype=torch.bool, device=self.device)
            out = self.model.get_audio_features(input_features=feats["input_features"].to(self.device),
                                                is_longer=is_longer)
        return {"embedding": _pooled(out).float().cpu()}

    def preprocess_config(self) -> dict[str, Any]:
        """The processor's own saved configuration for this modality (what the hub model ships)."""
        part = {"text": "tokenizer", "image": "image_processor", "audio": "feature_extractor"}[self.modality]
        if self.modality == "text":
            return {"max_tokens": self.max_tokens, "padding": "max_length" if self.kind == "siglip" else "longest"}
        saved = getattr(self.processor, part).to_dict().items()
        return {k: v for k, v in saved if not k.startswith("_") and isinstance(v, (int, float, str, bool, list, dict))}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "weights": f"transformers {self.kind} {self.model_id}", "device": self.device}


@register("hf:")
def _factory(model_id: str, modality: str) -> Backbone:
    return HFBackbone(model_id, modality)
