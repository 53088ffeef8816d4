"""Fast text path: a sentence-transformers model (transformer + pooling + normalisation) as one
ONNX graph, int8 where the CPU makes int8 pay, each graph checked before it is used.

Why: sentence-transformers' `encode` runs eager fp32 PyTorch and sorts by characters, so a
third of its positions are padding on short sentences. Here the model's own fast tokenizer
counts tokens (batches sort by tokens and pad to their longest), ONNX Runtime runs the graph,
and on VNNI/AMX CPUs a per-channel int8 graph does the matrix products, with the products that
move the space most kept in fp32 (`SENSITIVE`, measured on training text only by
scripts/text_quant_sensitivity.py and shipped here as names, so no data is needed at run time).

Every graph is checked when loaded: fp32 against the PyTorch model (`FP32_TOLERANCE`), int8
against fp32 (cosine mean and min, `INT8_MEAN` / `INT8_MIN`). A failed int8 check falls back to
fp32 and a failed export or fp32 check to sentence-transformers' `encode`, with a logged warning.
Exports live in `cache_dir()/onnx`, written atomically, keyed by weights, layers, precision,
recipe and the torch / ONNX Runtime versions.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnibind.backbones.onnx import cache_dir
from omnibind.errors import BackboneError

log = logging.getLogger(__name__)

RECIPE = "text-1"  # bump when the export or the quantisation recipe changes: new cache files
FP32_TOLERANCE = 1e-4  # max |ONNX fp32 - PyTorch| on the probe sentences
INT8_MEAN, INT8_MIN = 0.99, 0.97  # cosine of int8 to fp32 vectors on the probe sentences
MAX_ROWS = 32  # rows per graph call when a caller hands over a larger batch
POOLINGS = ("mean", "cls", "max")
# Weight products kept in fp32 in int8 graphs (regular expressions on node names): layer 0's
# value projection and FFN output projection. Measured on training text only (2,000 STS-B train
# sentences + 233 Tux Paint train captions, scripts/text_quant_sensitivity.py): all-int8 gives
# cosine to fp32 mean 0.9929 / min 0.9466; these two in fp32, mean 0.9943 / min 0.9801, for about
# 7 % of the products. Other models' graphs may match nothing: the load-time check still guards.
SENSITIVE: tuple[str, ...] = (r"layer\.0/attention/self/value/MatMul$", r"layer\.0/output/dense/MatMul$")
# Fixed probe sentences for the load-time checks: short, long, punctuation, digits, non-ASCII.
PROBE = (
    "A man is playing a guitar.",
    "dog",
    "Three children in red jackets are building a snowman in front of a wooden house while "
    "their parents watch from the porch and drink hot chocolate.",
    "The stock market fell 3.2% on Tuesday, its worst day since March.",
    "Café au lait, naïve résumé — Ünïcödé text; 東京 and emoji 🙂.",
    "a blue circle on a white page",
    "How do I reset my password if I no longer have access to the e-mail address on the account?",
    "sound of rain falling on a tin roof",
)


class UnsupportedModel(BackboneError):
    """A sentence-transformers module stack this exporter does not handle (ST encode is used)."""


class PooledEncoder(torch.nn.Module):
    """The transformer, its pooling and (optionally) L2 normalisation as one traceable module."""

    def __init__(self, transformer: torch.nn.Module, pooling: str, normalize: bool) -> None:
        super().__init__()
        self.transformer, self.pooling, self.normalize = transformer, pooling, normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls":
            vector = hidden[:, 0]
        elif self.pooling == "max":
            vector = (hidden - (1 - mask) * 1e9).max(dim=1).values
        else:
            vector = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(vector, dim=-1) if self.normalize else vector


def export_spec(model: Any) -> dict[str, Any]:
    """What the graph must compute for this ST model; UnsupportedModel if it cannot be exported."""
    modules = list(model)
    names = [type(m).__name__ for m in modules]
    if len(modules) not in (2, 3) or names[:2] != ["Transformer", "Pooling"] or names[2:] not in ([], ["Normalize"]):
        raise UnsupportedModel(f"module stack {names} (supported: Transformer, Pooling[, Normalize])")
    transformer, pooling = modules[0], modules[1]
    mode = pooling.pooling_mode
    if not isinstance(mode, str) or mode not in POOLINGS or not getattr(pooling, "include_prompt", True):
        raise UnsupportedModel(f"pooling {mode!r} (supported: {', '.join(POOLINGS)})")
    tokenizer = model.tokenizer
    if getattr(transformer, "auto_model", None) is None or not getattr(tokenizer, "is_fast", False):
        raise UnsupportedModel("needs a Hugging Face model with a fast tokenizer")
    config = transformer.auto_model.config
    return {"pooling": mode, "normalize": len(modules) == 3, "model_type": config.model_type,
            "layers": int(config.num_hidden_layers), "max_seq_length": int(model.max_seq_length)}


def weights_digest(module: torch.nn.Module) -> str:
    """Hash of every parameter and buffer (after any layer truncation): the graph's identity."""
    h = hashlib.blake2b(digest_size=12)
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def graph_path(digest: str, spec: dict[str, Any], precision: str) -> Path:
    """Cache file of a graph: weights, layers, pooling, precision, recipe and library versions."""
    import onnxruntime as ort

    extra = hashlib.sha256(repr((sorted(spec.items()), RECIPE, SENSITIVE)).encode()).hexdigest()[:8]
    torch_v = torch.__version__.split("+")[0]
    name = f"text-{digest}-{extra}-L{spec['layers']}-{precision}-torch{torch_v}-ort{ort.__version__}.onnx"
    return cache_dir() / "onnx" / name


