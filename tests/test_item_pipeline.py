"""The item pipeline: one road for every item, files read once, and a new modality that is a row
in the modality table plus a backbone — nothing else."""

from __future__ import annotations

import builtins
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import draw_image, write_video, write_wav
from omnibind import modalities
from omnibind.backbones import Backbone, register, unregister
from omnibind.collection import Collection
from omnibind.heads import LinearHead
from omnibind.ingest import ingest
from omnibind.inputs import Input, load_file
from omnibind.pipeline import BatchResult, embed_batch
from omnibind.search import search
from omnibind.space import Space
from omnibind.tower import Tower, fuse

# -- files are read once ---------------------------------------------------------------------------


def _folder(root: Path) -> Path:
    root.mkdir()
    draw_image("circle", 80, "red").save(root / "red.png")
    draw_image("square", 80, "blue").save(root / "blue.jpg")
    write_wav(root / "tone.wav", seconds=2.5)
    write_video(root / "clip.mp4", seconds=1.0, with_audio=True)
    (root / "note.txt").write_text("A quiet note about rain on a tin roof.", "utf-8")
    return root


def test_a_local_ingest_opens_each_file_once(space, tmp_path: Path, monkeypatch):
    folder = _folder(tmp_path / "media")
    opened: list[str] = []
    real_os_open, real_open = os.open, builtins.open

    def count(path: Any) -> None:
        if isinstance(path, (str, os.PathLike)) and str(path).startswith(str(folder)):
            opened.append(str(path))

    def os_open(path: Any, *args: Any, **kwargs: Any) -> int:
        count(path)
        return real_os_open(path, *args, **kwargs)

    def py_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        count(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", py_open)
    monkeypatch.setattr(io, "open", py_open)
    report = ingest(Collection.open(tmp_path / "c", space=space), folder)
    assert report.added == 5 and not report.failed
    assert sorted(opened) == sorted(str(p) for p in folder.iterdir())  # each file once, no more


def test_both_engines_share_the_batch_step_and_its_wire_format(space, tmp_path: Path):
    """The Ray engine ships `embed_batch`'s result as Arrow: the round trip loses nothing."""
    folder = _folder(tmp_path / "media")
    (folder / "empty.png").write_bytes(b"")
    sources = sorted(str(p) for p in folder.iterdir())
    known = {str(folder / "note.txt"): "0" * 64, str(folder / "empty.png"): "1" * 64}
    first = embed_batch(space, sources, known)
    assert {r["id"] for r in first.rows} == set(sources) - {str(folder / "empty.png")}
    assert first.stale == [str(folder / "empty.png")] and first.failed[0][1].startswith("empty file")
    back = BatchResult.from_arrow(first.to_arrow(space.dim), known)
    assert back.failed == first.failed and back.stale == first.stale and back.unchanged == first.unchanged
    for a, b in zip(first.rows, back.rows):
        assert {k: v for k, v in a.items() if k != "vector"} == {k: v for k, v in b.items() if k != "vector"}
        np.testing.assert_array_equal(a["vector"], b["vector"])
    digests = {r["id"]: r["sha256"] for r in first.rows}
    assert sorted(embed_batch(space, sources[:3], digests).unchanged) == sorted(s for s in sources[:3] if s in digests)


# -- one fusion ------------------------------------------------------------------------------------


def test_fuse_normalises_each_segment_before_averaging():
    segments = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    out = fuse(segments, [0, 0, 1], 3).numpy()
    np.testing.assert_allclose(out[0], [2**-0.5, 2**-0.5], atol=1e-6)  # not [0.95, 0.32]: each segment counts once
    np.testing.assert_allclose(out[1], [0.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(out[2], [0.0, 0.0])  # no segment: a zero row, never NaN
    weighted = fuse(segments[:2], [0, 0], 1, weights=[0.75, 0.25]).numpy()[0]
    np.testing.assert_allclose(weighted, np.array([0.75, 0.25]) / np.hypot(0.75, 0.25), atol=1e-6)


def test_video_is_its_weighted_fusion_of_frames_and_soundtrack(space, tmp_path: Path):
    """By NumPy, not by `fuse`: unit(0.75 * unit(mean of unit frame vectors) + 0.25 * soundtrack)."""
    video = load_file(write_video(tmp_path / "v.mp4", seconds=1.0, with_audio=True), space.limits)
    assert (space.video.frames, space.video.image_weight, space.video.audio_weight) == (8, 0.75, 0.25)
    frames = [Input("image", f, "frame") for f in video.payload.frames(8)]
    frame_vecs = space.embed(frames).astype(np.float64)
    picture = frame_vecs.mean(0) / np.linalg.norm(frame_vecs.mean(0))
    sound = space.embed([Input("audio", video.payload.audio(), "track")])[0].astype(np.float64)
    expected = 0.75 * picture + 0.25 * sound
    np.testing.assert_allclose(space.embed(video)[0], expected / np.linalg.norm(expected), atol=1e-5)
    swapped = 0.25 * picture + 0.75 * sound
    assert np.abs(expected / np.linalg.norm(expected) - swapped / np.linalg.norm(swapped)).max() > 1e-2


# -- a new modality: a row and a backbone ----------------------------------------------------------


def _is_depth_png(head: bytes, data: Any, source: str) -> bool:
    """16-bit greyscale PNG: IHDR bit depth 16, colour type 0."""
    return head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and head[24] == 16 and head[25] == 0


def _decode_depth(data: Any, source: str, limits: Any) -> np.ndarray:
    with Image.open(io.BytesIO(bytes(data))) as image:
        return np.asarray(image, dtype=np.float32) / 65535.0


class DepthBackbone(Backbone):
    """A tiny depth "encoder": the mean depth of a 4x4 grid of cells."""

    ref, modality, outputs = "toy-depth", "depth", {"embedding": 16}

    def segments(self, item: Input) -> Iterator[np.ndarray]:
        depth = item.payload
        h, w = depth.shape
        yield np.array([depth[i * h // 4 : (i + 1) * h // 4, j * w // 4 : (j + 1) * w // 4].mean()
                        for i in range(4) for j in range(4)], dtype=np.float32)

    def features(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": batch.float() - 0.5}


def _depth_png(path: Path, corner: int) -> Path:
    depth = np.full((32, 32), 20_000, np.uint16)
    rows, cols = divmod(corner, 2)
    depth[rows * 16 : rows * 16 + 16, cols * 16 : cols * 16 + 16] = 60_000
    Image.fromarray(depth).save(path)  # mode I;16: a 16-bit greyscale PNG
    return path


@pytest.fixture
def depth_space(space):
    """The toy modality: one row in the table, one registered backbone. Nothing else is touched."""
    modalities.register(modalities.Modality(
        "depth", (), ("a depth map of a {}.",), sniff=_is_depth_png, decode=_decode_depth,
        thumbnail=lambda depth: Image.fromarray((depth * 255).astype(np.uint8)),
    ))
    register("toy-depth", "depth")(lambda arg, modality: DepthBackbone())
    torch.manual_seed(0)
    head = LinearHead("embedding", 16, space.dim)
    yield Space({"text": space.towers["text"], "depth": Tower("depth", "toy-depth", head.eval())}, name="depth-test")
    modalities.unregister("depth")
    unregister("toy-depth")


def test_a_toy_modality_embeds_ingests_and_searches(depth_space: Space, tmp_path: Path):
    folder = tmp_path / "scans"
    folder.mkdir()
    maps = [_depth_png(folder / f"scan{c}.png", c) for c in range(4)]
    draw_image("circle", 32, "red").save(folder / "photo.png")  # an 8-bit PNG is still an image
    (folder / "note.txt").write_text("depth scans of the hallway", "utf-8")
    assert load_file(maps[0]).modality == "depth" and load_file(folder / "photo.png").modality == "image"
    vectors = depth_space.embed(maps)
    assert vectors.shape == (4, depth_space.dim) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    coll = Collection.open(tmp_path / "c", space=depth_space)
    report = ingest(coll, folder)
    assert report.added == 5 and [p for p, _ in report.failed] == [str(folder / "photo.png")]  # no image tower
    assert coll.stats()["modalities"] == {"depth": 4, "text": 1}
    hits = search(coll, maps[2], k=4, modality="depth")
    assert hits[0].id == str(maps[2]) and hits[0].cosine == pytest.approx(1.0, abs=1e-5)
    assert {h.modality for h in search(coll, "the hallway", k=5)} == {"depth", "text"}
    assert coll.get([str(maps[0])], ["id", "thumbnail"])[0]["thumbnail"][:2] == b"\xff\xd8"  # the row's JPEG preview
