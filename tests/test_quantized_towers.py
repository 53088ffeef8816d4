"""Int8 towers and overlapped segmenting: agreement with fp32, the precision switch, the cache
key, the fallback to fp32, and `feature_batches` with threads giving what it gives without."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from omnibind.backbones import onnx as ort_path
from omnibind.errors import InputError
from omnibind.tower import ahead, feature_batches


@pytest.fixture(scope="module")
def aisfx_pair() -> tuple[Any, Any]:
    from omnibind.backbones.aisfx import AisfxBackbone

    return AisfxBackbone(precision="int8"), AisfxBackbone(precision="fp32")


def _sounds(n: int = 4) -> torch.Tensor:
    """Windows unlike the probe: chirps and filtered noise, peak-normalised."""
    from omnibind.backbones.aisfx import SAMPLE_RATE, WINDOW_SAMPLES

    rng = np.random.default_rng(7)
    t = np.arange(WINDOW_SAMPLES) / SAMPLE_RATE
    waves = [np.sin(2 * np.pi * (200 + 900 * k) * t * (1 + t)) + 0.3 * np.convolve(
        rng.standard_normal(WINDOW_SAMPLES), np.ones(8) / 8, mode="same") for k in range(n)]
    return torch.from_numpy(np.stack([w / np.abs(w).max() for w in waves]).astype(np.float32))


def test_int8_audio_agrees_with_fp32(aisfx_pair: tuple[Any, Any]) -> None:
    q, f = aisfx_pair
    assert (q.precision, f.precision) == ("int8", "fp32")
    assert isinstance(q.onnx, ort_path.QuantizedRunner)
    batch = _sounds()
    mean, low = ort_path.agreement([f.features(batch)["embedding"].numpy()], [q.features(batch)["embedding"].numpy()])
    assert mean >= 0.99 and low >= 0.97


def test_int8_image_agrees_with_fp32() -> None:
    from omnibind.backbones.efficientnet import EfficientNetLite0, probe_images

    q, f = EfficientNetLite0(precision="int8"), EfficientNetLite0(precision="fp32")
    assert (q.precision, f.precision) == ("int8", "fp32")
    images = probe_images(n=8)[2:]  # drawings past the load-time probe's six
    got, ref = q.features(images), f.features(images)
    mean, low = ort_path.agreement([ref["pooled"].numpy(), ref["logits"].numpy()],
                                   [got["pooled"].numpy(), got["logits"].numpy()])
    # Drawings on smooth gradients are Lite0 int8's hard case (0.99 on real stamps, ~0.92 here, and
    # why its recipe is opt-in); a broken graph (ONNX Runtime's fusion bug with excluded depthwise
    # convolutions gave 0.17) falls far below.
    assert mean >= 0.85 and low >= 0.7


def test_precision_env_forces_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    from omnibind.backbones.aisfx import AisfxBackbone

    monkeypatch.setenv("OMNIBIND_PRECISION", "fp32")
    backbone = AisfxBackbone()
    assert backbone.precision == "fp32" and type(backbone.onnx) is ort_path.OnnxRunner
    monkeypatch.setenv("OMNIBIND_PRECISION", "int8")
    assert AisfxBackbone().precision == "int8"


def test_cache_key_differs_by_precision(aisfx_pair: tuple[Any, Any]) -> None:
    from omnibind.bind.cache import backbone_fingerprint

    q, f = aisfx_pair
    assert "precision" not in f.preprocess_config()  # fp32 keys are the keys of before int8 existed
    assert q.preprocess_config()["precision"] == "int8"
    assert backbone_fingerprint(q) != backbone_fingerprint(f)


def test_fallback_to_fp32_when_quantisation_fails(monkeypatch: pytest.MonkeyPatch, aisfx_pair: tuple[Any, Any],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    from omnibind.backbones.aisfx import probe_sounds

    fp32 = aisfx_pair[1].onnx
    probe = aisfx_pair[1].spectra(probe_sounds())

    def broken(*_: Any) -> None:
        raise RuntimeError("quantiser exploded")

    monkeypatch.setattr(ort_path, "quantized_graph", broken)
    with caplog.at_level(logging.WARNING):
        assert ort_path.try_int8(fp32, probe, forced=True) is fp32
    assert "quantiser exploded" in caplog.text
    monkeypatch.undo()
    monkeypatch.setattr(ort_path, "PROBE_COSINE_MEAN", 1.5)  # no graph can pass: the check must refuse it
    monkeypatch.setattr(ort_path, "PROBE_SLACK", -1.0)
    assert ort_path.try_int8(fp32, probe, forced=True) is fp32
    monkeypatch.setattr(ort_path, "quant_spec", lambda name: {"auto": False})
    assert ort_path.try_int8(fp32, probe) is fp32  # an opt-in recipe is not used under auto


def test_ranges_must_cover_the_graph(aisfx_pair: tuple[Any, Any]) -> None:
    import onnx

    spec = ort_path.quant_spec("aisfx")
    fp32_path = aisfx_pair[1].onnx.path
    needed = ort_path.needed_ranges(onnx.load(str(fp32_path)).graph, spec["exclude"])
    assert needed and needed <= set(spec["ranges"])
    partial = {k: v for k, v in spec["ranges"].items() if k != sorted(needed)[-1]}
    with pytest.raises(ort_path.QuantizationError, match="do not cover"):
        ort_path.quantized_graph(fp32_path, {**spec, "ranges": partial})


class _Fake:
    """A backbone whose segments are numbers: item i gives i % 3 + 1 segments; `bad` items fail
    after their first segment; features are the numbers themselves."""

    flush_batches, min_batch, prefetch = 1, 1, True

    def __init__(self, bad: set[int], crash: int | None = None) -> None:
        self.bad, self.crash = bad, crash

    def sort_key(self, segment: Any) -> None:
        return None

    def segments(self, i: int) -> Iterator[float]:
        for k in range(i % 3 + 1):
            if k == 1 and i in self.bad:
                raise InputError(f"item{i}", "corrupt")
            if i == self.crash:
                raise RuntimeError("bug")
            yield float(i * 10 + k)

    def collate(self, segments: list[Any]) -> torch.Tensor:
        return torch.tensor(segments)

    def features(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"x": batch.clone()}


def _run(backbone: _Fake, n: int, workers: int) -> tuple[list[float], list[int], dict, list[int]]:
    errors: dict[int, InputError] = {}
    ticks: list[int] = []
    values, owners = [], []
    for feats, who in feature_batches(backbone, n, backbone.segments, 4, errors, ticks.append, workers=workers):
        values += feats["x"].tolist()
        owners += who
    return values, owners, {i: e.reason for i, e in errors.items()}, ticks


def test_overlapped_batches_equal_sequential() -> None:
    backbone = _Fake(bad={4, 7})
    sequential = _run(backbone, 12, workers=0)
    assert sequential[2] == {4: "corrupt", 7: "corrupt"} and sum(sequential[3]) == 12
    for workers in (1, 3):
        assert _run(backbone, 12, workers=workers) == sequential


def test_overlapped_batches_raise_a_bug_in_order() -> None:
    with pytest.raises(RuntimeError, match="bug"):
        _run(_Fake(bad=set(), crash=5), 12, workers=2)
    assert not [t for t in threading.enumerate() if t.name.startswith("omnibind-segments")]  # workers gone


def test_prefetch_memory_is_bounded() -> None:
    made = []

    def endless(i: int) -> Iterator[int]:
        for k in range(10_000):
            made.append(k)
            yield k

    stream = ahead(3, endless, workers=2, lookahead=2, per_item=5)
    _, first = next(stream)
    assert [next(first) for _ in range(3)] == [0, 1, 2]
    threading.Event().wait(0.3)  # let the workers run as far as they may
    assert len(made) <= 2 * (5 + 1) + 3  # two inputs in flight, each at most a full queue (+1 in hand)
    stream.close()
