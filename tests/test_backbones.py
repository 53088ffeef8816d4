"""The three offline backbones: shapes, determinism, and the fast paths against their references."""

import numpy as np
import pytest
import torch

from conftest import draw_image, tone
from omnibind.backbones import load_backbone
from omnibind.backbones.aisfx import WINDOW_SAMPLES, LogMel
from omnibind.errors import BackboneError
from omnibind.inputs import to_input


def _features(backbone, objs):
    segs = [s for o in objs for s in backbone.segments(to_input(o))]
    return backbone.features(backbone.collate(segs))


def test_minilm_shape_and_determinism():
    b = load_backbone("minilm")
    f1 = _features(b, ["a dog barks", "rain on a roof"])["embedding"]
    f2 = _features(b, ["a dog barks", "rain on a roof"])["embedding"]
    assert f1.shape == (2, 384)
    assert torch.equal(f1, f2)
    assert torch.allclose(f1.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_efficientnet_shapes_determinism_and_onnx_matches_torch():
    b = load_backbone("efficientnet-lite0")
    images = [draw_image("circle"), draw_image("square", 300, "blue")]
    f1, f2 = _features(b, images), _features(b, images)
    assert f1["pooled"].shape == (2, 1280) and f1["logits"].shape == (2, 1000)
    assert torch.equal(f1["logits"], f2["logits"])
    batch = b.collate([s for im in images for s in b.segments(to_input(im))])
    ref = b.torch_features(batch)
    assert np.abs(f1["pooled"].numpy() - ref["pooled"].numpy()).max() <= 1e-4
    assert np.abs(f1["logits"].numpy() - ref["logits"].numpy()).max() <= 1e-4
    assert len(b.class_names()) == 1000 and b.class_names()[1] == ["goldfish", "Carassius auratus"]


def test_aisfx_windows_shapes_and_determinism():
    b = load_backbone("aisfx")
    clip = {"array": tone(5.0, 440.0, 22050), "sampling_rate": 22050}  # 5 s -> 2 full windows + 0.36 s tail (dropped)
    segs = list(b.segments(to_input(clip)))
    assert len(segs) == 2 and all(s.shape == (WINDOW_SAMPLES,) for s in segs)
    f1 = b.features(b.collate(segs))["embedding"]
    assert f1.shape == (2, 512)
    assert torch.equal(f1, b.features(b.collate(segs))["embedding"])
    short = list(b.segments(to_input({"array": tone(0.3), "sampling_rate": 22050})))
    assert len(short) == 1 and short[0].shape == (WINDOW_SAMPLES,)  # padded, never rejected


def test_logmel_matches_librosa_front_end():
    librosa = pytest.importorskip("librosa")
    y = np.random.default_rng(0).standard_normal(WINDOW_SAMPLES).astype(np.float32) * 0.3
    ref = librosa.feature.melspectrogram(y=y, sr=44100, n_mels=96, norm=1.0, htk=True, power=2.0,
                                         hop_length=1024, win_length=2048, fmin=0.0, fmax=22050.0)
    ref = np.log10(ref * 10000 + 1) / 9.457798957824707
    got = LogMel()(torch.from_numpy(y)[None])[0].numpy()
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 1e-5


def test_unknown_backbone_and_wrong_modality():
    with pytest.raises(BackboneError, match="unknown backbone"):
        load_backbone("resnet-9000")
    with pytest.raises(BackboneError, match="serves image"):
        load_backbone("efficientnet-lite0", "audio")


def test_aisfx_onnx_matches_torch_reference():
    b = load_backbone("aisfx")
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((4, WINDOW_SAMPLES)).astype(np.float32) * 0.2)
    assert b.runtime == "onnxruntime"
    assert (b.features(x)["embedding"] - b.torch_features(x)["embedding"]).abs().max() <= 1e-4


def test_onnx_falls_back_to_torch_when_export_disagrees(monkeypatch, tmp_path, caplog):
    from omnibind.backbones import onnx

    monkeypatch.setenv("OMNIBIND_CACHE", str(tmp_path))
    monkeypatch.setattr(onnx, "TOLERANCE", -1.0)  # any difference is too much
    net = torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()
    probe = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    assert onnx.try_onnx(net, "tiny", __file__, probe, ("y",)) is None
    assert "using PyTorch" in caplog.text
    with pytest.raises(BackboneError, match="differs from PyTorch"):
        onnx.try_onnx(net, "tiny", __file__, probe, ("y",), strict=True)
    monkeypatch.setattr(onnx, "TOLERANCE", 1e-4)
    runner = onnx.try_onnx(net, "tiny", __file__, probe, ("y",))
    assert runner is not None and np.allclose(runner(probe)[0], net(torch.from_numpy(probe)).detach().numpy(), atol=1e-5)
    monkeypatch.setenv("OMNIBIND_NO_ONNX", "1")
    assert onnx.try_onnx(net, "tiny", __file__, probe, ("y",)) is None
