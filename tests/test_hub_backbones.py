"""The real loading code of hub backbones (`st:<path>`, `hf:<path>`), on tiny models built here.

Every model is created in a temp folder from a config, with random weights and a tokenizer
written by hand (a WordPiece vocab.txt, byte-level BPE vocab.json + merges.txt), saved with the
libraries' own `save` / `save_pretrained`, and loaded back through omnibind's registry exactly as
a downloaded model would be. Nothing touches the network (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("sentence_transformers")

from omnibind.backbones import load_backbone  # noqa: E402
from omnibind.errors import BackboneError  # noqa: E402
from omnibind.heads import IdentityHead  # noqa: E402
from omnibind.inputs import to_input  # noqa: E402
from omnibind.space import Space  # noqa: E402
from omnibind.tower import Tower  # noqa: E402
from tiny_hub import CLAP_RATE, PROJ, ST_DIM, build_clap, build_clip, build_st  # noqa: E402


TEXTS = ["a red circle on a white page", "the blue dog", "a cat", "circles and squares on the page"]


# --------------------------------------------------------------------------------------------
# Tiny models (tests/tiny_hub.py; built once per module)


@pytest.fixture(scope="module")
def st_path(tmp_path_factory) -> str:
    return build_st(tmp_path_factory.mktemp("st"))


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> str:
    return build_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def clap_path(tmp_path_factory) -> str:
    return build_clap(tmp_path_factory.mktemp("clap"), fused=False)


@pytest.fixture(scope="module")
def fused_clap_path(tmp_path_factory) -> str:
    return build_clap(tmp_path_factory.mktemp("clap_fused"), fused=True)


# --------------------------------------------------------------------------------------------
# Helpers


def _features(backbone, items: list) -> np.ndarray:
    """Backbone features of raw items (strings, PIL images, audio dicts), one row per segment."""
    segments = [s for item in items for s in backbone.segments(to_input(item))]
    return backbone.features(backbone.collate(segments))["embedding"].numpy()


def _picture(color: str, kind: str = "circle", size: int = 48) -> Image.Image:
    image = Image.new("RGB", (size, size + 10), "white")  # not square: exercises resize + crop
    draw = ImageDraw.Draw(image)
    (draw.ellipse if kind == "circle" else draw.rectangle)((8, 8, size - 8, size - 8), fill=color)
    return image


def _sine(seconds: float, freq: float = 440.0, rate: int = CLAP_RATE) -> dict:
    t = np.arange(int(round(seconds * rate))) / rate
    return {"array": (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32), "sampling_rate": rate}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------------
# sentence-transformers: st:<path>


def test_st_backbone_loads_saved_model(st_path):
    backbone = load_backbone("st:" + st_path, "text")
    assert backbone.ref == "st:" + st_path and backbone.modality == "text"
    assert backbone.outputs == {"embedding": ST_DIM}
    assert backbone.describe()["max_seq_length"] == 48
    assert load_backbone("st:" + st_path, "text") is backbone  # loaded once per process

    first = _features(backbone, TEXTS)
    assert first.shape == (len(TEXTS), ST_DIM) and first.dtype == np.float32
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, _features(backbone, TEXTS))  # deterministic
    # A sentence's features do not depend on what else is in its batch (padding is masked).
    np.testing.assert_allclose(_features(backbone, [TEXTS[1]])[0], first[1], atol=1e-5)
    assert not np.allclose(first[0], first[1])


def test_st_space_embeds_and_round_trips(st_path, tmp_path):
    space = Space({"text": Tower("text", "st:" + st_path, IdentityHead("embedding", ST_DIM))}, name="tiny-st")
    vectors = space.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), ST_DIM)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, _unit(_features(space.towers["text"].backbone, TEXTS)), atol=1e-6)
    assert space.similarity(TEXTS[:1], TEXTS[:1])[0, 0] == pytest.approx(1.0, abs=1e-5)

    saved = space.save(tmp_path / "space")
    config = json.loads((saved / "space.json").read_text(encoding="utf-8"))
    assert config["towers"]["text"]["backbone"] == "st:" + st_path  # referenced, not copied
    assert not any(p.suffix in (".bin", ".pt") or p.name == "model.safetensors" for p in saved.rglob("*"))
    again = Space.load(saved)
    assert again.dim == ST_DIM
    np.testing.assert_allclose(again.embed(TEXTS), vectors, atol=1e-6)


def test_st_errors(tmp_path):
    with pytest.raises(BackboneError, match="cannot load sentence-transformers model"):
        load_backbone("st:" + str(tmp_path / "no-such-model"), "text")
    with pytest.raises(BackboneError, match="text backbone"):
        load_backbone("st:" + str(tmp_path), "image")


# --------------------------------------------------------------------------------------------
# CLIP: hf:<path>, text and image


def test_clip_text_and_image_backbones(clip_path):
    text = load_backbone("hf:" + clip_path, "text")
    image = load_backbone("hf:" + clip_path, "image")
    assert text.outputs == image.outputs == {"embedding": PROJ}
    assert text.kind == image.kind == "clip"
    assert text.model is image.model  # one copy of the checkpoint serves both towers

    words = _features(text, TEXTS)
    assert words.shape == (len(TEXTS), PROJ) and np.isfinite(words).all()
    np.testing.assert_array_equal(words, _features(text, TEXTS))
    np.testing.assert_allclose(_features(text, [TEXTS[2]])[0], words[2], atol=1e-5)

    pictures = [_picture("red"), _picture("blue", "square"), _picture("green").convert("RGBA")]
    seen = _features(image, pictures)
    assert seen.shape == (3, PROJ) and np.isfinite(seen).all()
    np.testing.assert_array_equal(seen, _features(image, pictures))
    np.testing.assert_allclose(_features(image, pictures[1:2])[0], seen[1], atol=1e-5)
    assert not np.allclose(seen[0], seen[1])


def test_clip_text_longer_than_the_position_table_is_truncated(clip_path):
    # The hand-made tokenizer declares no model_max_length (a huge sentinel); the text tower
    # has 24 positions. Long text must be cut to fit, not crash the position embeddings.
    text = load_backbone("hf:" + clip_path, "text")
    assert text.max_tokens == 24
    long = " ".join(["red circle on a white page"] * 40)
    out = _features(text, [long, "red"])
    assert out.shape == (2, PROJ) and np.isfinite(out).all()


def test_clip_space_text_and_image_share_one_space(clip_path, tmp_path):
    ref = "hf:" + clip_path
    space = Space(
        {
            "text": Tower("text", ref, IdentityHead("embedding", PROJ)),
            "image": Tower("image", ref, IdentityHead("embedding", PROJ)),
        },
        name="tiny-clip",
    )
    assert set(space.modalities) == {"text", "image", "video", "document"}
    picture = _picture("red")
    vectors = space.embed(["a red circle", picture, "a blue square"])
    assert vectors.shape == (3, PROJ)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(space.embed(picture), vectors[1:2], atol=1e-6)
    np.testing.assert_allclose(vectors[1], _unit(_features(space.towers["image"].backbone, [picture])[0]), atol=1e-6)
    sims = space.similarity(["a red circle"], [picture])
    assert sims.shape == (1, 1) and -1.0 - 1e-5 <= sims[0, 0] <= 1.0 + 1e-5

    again = Space.load(space.save(tmp_path / "clip-space"))
    assert {m: t.backbone_ref for m, t in again.towers.items()} == {"text": ref, "image": ref}
    np.testing.assert_allclose(again.embed(["a red circle", picture, "a blue square"]), vectors, atol=1e-6)


def test_clip_has_no_audio_tower(clip_path):
    with pytest.raises(BackboneError, match="no audio tower"):
        load_backbone("hf:" + clip_path, "audio")
    space = Space(
        {
            "text": Tower("text", "hf:" + clip_path, IdentityHead("embedding", PROJ)),
            "audio": Tower("audio", "hf:" + clip_path, IdentityHead("embedding", PROJ)),
        }
    )
    with pytest.raises(BackboneError, match="no audio tower"):
        space.embed(_sine(1.0))


def test_hf_rejects_unsupported_and_missing_models(st_path, tmp_path):
    # The sentence-transformers folder holds a BERT config.json: a real model, but no dual encoder.
    with pytest.raises(BackboneError, match="'bert' model"):
        load_backbone("hf:" + st_path, "text")
    with pytest.raises(BackboneError, match="cannot load Hugging Face config"):
        load_backbone("hf:" + str(tmp_path / "missing"), "text")
    with pytest.raises(BackboneError, match="several modalities"):
        load_backbone("hf:" + st_path)


# --------------------------------------------------------------------------------------------
# CLAP: hf:<path>, text and audio


def test_clap_text_and_audio_backbones(clap_path):
    text = load_backbone("hf:" + clap_path, "text")
    audio = load_backbone("hf:" + clap_path, "audio")
    assert text.outputs == audio.outputs == {"embedding": PROJ}
    assert text.model is audio.model
    assert audio.sampling_rate == CLAP_RATE and audio.window_samples == CLAP_RATE
    assert text.max_tokens == 24  # 26 RoBERTa positions, numbered from pad_token_id + 1 = 2

    words = _features(text, ["a tone", "a", " ".join(["a tone"] * 50)])
    assert words.shape == (3, PROJ) and np.isfinite(words).all()
    np.testing.assert_array_equal(words, _features(text, ["a tone", "a", " ".join(["a tone"] * 50)]))

    sounds = [_sine(0.6, 440.0), _sine(1.0, 880.0), _sine(0.8, 440.0, rate=22_050)]  # last one is resampled
    heard = _features(audio, sounds)
    assert heard.shape == (3, PROJ) and np.isfinite(heard).all()
    np.testing.assert_array_equal(heard, _features(audio, sounds))
    np.testing.assert_allclose(_features(audio, sounds[1:2])[0], heard[1], atol=1e-5)
    assert not np.allclose(heard[0], heard[1])


def test_clap_long_audio_is_cut_into_fixed_windows(clap_path, tmp_path):
    ref = "hf:" + clap_path
    space = Space(
        {
            "text": Tower("text", ref, IdentityHead("embedding", PROJ)),
            "audio": Tower("audio", ref, IdentityHead("embedding", PROJ)),
        }
    )
    backbone = space.towers["audio"].backbone
    long = _sine(3.5, 330.0)  # 1 s windows: three full ones; the 0.5 s tail (< 1 s) is dropped
    windows = list(backbone.segments(to_input(long)))
    assert [w.shape[0] for w in windows] == [CLAP_RATE] * 3
    assert len(list(backbone.segments(to_input(_sine(0.4))))) == 1  # short audio: one (padded) window
    assert len(list(backbone.segments(to_input(_sine(2.0))))) == 2

    vectors = space.embed([long, "a tone", long])
    assert vectors.shape == (3, PROJ)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)  # same audio, same vector
    # Windows are embedded one by one and fused in the shared space: mean of unit vectors.
    per_window = _unit(_features(backbone, [long]))
    assert per_window.shape == (3, PROJ)
    np.testing.assert_allclose(vectors[0], _unit(per_window.mean(axis=0)), atol=1e-5)
    # Deterministic whatever the batch size (windows of one input may span batches).
    np.testing.assert_allclose(space.embed([long], batch_size=2), vectors[:1], atol=1e-5)

    again = Space.load(space.save(tmp_path / "clap-space"))
    np.testing.assert_allclose(again.embed([long, "a tone"]), vectors[:2], atol=1e-6)


def test_fused_clap_is_batch_independent(fused_clap_path):
    # CLAP's feature extractor marks a random clip of a batch as "longer" when none is; on a
    # fused model that switches on feature fusion for that clip alone. omnibind's windows are
    # never longer than the extractor's maximum, so none may be marked.
    audio = load_backbone("hf:" + fused_clap_path, "audio")
    assert audio.model.config.audio_config.enable_fusion
    sounds = [_sine(1.0, f) for f in (220.0, 330.0, 440.0, 550.0)]
    together = _features(audio, sounds)
    assert together.shape == (4, PROJ) and np.isfinite(together).all()
    for i, sound in enumerate(sounds):
        np.testing.assert_allclose(_features(audio, [sound])[0], together[i], atol=1e-5)
