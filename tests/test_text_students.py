"""Layer students (omnibind/bind/layer_student.py, omnibind/backbones/minilm_layers.py) on a tiny
BERT sentence-transformers model built in a temp dir: distillation training, Matryoshka nesting,
the adapter file checks and the layer count; distilled students (kept layers fine-tuned, saved
with the adapter, loaded over the truncated model)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from omnibind.bind.layer_student import (LayerAdapter, apply_adapter, encode_student, file_sha256, finetune_layers,
                                         load_adapter, load_distilled, nested_distill_loss, pooled_layers,
                                         save_adapter, save_distilled, student_state, token_batches, train_adapter)
from omnibind.errors import BackboneError
from tests.tiny_hub import ST_DIM, build_st

WORDS = "a the red blue circle square on white page dog cat and".split()


@pytest.fixture(scope="module", autouse=True)
def _fp32_onnx_cache(tmp_path_factory: pytest.TempPathFactory):
    """ONNX exports into a temp cache; fp32 graphs (exact comparisons) unless a test asks for int8."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMNIBIND_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.setenv("OMNIBIND_PRECISION", "fp32")
        mp.delenv("OMNIBIND_NO_ONNX", raising=False)
        yield


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_st(tmp_path_factory.mktemp("st"))


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rng = random.Random(0)
    return sorted({" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 9))) for _ in range(400)})


@pytest.fixture(scope="module")
def layer_feats(tiny: str, texts: list[str]) -> dict[int, np.ndarray]:
    from sentence_transformers import SentenceTransformer

    return pooled_layers(SentenceTransformer(tiny, device="cpu"), texts, (1, 2), batch_size=64)


def _teacher(y: np.ndarray) -> np.ndarray:
    """A teacher far from the student (the tiny model's layers barely differ at random init): its
    last layer in seeded random orthogonal coordinates, so an adapter has something to learn."""
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(y.shape[1], y.shape[1])))
    return (y @ q).astype(np.float32)


def _cos(a: np.ndarray, b: np.ndarray, d: int | None = None) -> float:
    a, b = a[:, :d], b[:, :d]
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).mean())


def test_pooled_last_layer_is_the_models_own_vector(tiny: str, texts: list[str], layer_feats: dict) -> None:
    from sentence_transformers import SentenceTransformer

    own = SentenceTransformer(tiny, device="cpu").encode(texts[:50], convert_to_numpy=True, normalize_embeddings=True)
    assert np.abs(layer_feats[2][:50] - own).max() < 1e-4
    assert np.abs(layer_feats[1][:50] - own).max() > 1e-3  # layer 1 is something else


def test_training_brings_the_student_to_the_teacher(layer_feats: dict) -> None:
    x, y = layer_feats[1], _teacher(layer_feats[2])
    before = _cos(x, y)
    adapter = train_adapter(x, y, kind="linear", dims=(8, 16, 32), epochs=30, lr=1e-2, batch_size=32)
    after = _cos(apply_adapter(adapter, x), y)
    loss = lambda a: float(nested_distill_loss(torch.as_tensor(apply_adapter(a, x)), torch.as_tensor(y), (8, 16, 32)))
    assert loss(adapter) < 0.5 * loss(LayerAdapter(ST_DIM))  # an untrained adapter is the identity
    assert after > before + 0.3 and after > 0.9, (before, after)
    residual = train_adapter(x, y, kind="residual", hidden=32, dims=(32,), epochs=30, lr=1e-2, batch_size=32)
    assert _cos(apply_adapter(residual, x), y) > before + 0.1


def test_untrained_adapter_is_the_identity(layer_feats: dict) -> None:
    x = layer_feats[1]
    for kind in LayerAdapter.kinds:
        assert np.abs(apply_adapter(LayerAdapter(ST_DIM, kind), x) - x).max() < 1e-5