def _atomic(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def export_fp32(model: Any, spec: dict[str, Any], path: Path) -> Path:
    """Trace transformer + pooling + normalisation into `path` (once; atomic)."""
    if path.exists():
        return path
    transformer = model[0].auto_model
    module = PooledEncoder(transformer, spec["pooling"], spec["normalize"]).eval()
    probe = model.tokenizer(list(PROBE[:3]), padding=True, return_tensors="pt")
    tmp = _atomic(path)
    axes = {"input_ids": {0: "n", 1: "t"}, "attention_mask": {0: "n", 1: "t"}, "embedding": {0: "n"}}
    previous = getattr(transformer.config, "_attn_implementation", None)
    try:
        _set_attention(transformer, "eager")  # eager attention traces to plain MatMuls that quantise
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about Python values in the masking code
            torch.onnx.export(module, (probe["input_ids"], probe["attention_mask"]), str(tmp),
                              input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                              dynamic_axes=axes, opset_version=17, dynamo=False)
        os.replace(tmp, path)  # a crash never leaves a half-written graph behind
    finally:
        _set_attention(transformer, previous)
        tmp.unlink(missing_ok=True)
    return path


def _set_attention(transformer: torch.nn.Module, kind: str | None) -> None:
    if kind is None:
        return
    if hasattr(transformer, "set_attn_implementation"):
        transformer.set_attn_implementation(kind)
    else:
        transformer.config._attn_implementation = kind


def sensitive_nodes(path: Path, patterns: Sequence[str] = SENSITIVE) -> list[str]:
    """Names of the graph's nodes that match any of `patterns` (regular expressions)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [n.name for n in graph.node if any(re.search(p, n.name) for p in patterns)]


def quantize_int8(src: Path, dst: Path, exclude: Sequence[str] | None = None) -> Path:
    """Dynamic int8 graph: per-channel int8 weights, uint8 activations, weight products only."""
    if dst.exists():
        return dst
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = _atomic(dst)
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(max(level, logging.ERROR))  # the quantiser logs advice on the root logger
        quantize_dynamic(src, tmp, per_channel=True, weight_type=QuantType.QInt8,
                         nodes_to_exclude=list(sensitive_nodes(src) if exclude is None else exclude),
                         extra_options={"DefaultTensorType": 1, "MatMulConstBOnly": True})
        os.replace(tmp, dst)
    finally:
        root.setLevel(level)
        tmp.unlink(missing_ok=True)
    return dst


class Tokenized(str):
    """A text that carries its token ids, so batches can sort by tokens before they are cut."""

    ids: list[int]

    def __new__(cls, text: str, ids: list[int]) -> Tokenized:
        obj = super().__new__(cls, text)
        obj.ids = ids
        return obj

    def __reduce__(self) -> tuple[Any, tuple[str, list[int]]]:
        return Tokenized, (str(self), self.ids)  # pickles (process pools, Ray) keep the ids


class TextGraph:
    """One ST model as an ONNX Runtime session: texts -> sentence vectors (float32 numpy)."""

    def __init__(self, model: Any, precision: str, providers: list[Any]) -> None:
        spec = export_spec(model)
        self.providers = providers
        self.tokenizer = _backend_tokenizer(model.tokenizer, spec["max_seq_length"])
        self.pad_id = int(model.tokenizer.pad_token_id or 0)
        digest = weights_digest(model[0].auto_model)
        fp32 = export_fp32(model, spec, graph_path(digest, spec, "fp32"))
        self.session, self.precision, self.path = self._session(fp32), "fp32", fp32
        reference = model.encode(list(PROBE), batch_size=len(PROBE), convert_to_numpy=True, show_progress_bar=False)
        diff = float(np.abs(self.embed(list(PROBE)) - reference).max())
        if diff > FP32_TOLERANCE:
            raise BackboneError(f"ONNX text graph differs from sentence-transformers by {diff:.2e} > {FP32_TOLERANCE}")
        self.check: dict[str, float] = {"fp32_max_abs_diff": diff}
        if precision == "int8":
            self._use_int8(graph_path(digest, spec, "int8"), reference)

    def _session(self, path: Path) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        options.inter_op_num_threads = 1
        return ort.InferenceSession(str(path), options, providers=self.providers)

    def _use_int8(self, path: Path, reference: np.ndarray) -> None:
        """Switch to the int8 graph if it keeps the space on the probe sentences; else stay fp32."""
        try:
            session = self._session(quantize_int8(self.path, path))
            got = _run(session, *pad_batch([self.tokenizer.encode(t).ids for t in PROBE], self.pad_id))
        except Exception as exc:  # noqa: BLE001 - any quantisation failure means fp32, not an error
            log.warning("int8 text graph unavailable (%s); using fp32", exc)
            return
        cos = _cosine(got, reference)
        self.check.update(int8_cos_mean=float(cos.mean()), int8_cos_min=float(cos.min()))
        if cos.mean() < INT8_MEAN or cos.min() < INT8_MIN:
            log.warning("int8 text graph drifts from fp32 (cosine mean %.4f, min %.4f); using fp32",
                        cos.mean(), cos.min())
            return
        self.session, self.precision, self.path = session, "int8", path

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids (special tokens added, truncated to the model's max_seq_length), unpadded."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Sentence vectors, input order; rows sorted by tokens and padded per chunk of MAX_ROWS."""
        missing = [j for j, t in enumerate(texts) if not isinstance(t, Tokenized)]
        ids: list[list[int]] = [t.ids if isinstance(t, Tokenized) else [] for t in texts]
        for j, found in zip(missing, self.tokenize([texts[j] for j in missing])):
            ids[j] = found
        order = sorted(range(len(ids)), key=lambda j: -len(ids[j]))
        out: np.ndarray | None = None
        for start in range(0, len(order), MAX_ROWS):
            rows = order[start : start + MAX_ROWS]
            vectors = _run(self.session, *pad_batch([ids[j] for j in rows], self.pad_id))
            if out is None:
                out = np.empty((len(ids), vectors.shape[1]), np.float32)
            out[rows] = vectors
        return out if out is not None else np.zeros((0, 0), np.float32)


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Input ids and attention mask, padded to the longest row."""
    width = max(len(row) for row in ids)
    input_ids = np.full((len(ids), width), pad_id, np.int64)
    mask = np.zeros((len(ids), width), np.int64)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return input_ids, mask


def _run(session: Any, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0].astype(np.float32, copy=False)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)
    b = b / np.linalg.norm(b, axis=1, keepdims=True).clip(1e-12)
    return (a * b).sum(1)


def _backend_tokenizer(tokenizer: Any, max_length: int) -> Any:
    """A private copy of the fast tokenizer's Rust backend: truncation on, padding off."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.enable_truncation(max_length)
    return backend
