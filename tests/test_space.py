"""The Space API on the offline default: embed, order, errors, dims, save/load, video."""

import json

import numpy as np
import pytest

import omnibind
from conftest import draw_image, tone, write_video
from omnibind.errors import InputError, SpaceError
from omnibind.space import EmbedResult, Space


def test_default_space_has_all_towers(space):
    assert set(space.towers) == {"text", "image", "audio"}
    assert space.modalities == ["text", "image", "audio", "video", "document"]
    assert space.dim == 384


def test_mixed_batch_keeps_input_order(space, media):
    items = [media["video"], "a red circle", media["image"], media["audio"], "a sine tone", media["text"]]
    together = space.embed(items, batch_size=2)
    alone = np.stack([space.embed([x])[0] for x in items])
    assert together.shape == (6, 384) and together.dtype == np.float32
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert np.allclose(together, alone, atol=1e-5)


def test_text_file_embeds_like_its_text(space, media):
    a, b = space.embed([media["text"], "a red circle on a white page\n"])
    assert np.allclose(a, b, atol=1e-6)


def test_skip_reports_failures_without_shifting_rows(space, media, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    items = ["first", empty, media["image"], tmp_path / "missing.wav", "last"]
    result = space.embed(items, on_error="skip")
    assert isinstance(result, EmbedResult)
    assert result.indices == [0, 2, 4]
    assert [(e.index, e.source) for e in result.errors] == [(1, str(empty)), (3, str(tmp_path / "missing.wav"))]
    assert "empty file" in result.errors[0].reason and "not found" in result.errors[1].reason
    good = space.embed(["first", media["image"], "last"])
    assert np.allclose(result.vectors, good, atol=1e-5)


def test_raise_names_the_bad_input_and_its_position(space, tmp_path):
    bad = tmp_path / "noise.bin"
    bad.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(InputError) as info:
        space.embed(["fine", bad])
    assert info.value.index == 1 and info.value.source == str(bad) and "unsupported" in info.value.reason


def test_dim_truncates_and_renormalises(space):
    full = space.embed(["a cat", "a dog"])
    short = space.embed(["a cat", "a dog"], dim=64)
    assert short.shape == (2, 64)
    assert np.allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-5)
    assert np.allclose(short, full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True), atol=1e-6)
    with pytest.raises(ValueError):
        space.embed(["x"], dim=1000)


def test_similarity_is_cosine(space):
    v = space.embed(["a cat", "a kitten", "a tax form"])
    sims = space.similarity(["a cat"], ["a kitten", "a tax form"])
    assert np.allclose(sims, v[:1] @ v[1:].T, atol=1e-5)
    assert sims[0, 0] > sims[0, 1]
    assert np.allclose(space.similarity(v, v), v @ v.T)


def test_python_conventions(space):
    wave = {"array": tone(2.5), "sampling_rate": 22050}
    frames = [draw_image("circle"), draw_image("square")]
    out = space.embed([draw_image(), wave, frames])
    assert out.shape == (3, 384)
    single = space.embed("just one sentence")
    assert single.shape == (1, 384)


def test_video_with_and_without_audio(space, tmp_path):
    silent = write_video(tmp_path / "silent.mp4", with_audio=False)
    sound = write_video(tmp_path / "sound.mkv", with_audio=True)
    v = space.embed([silent, sound, silent])
    assert np.allclose(v[0], v[2])  # deterministic
    frames_only = space.embed([omnibind.to_input(sound).payload.frames(8)])[0]
    assert not np.allclose(v[1], frames_only, atol=1e-3)  # the soundtrack contributes
    # frames-only video equals the mean of its frame embeddings, renormalised
    frame_vecs = space.embed(omnibind.to_input(silent).payload.frames(8))
    mean = frame_vecs.mean(0)
    assert np.allclose(v[0], mean / np.linalg.norm(mean), atol=1e-5)


def test_long_audio_same_file_same_vector(space, tmp_path):
    import soundfile as sf

    path = tmp_path / "long.flac"
    sf.write(path, np.concatenate([tone(20, 440), tone(20, 880)]), 22050)
    a, b = space.embed([path, path])  # different batch neighbours: equal up to float rounding
    assert np.allclose(a, b, atol=1e-6)
    assert np.array_equal(space.embed([path])[0], space.embed([path])[0])  # same call, bit-identical


def test_save_load_round_trip(space, tmp_path):
    out = space.save(tmp_path / "copy")
    config = json.loads((out / "space.json").read_text())
    assert config["format_version"] == 1 and config["towers"]["image"]["backbone"] == "efficientnet-lite0"
    assert not any(p.suffix in (".pth", ".onnx") for p in out.iterdir())  # backbones referenced, not copied
    loaded = omnibind.load_space(out)
    items = ["a cat", draw_image(), {"array": tone(3.0), "sampling_rate": 22050}]
    assert np.allclose(space.embed(items), loaded.embed(items), atol=1e-6)
    space.save(out)  # overwriting an existing space works
    assert omnibind.load_space(out).name == space.name


def test_format_version_is_checked(space, tmp_path):
    out = space.save(tmp_path / "s")
    config = json.loads((out / "space.json").read_text())
    config["format_version"] = 99
    (out / "space.json").write_text(json.dumps(config))
    with pytest.raises(SpaceError, match="format version 99"):
        Space.load(out)
    with pytest.raises(SpaceError, match="no space"):
        omnibind.load_space(tmp_path / "nowhere")


def test_embed_in_any_input_order_mislabelled_file(space, tmp_path):
    fake = tmp_path / "actually_png.wav"
    draw_image().save(fake, format="PNG")
    with pytest.warns(omnibind.MislabelledInputWarning):
        v = space.embed([fake])
    assert np.allclose(v, space.embed([draw_image()]), atol=1e-6)


def test_space_without_audio_tower_rejects_audio(space):
    text_only = Space({"text": space.towers["text"]}, name="t")
    result = text_only.embed(["ok", {"array": tone(1.0), "sampling_rate": 22050}], on_error="skip")
    assert result.indices == [0] and "no audio tower" in result.errors[0].reason


def test_trained_default_and_bridge_are_both_loadable():
    default, bridge = omnibind.load_space(), omnibind.load_space("bridge")
    assert default.name == "default" and bridge.name == "bridge"
    assert default.towers["image"].head.kind == "residual" and bridge.towers["image"].head.kind == "conse"
    assert "train" in default.provenance["training"]
    texts = ["a dog barks", "a cat sleeps on a sofa", "stock markets fell sharply"]
    d, b = default.embed(texts), bridge.embed(texts)
    assert np.allclose(d @ d.T, b @ b.T, atol=1e-5)  # the default is a rotation of the anchor: cosines unchanged
    assert not np.allclose(d, b, atol=1e-3)