def test_matryoshka_prefixes_are_trained(layer_feats: dict) -> None:
    """The prefixes named in `dims` are what is trained: with (8, 32) both the 8-d prefix alone
    and the whole vector match the teacher's; with (8,) only the prefix does; and a loss on the
    first 8 dims never sees the rest."""
    x, y = layer_feats[1], _teacher(layer_feats[2])
    nested = apply_adapter(train_adapter(x, y, dims=(8, 32), epochs=30, lr=1e-2, batch_size=32), x)
    prefix_only = apply_adapter(train_adapter(x, y, dims=(8,), epochs=30, lr=1e-2, batch_size=32), x)
    assert _cos(nested, y, 8) > 0.97 and _cos(nested, y) > 0.97
    assert _cos(prefix_only, y, 8) > 0.97 and _cos(prefix_only, y) < 0.8
    pred = torch.as_tensor(x[:16]).requires_grad_(True)
    nested_distill_loss(pred, torch.as_tensor(y[:16]), dims=(8,)).backward()
    assert pred.grad[:, 8:].abs().max() == 0 and pred.grad[:, :8].abs().max() > 0


def test_rotation_sets_the_prefix_coordinates() -> None:
    torch.manual_seed(0)
    p, t = torch.randn(64, 16), torch.randn(64, 16)
    flip = torch.eye(16).flip(0)  # reverses the coordinates: the prefix becomes the last 4
    assert torch.isclose(nested_distill_loss(p, t, (4,), rotation=flip), nested_distill_loss(p.flip(1), t.flip(1), (4,)))


def _student(tiny: str, adapter: Path, layers: int = 1, sha: str | None = None):
    from omnibind.backbones.minilm_layers import LayerStudentBackbone

    return LayerStudentBackbone("tiny-l1", tiny, "test", layers, adapter, sha)


def test_backbone_runs_layers_then_adapter(tiny: str, texts: list[str], layer_feats: dict, tmp_path: Path) -> None:
    adapter = train_adapter(layer_feats[1], layer_feats[2], dims=(32,), epochs=2, batch_size=32)
    sha = save_adapter(adapter, tmp_path / "a.safetensors", {"layers": 1})
    bb = _student(tiny, tmp_path / "a.safetensors", 1, sha)
    assert len(bb.model[0].auto_model.encoder.layer) == 1
    got = bb.features(texts[:40])["embedding"].numpy()
    from sentence_transformers import SentenceTransformer

    same_batch = pooled_layers(SentenceTransformer(tiny, device="cpu"), texts[:40], (1, 2), batch_size=40)
    assert np.abs(got - apply_adapter(load_adapter(tmp_path / "a.safetensors"), same_batch[1])).max() < 1e-5
    assert np.abs(got - apply_adapter(adapter, same_batch[1])).max() < 1e-2  # stored as float16
    config = bb.preprocess_config()
    assert config["layers"] == 1 and config["adapter_sha256"] == sha == file_sha256(tmp_path / "a.safetensors")
    save_adapter(LayerAdapter(ST_DIM), tmp_path / "id.safetensors")
    both = _student(tiny, tmp_path / "id.safetensors", 2).features(texts[:40])["embedding"].numpy()
    assert np.abs(both - same_batch[2]).max() < 1e-5  # identity adapter on all layers = the model


def test_backbone_refuses_bad_adapters(tiny: str, tmp_path: Path) -> None:
    good = tmp_path / "good.safetensors"
    sha = save_adapter(LayerAdapter(ST_DIM), good)
    with pytest.raises(BackboneError, match="sha256"):
        _student(tiny, good, 1, "0" * 64)
    save_adapter(LayerAdapter(16), tmp_path / "narrow.safetensors")
    with pytest.raises(BackboneError, match="16-d"):
        _student(tiny, tmp_path / "narrow.safetensors", 1)
    with pytest.raises(BackboneError, match="not found"):
        _student(tiny, tmp_path / "missing.safetensors", 1)
    with pytest.raises(BackboneError, match="layers=3"):
        _student(tiny, good, 3, sha)
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(good))
    tensors["proj.weight"] = tensors["proj.weight"][:, :8].contiguous()
    save_file(tensors, str(tmp_path / "cut.safetensors"), metadata={"config": json.dumps(LayerAdapter(ST_DIM).config())})
    with pytest.raises(BackboneError, match="cannot load"):
        load_adapter(tmp_path / "cut.safetensors")


