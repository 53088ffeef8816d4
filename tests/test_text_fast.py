"""The fast text path (omnibind/backbones/text_onnx.py) on a tiny BERT sentence-transformers model:
the ONNX graph equals sentence-transformers' encode, int8 keeps the space, precision and layers
reach the graph and its cache key, and every failure falls back instead of failing."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import torch

from omnibind.backbones import sentence_transformers as st_mod
from omnibind.backbones import text_onnx
from omnibind.backbones.sentence_transformers import SentenceTransformerBackbone, fast_graph
from omnibind.inputs import Input
from tests.tiny_hub import build_st

TEXTS = ["a red circle", "the blue square on a white page", "dog", "cat and dogs", "a the red blue circle square",
         "red circles on the white page and a blue dog", "the cat", "white"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_st(tmp_path_factory.mktemp("st"))


@pytest.fixture(autouse=True)
def cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNIBIND_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    for name in ("OMNIBIND_PRECISION", "OMNIBIND_DEVICE", "OMNIBIND_NO_ONNX"):
        monkeypatch.delenv(name, raising=False)


def backbone(path: str, **kwargs) -> SentenceTransformerBackbone:
    return SentenceTransformerBackbone("st:tiny", path, "tiny", **kwargs)


def st_encode(b: SentenceTransformerBackbone, texts: list[str]) -> np.ndarray:
    return b.model.encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_fp32_graph_equals_st_encode(tiny: str) -> None:
    b = backbone(tiny, precision="fp32")
    assert (b.runtime, b.precision) == ("onnx", "fp32")
    got = b.features(TEXTS)["embedding"].numpy()
    assert np.abs(got - st_encode(b, TEXTS)).max() < 1e-4


def test_int8_graph_keeps_the_space(tiny: str) -> None:
    b = backbone(tiny, precision="int8")
    assert (b.runtime, b.precision) == ("onnx", "int8")
    assert "int8" in b.graph.path.name
    cos = cosine(b.features(TEXTS)["embedding"].numpy(), st_encode(b, TEXTS))
    assert cos.min() > 0.97 and cos.mean() > 0.99


def test_precision_flag_is_honoured(tiny: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("omnibind.device.fast_int8_cpu", lambda: True)
    assert backbone(tiny).precision == "fp32"  # auto on a VNNI CPU: text int8 is opt-in (batch-dependent)
    monkeypatch.setattr(st_mod, "INT8_BY_DEFAULT", True)
    assert backbone(tiny).precision == "int8"  # ... unless a recipe is accepted for auto
    monkeypatch.setattr(st_mod, "INT8_BY_DEFAULT", False)
    monkeypatch.setenv("OMNIBIND_PRECISION", "int8")
    assert backbone(tiny).precision == "int8"  # asked for by name
    monkeypatch.setenv("OMNIBIND_PRECISION", "fp32")
    b = backbone(tiny)
    assert b.precision == "fp32" and "fp32" in b.graph.path.name
    monkeypatch.setattr("omnibind.device.fast_int8_cpu", lambda: False)
    monkeypatch.delenv("OMNIBIND_PRECISION")
    monkeypatch.setattr(st_mod, "INT8_BY_DEFAULT", True)
    assert backbone(tiny).precision == "fp32"  # auto elsewhere



def test_int8_vectors_depend_on_the_batch_which_is_why_auto_keeps_fp32(tiny: str) -> None:
    """Dynamic int8 scales activations by the batch's range: the reason INT8_BY_DEFAULT is False.
    The fp32 graph gives a sentence the same vector alone and in any batch."""
    for precision, same in (("fp32", True), ("int8", False)):
        b = backbone(tiny, precision=precision)
        alone = b.features(TEXTS[:1])["embedding"].numpy()[0]
        batched = b.features(TEXTS)["embedding"].numpy()[0]
        assert (np.abs(alone - batched).max() < 1e-5) == same, precision


def test_layers_truncate_both_paths(tiny: str, monkeypatch: pytest.MonkeyPatch) -> None:
    full, one = backbone(tiny, precision="fp32"), backbone(tiny, precision="fp32", layers=1)
    assert len(one.model[0].auto_model.encoder.layer) == 1 and one.model[0].auto_model.config.num_hidden_layers == 1
    assert "-L1-" in one.graph.path.name and one.graph.path != full.graph.path
    graph = one.features(TEXTS)["embedding"].numpy()
    assert np.abs(graph - st_encode(one, TEXTS)).max() < 1e-4
    assert np.abs(graph - full.features(TEXTS)["embedding"].numpy()).max() > 1e-3  # truncation changes vectors
    monkeypatch.setenv("OMNIBIND_NO_ONNX", "1")
    torch_one = backbone(tiny, layers=1)
    assert torch_one.runtime == "torch"
    assert np.abs(torch_one.features(TEXTS)["embedding"].numpy() - graph).max() < 1e-4
    with pytest.raises(Exception, match="layers=3"):
        backbone(tiny, layers=3)


def test_cache_keys_differ_by_precision_runtime_and_layers(tiny: str, monkeypatch: pytest.MonkeyPatch) -> None:
    configs = [backbone(tiny, precision="fp32").preprocess_config(), backbone(tiny, precision="int8").preprocess_config(),
               backbone(tiny, precision="fp32", layers=1).preprocess_config()]
    monkeypatch.setenv("OMNIBIND_NO_ONNX", "1")
    configs.append(backbone(tiny).preprocess_config())
    assert len({repr(sorted(c.items())) for c in configs}) == 4
    assert configs[1]["precision"] == "int8" and configs[3]["runtime"] == "torch"


def test_export_failure_falls_back_to_st(tiny: str, monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(text_onnx, "export_fp32", broken)
    with caplog.at_level(logging.WARNING):
        b = backbone(tiny, precision="int8")
    assert b.runtime == "torch" and b.precision == "fp32" and "exporter exploded" in caplog.text
    assert np.abs(b.features(TEXTS)["embedding"].numpy() - st_encode(b, TEXTS)).max() < 1e-6


def test_failed_int8_check_falls_back_to_fp32(tiny: str, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(text_onnx, "INT8_MIN", 1.001)  # nothing passes
    with caplog.at_level(logging.WARNING):
        b = backbone(tiny, precision="int8")
    assert (b.runtime, b.precision) == ("onnx", "fp32") and "drifts" in caplog.text


def test_fp32_mismatch_falls_back_to_st(tiny: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text_onnx, "FP32_TOLERANCE", -1.0)
    assert backbone(tiny, precision="fp32").runtime == "torch"


def test_unsupported_stack_uses_st(tiny: str) -> None:
    from sentence_transformers.base.modules.dense import Dense

    b = backbone(tiny, precision="fp32")
    b.model.append(Dense(32, 8))
    assert fast_graph(b.model, "cpu", "fp32") is None


def test_sorted_padded_batches_equal_single_rows(tiny: str) -> None:
    b = backbone(tiny, precision="fp32")
    alone = np.concatenate([b.graph.embed([t]) for t in TEXTS])
    assert np.abs(b.graph.embed(TEXTS) - alone).max() < 1e-5
    segments = [s for t in TEXTS for s in b.segments(Input("text", t, "t"))]
    assert [s.ids for s in segments] == b.graph.tokenize(TEXTS) and segments == TEXTS
    order = sorted(range(len(TEXTS)), key=lambda j: b.sort_key(segments[j]))
    assert [len(segments[j].ids) for j in order] == sorted((len(s.ids) for s in segments), reverse=True)
    shuffled = b.features([segments[j] for j in order])["embedding"].numpy()
    assert np.abs(shuffled[np.argsort(order)] - alone).max() < 1e-5
    assert pickle.loads(pickle.dumps(segments[0])).ids == segments[0].ids
    many = TEXTS * 9  # more rows than one graph call takes
    assert np.abs(b.graph.embed(many) - np.tile(alone, (9, 1))).max() < 1e-5


def test_int8_batches_agree_with_single_rows(tiny: str) -> None:
    b = backbone(tiny, precision="int8")  # dynamic activation scales: close, not equal
    alone = np.concatenate([b.graph.embed([t]) for t in TEXTS])
    assert cosine(b.graph.embed(TEXTS), alone).min() > 0.99


def test_device_choice(tiny: str, monkeypatch: pytest.MonkeyPatch) -> None:
    b = backbone(tiny, precision="fp32")
    assert b.device == "cpu" and b.describe()["device"] == "cpu"
    monkeypatch.setattr(st_mod, "ort_providers", lambda device: ["CPUExecutionProvider"])
    assert fast_graph(b.model, "cuda", "int8") is None  # no CUDA provider: ST encode on the GPU
    seen: list[tuple[str, list]] = []
    monkeypatch.setattr(st_mod, "ort_providers", lambda device: [("CUDAExecutionProvider", {}), "CPUExecutionProvider"])
    monkeypatch.setattr(st_mod, "TextGraph", lambda model, precision, providers: seen.append((precision, providers)))
    fast_graph(b.model, "cuda", "int8")
    assert seen[0][0] == "fp32" and seen[0][1][0][0] == "CUDAExecutionProvider"  # int8 kernels are CPU kernels
    monkeypatch.setenv("OMNIBIND_NO_ONNX", "1")
    assert fast_graph(b.model, "cpu", "fp32") is None


def test_constructor_uses_resolved_device(tiny: str, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str | None] = []

    def resolve(device: str | None = None) -> str:
        asked.append(device)
        return "cpu"

    monkeypatch.setattr(st_mod, "resolve_device", resolve)
    b = backbone(tiny, device="auto", precision="fp32")
    assert asked[0] == "auto" and b.model.device == torch.device("cpu")
