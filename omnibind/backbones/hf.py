"""Hugging Face transformers towers by id or local folder: `hf:<id>` for CLIP (text, image),
SigLIP (text, image) and CLAP (text, audio). The modality picks which half of the joint model
a tower uses, so a CLIP space is `text: hf:<id>` + `image: hf:<id>` with identity heads.

Nothing here downloads at import time; loading an id that is not in the local Hugging Face cache
needs network access (set HF_HUB_OFFLINE=1 to make that fail fast).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from omnibind.backbones import Backbone, Features, register
from omnibind.errors import BackboneError
from omnibind.inputs import AudioClip, Input, to_rgb

_SUPPORTED = {"clip": ("text", "image"), "siglip": ("text", "image"), "clap": ("text", "audio")}


def _pooled(out: Any) -> torch.Tensor:
    """transformers < 5 returns a tensor from get_*_features, 5.x a ModelOutput."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class HFBackbone(Backbone):
    """One modality of a transformers dual encoder; features are its projected embeddings."""

    def __init__(self, model_id: str, modality: str) -> None:
        from transformers import AutoConfig, AutoModel, AutoProcessor

        try:
            config = AutoConfig.from_pretrained(model_id)
        except Exception as exc:
            raise BackboneError(f"cannot load Hugging Face config {model_id!r}: {exc}") from exc
        kind = config.model_type
        if kind not in _SUPPORTED:
            raise BackboneError(f"hf:{model_id} is a {kind!r} model; supported: {', '.join(_SUPPORTED)}")
        if modality not in _SUPPORTED[kind]:
            raise BackboneError(f"hf:{model_id} ({kind}) has no {modality} tower; it has {_SUPPORTED[kind]}")
        try:
            self.model = AutoModel.from_pretrained(model_id).eval()
            self.processor = AutoProcessor.from_pretrained(model_id)
        except Exception as exc:
            raise BackboneError(f"cannot load Hugging Face model {model_id!r}: {exc}") from exc
        self.ref, self.modality, self.kind, self.model_id = f"hf:{model_id}", modality, kind, model_id
        width = getattr(config, "projection_dim", None) or config.text_config.hidden_size
        self.outputs = {"embedding": int(width)}
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
            tok = self.processor.tokenizer(batch, padding=True, truncation=True, return_tensors="pt")
            if self.kind == "siglip":
                tok = self.processor.tokenizer(batch, padding="max_length", truncation=True, return_tensors="pt")
            out = self.model.get_text_features(**tok)
        elif self.modality == "image":
            pixels = self.processor.image_processor(batch, return_tensors="pt")["pixel_values"]
            out = self.model.get_image_features(pixel_values=pixels)
        else:
            feats = self.processor.feature_extractor(
                [np.asarray(w, dtype=np.float32) for w in batch], sampling_rate=self.sampling_rate, return_tensors="pt"
            )
            out = self.model.get_audio_features(input_features=feats["input_features"], is_longer=feats.get("is_longer"))
        return {"embedding": _pooled(out).float()}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "weights": f"transformers {self.kind} {self.model_id}"}


@register("hf:")
def _factory(model_id: str, modality: str) -> Backbone:
    return HFBackbone(model_id, modality)