def test_shipped_students_match_their_manifest() -> None:
    from safetensors import safe_open

    from omnibind.backbones import minilm_layers

    shipped = minilm_layers.manifest()
    if not shipped:
        pytest.skip("no text students shipped")
    folder = Path(minilm_layers.__file__).parents[1] / "data" / "text_students"
    for name, entry in shipped.items():
        assert name in minilm_layers.STUDENTS
        assert name == f"minilm-l{entry['layers']}" + ("-distil" if entry.get("distilled") else "")
        assert file_sha256(folder / entry["file"]) == entry["sha256"]
        if entry.get("distilled"):  # the k fine-tuned layers (16 tensors each) + the adapter, float16
            with safe_open(str(folder / entry["file"]), "pt") as fh:
                keys, meta = list(fh.keys()), fh.metadata()
            assert int(meta["layers"]) == entry["layers"]
            assert {k.split(".")[2] for k in keys if k.startswith("encoder.layer.")} == {str(i) for i in range(entry["layers"])}
            assert (folder / entry["file"]).stat().st_size < 11_500_000
        else:
            assert load_adapter(folder / entry["file"], entry["sha256"], 384).dim == entry["dim"] == 384
            assert (folder / entry["file"]).stat().st_size < 1_000_000


def test_unshipped_student_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from omnibind.backbones import minilm_layers

    monkeypatch.setattr(minilm_layers, "manifest", lambda: {})
    with pytest.raises(BackboneError, match="not shipped"):
        minilm_layers.load_student("minilm-l2")


# -- distilled students -------------------------------------------------------------------------


def _ids(tiny: str, texts: list[str]) -> list[list[int]]:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(tiny, device="cpu").tokenizer(texts)["input_ids"]


def _cut(tiny: str, layers: int = 1):
    from sentence_transformers import SentenceTransformer

    from omnibind.backbones.sentence_transformers import truncate_layers

    model = SentenceTransformer(tiny, device="cpu")
    truncate_layers(model, layers)
    return model


def test_token_batches_cover_rows_once_with_little_padding() -> None:
    lengths = np.random.default_rng(1).integers(2, 60, 1000)
    batches = token_batches(lengths, 32, np.random.default_rng(0))
    rows = np.concatenate(batches)
    assert len(rows) == len(set(rows.tolist())) == 992 and all(len(b) == 32 for b in batches)
    assert max(np.ptp(lengths[b]) for b in batches) <= 4  # similar lengths together
    again = token_batches(lengths, 32, np.random.default_rng(0))
    assert all((a == b).all() for a, b in zip(batches, again))  # seeded


def test_student_vectors_are_the_truncated_model_then_adapter(tiny: str, texts: list[str], layer_feats: dict) -> None:
    got = encode_student(_cut(tiny), LayerAdapter(ST_DIM, "residual", 16), _ids(tiny, texts[:50]), batch_size=16)
    assert np.abs(got - layer_feats[1][:50]).max() < 1e-5


def test_finetuning_the_layers_beats_the_adapter_alone(tiny: str, texts: list[str], layer_feats: dict) -> None:
    """Fine-tuning the kept layer (+ adapter) brings a 1-layer student nearer to the teacher than an
    adapter trained alone, and leaves the embeddings as shipped."""
    y, ids = _teacher(layer_feats[2]), _ids(tiny, texts)
    adapter = train_adapter(layer_feats[1], y, kind="residual", hidden=32, dims=(32,), epochs=30, lr=1e-2, batch_size=32)
    alone = _cos(apply_adapter(adapter, layer_feats[1]), y)
    model = _cut(tiny)
    embeddings = {k: v.clone() for k, v in model[0].auto_model.embeddings.state_dict().items()}
    seen = []
    finetune_layers(model, adapter, ids, y, dims=(32,), epochs=10, lr=3e-3, adapter_lr=3e-3, batch_size=32,
                    temperature=None, on_epoch=seen.append)
    tuned = _cos(encode_student(model, adapter, ids), y)
    assert seen == list(range(10)) and 1 - tuned < 0.6 * (1 - alone), (alone, tuned)
    assert all(torch.equal(v, model[0].auto_model.embeddings.state_dict()[k]) for k, v in embeddings.items())
    assert not any(p.requires_grad for p in model.parameters())


def _distilled_file(tiny: str, texts: list[str], layer_feats: dict, path: Path) -> tuple[str, np.ndarray]:
    """A 1-layer distilled student of the tiny model written to `path`: (sha256, its vectors for texts[:40])."""
    model, adapter = _cut(tiny), LayerAdapter(ST_DIM, "residual", 16)
    finetune_layers(model, adapter, _ids(tiny, texts), _teacher(layer_feats[2]), dims=(32,), epochs=2, lr=3e-3,
                    adapter_lr=3e-3, batch_size=32, temperature=None)
    sha = save_distilled(student_state(model, adapter), adapter.config(), 1, path, {"test": True})
    return sha, encode_student(model, adapter, _ids(tiny, texts[:40]))


def test_distilled_backbone_loads_its_layers(tiny: str, texts: list[str], layer_feats: dict, tmp_path: Path) -> None:
    from omnibind.backbones.minilm_layers import LayerStudentBackbone

    path = tmp_path / "d.safetensors"
    sha, expected = _distilled_file(tiny, texts, layer_feats, path)
    bb = LayerStudentBackbone("tiny-l1-distil", tiny, "test", 1, path, sha, distilled=True)
    got = bb.features(texts[:40])["embedding"].numpy()
    assert np.abs(got - expected).max() < 5e-3  # float16 storage
    assert np.abs(got - layer_feats[1][:40]).max() > 1e-2  # not the packaged layer
    assert bb.preprocess_config()["adapter_sha256"] == sha and bb.describe()["distilled"] is True
    again = LayerStudentBackbone("tiny-l1-distil", tiny, "test", 1, path, sha, distilled=True)
    assert np.abs(again.features(texts[:40])["embedding"].numpy() - got).max() < 1e-6


def test_distilled_onnx_graph_is_built_from_the_loaded_layers(tiny: str, texts: list[str], layer_feats: dict,
                                                              tmp_path: Path) -> None:
    """The ONNX graph (fp32 and int8) runs the fine-tuned layers, not the packaged ones it was cut from."""
    from omnibind.backbones.minilm_layers import LayerStudentBackbone

    path = tmp_path / "d.safetensors"
    sha, expected = _distilled_file(tiny, texts, layer_feats, path)
    for precision, tolerance in (("fp32", 5e-3), ("int8", 2e-2)):
        bb = LayerStudentBackbone("t", tiny, "test", 1, path, sha, distilled=True, precision=precision)
        assert bb.runtime == "onnx" and bb.precision == precision, bb.describe()
        got = bb.features(texts[:40])["embedding"].numpy()
        assert np.abs(got - expected).max() < tolerance and np.abs(got - layer_feats[1][:40]).max() > 0.1
        assert bb.preprocess_config()["precision"] == precision


def test_distilled_backbone_refuses_bad_files(tiny: str, texts: list[str], layer_feats: dict, tmp_path: Path) -> None:
    from omnibind.backbones.minilm_layers import LayerStudentBackbone

    path = tmp_path / "d.safetensors"
    sha, _ = _distilled_file(tiny, texts, layer_feats, path)
    with pytest.raises(BackboneError, match="sha256"):
        LayerStudentBackbone("x", tiny, "test", 1, path, "0" * 64, distilled=True)
    with pytest.raises(BackboneError, match="has 1 layers"):
        LayerStudentBackbone("x", tiny, "test", 2, path, sha, distilled=True)
    with pytest.raises(BackboneError, match="not found"):
        LayerStudentBackbone("x", tiny, "test", 1, tmp_path / "missing.safetensors", distilled=True)
    adapter_only = tmp_path / "a.safetensors"
    save_adapter(LayerAdapter(ST_DIM), adapter_only)
    with pytest.raises(BackboneError, match="cannot load"):
        load_distilled(_cut(tiny), adapter_only)
