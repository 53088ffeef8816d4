"""Exact values, computed by hand or with plain NumPy written here, never with the code under test.

Each test is built so that one realistic bug changes its answer (scripts/mutations.py plants them
and checks that a test here fails): fusion without per-segment normalisation, video weights
swapped, ConSE ignoring its temperature, the distillation KL the wrong way round, "unchanged"
decided by size instead of content, prune and confine by string prefix.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from reference_inputs import AISFX_RATE, AISFX_WINDOW, lossless_video_bytes, two_window_sound


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# -- fusion ----------------------------------------------------------------------------------------


def test_fuse_is_the_normalised_sum_of_unit_segments():
    from omnibind.tower import fuse

    segments = np.array([[4.0, 0.0, 3.0],     # norm 5
                         [0.0, 0.2, 0.0],     # norm 0.2: counts as much as the first once normalised
                         [1.0, 1.0, 1.0],     # owner 1
                         [-2.0, 0.0, 0.0]])   # owner 1, norm 2
    owners = [0, 0, 1, 1]
    expected = np.stack([unit(unit(segments[0]) + unit(segments[1])), unit(unit(segments[2]) + unit(segments[3]))])
    # (0.8, 1, 0.6)/|.| = (0.566, 0.707, 0.424); averaging unnormalised would give (0.8, 0.03, 0.6)
    np.testing.assert_allclose(expected[0], np.array([0.8, 1.0, 0.6]) / math.sqrt(2.0), atol=1e-12)
    np.testing.assert_allclose(fuse(segments, owners, 2).numpy(), expected, atol=1e-6)
    unnormalised = unit(segments[0] + segments[1])
    assert np.abs(expected[0] - unnormalised).max() > 0.5  # the test can tell the two apart

    weights = [0.7, 0.3, 0.9, 0.1]
    expected_w = np.stack([unit(0.7 * unit(segments[0]) + 0.3 * unit(segments[1])),
                           unit(0.9 * unit(segments[2]) + 0.1 * unit(segments[3]))])
    np.testing.assert_allclose(fuse(segments, owners, 2, weights).numpy(), expected_w, atol=1e-6)


class ListBackbone:
    """A stand-in backbone: an input's payload is its list of segment feature vectors."""

    ref, modality, outputs, flush_batches = "list", "audio", {"embedding": 3}, 1

    def sort_key(self, segment: Any) -> None:
        return None

    def segments(self, item: Any) -> Iterator[np.ndarray]:
        yield from item.payload

    def collate(self, segments: list[np.ndarray]) -> torch.Tensor:
        return torch.as_tensor(np.stack(segments), dtype=torch.float32)

    def features(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": batch}


def test_tower_embed_fuses_windows_of_different_content_and_norm():
    """Tower.embed = per-window head output, normalised, summed per input, normalised; batch
    boundaries (batch_size=2 splits the first input's windows) change nothing. (Tower.project
    normalises before fuse does, so this path survives a fuse that forgets to: see
    test_evaluation_path_fuses_windows_like_space_embed for the path that does not.)"""
    from omnibind.heads import LinearHead
    from omnibind.inputs import Input
    from omnibind.tower import Tower

    head = LinearHead("embedding", 3, 3)
    w = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.5]])
    with torch.no_grad():
        head.proj.weight.copy_(torch.tensor(w))
        head.proj.bias.zero_()
    tower = Tower("audio", "list", head, _backbone=ListBackbone())  # type: ignore[arg-type]
    windows = [np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0]), np.array([0.0, 3.0, 3.0])]
    other = [np.array([0.0, 1.0, 0.0])]
    got, errors = tower.embed([Input("audio", windows, "a"), Input("audio", other, "b")], batch_size=2)
    outs = [w @ x for x in windows]  # (2,0,0), (0,0,0.5), (0,3,1.5): norms 2, 0.5, 3.35
    expected = unit(sum(unit(o) for o in outs))
    assert not errors
    np.testing.assert_allclose(got[0], expected, atol=1e-6)
    np.testing.assert_allclose(got[1], [0.0, 1.0, 0.0], atol=1e-6)
    assert np.abs(expected - unit(sum(outs))).max() > 0.2


def test_two_window_sound_is_the_mean_of_its_windows_embedded_alone(space):
    """The audio tower's windows are fixed (102,400 samples at 44.1 kHz), so the two-window sound's
    vector is the normalised mean of the vectors of its two halves embedded alone."""
    wave = two_window_sound()
    halves = [{"array": wave[:AISFX_WINDOW], "sampling_rate": AISFX_RATE},
              {"array": wave[AISFX_WINDOW:], "sampling_rate": AISFX_RATE}]
    whole, first, second = space.embed([{"array": wave, "sampling_rate": AISFX_RATE}, *halves])
    np.testing.assert_allclose(whole, unit(unit(first) + unit(second)), atol=1e-5)

    # the test can tell: the head's raw outputs for the two windows differ in norm, so skipping the
    # per-window normalisation (it happens in Tower.project and again in fuse) would land elsewhere
    import omnibind

    tower = space.towers["audio"]
    segments = [s for half in halves for s in tower.backbone.segments(omnibind.to_input(half))]
    with torch.no_grad():
        raw = tower.head(tower.backbone.features(tower.backbone.collate(segments))).double().numpy()
    norms = np.linalg.norm(raw, axis=1)
    assert max(norms) / min(norms) > 1.2, norms
    assert np.abs(unit(raw[0] + raw[1]) - unit(unit(raw[0]) + unit(raw[1]))).max() > 1e-3


def test_evaluation_path_fuses_windows_like_space_embed(space, tmp_path: Path):
    """`omnibind eval` projects cached backbone features (bind.cache.project_items: head, then fuse with no
    earlier normalisation): the two-window sound must come out as space.embed's vector, the
    normalised mean of its windows' unit vectors, or eval measures something else than embed."""
    from omnibind.evaluate.suite import CachedEmbedder

    wave = two_window_sound()
    halves = [{"array": wave[:AISFX_WINDOW], "sampling_rate": AISFX_RATE},
              {"array": wave[AISFX_WINDOW:], "sampling_rate": AISFX_RATE}]
    first, second = space.embed(halves)
    cached = CachedEmbedder(space, tmp_path / "cache")([{"array": wave, "sampling_rate": AISFX_RATE}], "audio")[0]
    np.testing.assert_allclose(cached, unit(unit(first) + unit(second)), atol=1e-5)


def _video_parts(space, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(normalised mean of the unit frame vectors, the soundtrack's vector), each embedded alone."""
    import omnibind

    clip = omnibind.to_input(data).payload
    frames = space.embed(clip.frames(space.video.frames))
    sound = space.embed([omnibind.Input("audio", clip.audio(), "track")])[0]
    return unit(unit(frames).mean(0)), sound.astype(np.float64)


def test_video_is_weighted_fusion_of_frames_and_soundtrack_by_hand(space):
    from omnibind.space import Space
    from omnibind.video import VideoFusion

    data = lossless_video_bytes()
    picture, sound = _video_parts(space, data)
    assert float(picture @ sound) < 0.9  # distinct enough for the weights to matter
    wi, wa = space.video.image_weight, space.video.audio_weight
    assert (wi, wa) == (0.75, 0.25)  # the shipped default (space.json)
    got = space.embed(data)[0]
    np.testing.assert_allclose(got, unit(wi * picture + wa * sound), atol=1e-5)
    assert np.abs(got - unit(wa * picture + wi * sound)).max() > 1e-2  # swapped weights: far off

    skewed = Space(space.towers, name="skewed", video=VideoFusion(frames=8, image_weight=0.2, audio_weight=0.8))
    other = skewed.embed(data)[0]
    np.testing.assert_allclose(other, unit(0.2 * picture + 0.8 * sound), atol=1e-5)
    assert np.abs(other - got).max() > 1e-2


# -- ConSE -----------------------------------------------------------------------------------------


def _conse_numpy(scores: np.ndarray, classes: np.ndarray, k: int, temperature: float) -> np.ndarray:
    """softmax(top-k scores / T) weighting the unit class embeddings (renormalising the kept
    probabilities is the same as a softmax over the kept scores)."""
    out = []
    for row in scores:
        top = np.argsort(-row)[:k]
        out.append(softmax(row[top] / temperature) @ unit(classes)[top])
    return np.stack(out)


def test_conse_logits_top_k_with_temperature():
    from omnibind.heads import ConSEHead

    classes = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0], [3.0, 0.0, 4.0]])
    logits = np.array([[2.0, 1.0, 0.5, -1.0, 0.0], [0.0, 0.3, 0.1, 2.5, 2.4]])
    for k, t in [(2, 0.5), (3, 0.25), (3, 2.0)]:
        head = ConSEHead.from_classes("logits", torch.tensor(classes), top_k=k, temperature=t)
        got = head({"logits": torch.tensor(logits, dtype=torch.float32)}).double().numpy()
        np.testing.assert_allclose(got, _conse_numpy(logits, classes, k, t), atol=1e-6, err_msg=f"k={k} T={t}")
        assert np.abs(got - _conse_numpy(logits, classes, k, 1.0)).max() > 0.05  # T matters here
    # by hand, k=2, T=0.5, first row: weights softmax([4, 2]) = (0.8808, 0.1192) on e1 and e2
    head = ConSEHead.from_classes("logits", torch.tensor(classes), top_k=2, temperature=0.5)
    p = 1 / (1 + math.exp(-2.0))
    np.testing.assert_allclose(head({"logits": torch.tensor(logits[:1], dtype=torch.float32)})[0].numpy(),
                               [p, 1 - p, 0.0], atol=1e-6)


def test_conse_exemplar_mode_with_temperature():
    from omnibind.heads import ConSEHead

    prototypes = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.2]])
    captions = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    x = np.array([[3.0, 1.0], [0.2, 2.0], [-1.0, 0.5]])
    head = ConSEHead.from_classes("embedding", torch.tensor(captions), top_k=3, temperature=0.1,
                                  prototypes=torch.tensor(prototypes))
    got = head({"embedding": torch.tensor(x, dtype=torch.float32)}).double().numpy()
    cosines = unit(x) @ unit(prototypes).T
    np.testing.assert_allclose(got, _conse_numpy(cosines, captions, 3, 0.1), atol=1e-6)
    assert np.abs(got - _conse_numpy(cosines, captions, 3, 1.0)).max() > 0.1


def test_shipped_audio_head_uses_its_temperature(space):
    """The default's audio bridge (exemplar ConSE, T=0.01, k=3) on real features, against NumPy."""
    import omnibind

    head = space.towers["audio"].head
    assert (head.kind, head.top_k, head.temperature) == ("conse", 3, 0.01)
    backbone = space.towers["audio"].backbone
    sound = omnibind.to_input({"array": two_window_sound(), "sampling_rate": AISFX_RATE})
    segment = next(iter(backbone.segments(sound)))
    feats = backbone.features(backbone.collate([segment]))
    with torch.no_grad():
        got = head(feats).double().numpy()
    x = feats["embedding"].double().numpy()
    protos, classes = head.prototypes.double().numpy(), head.class_embeddings.double().numpy()
    np.testing.assert_allclose(got, _conse_numpy(unit(x) @ unit(protos).T, classes, 3, 0.01), atol=1e-5)


# -- distillation ----------------------------------------------------------------------------------


def test_contrastive_distillation_by_hand():
    """KL(target || student), target from the teacher: teacher = e1, e2; student = e1, (e1+e2)/√2;
    T = 1. Row 1 matches (0). Row 2: q = softmax(0.707, 0.707) = (1/2, 1/2), p = softmax(0, 1) =
    (1/(1+e), e/(1+e)); KL(p||q) = Σ p ln(2p) = 0.110943, over 2 rows: 0.0554715. The other
    direction, KL(q||p) = Σ ½ ln(1/(2p)) = 0.120115 -> 0.0600575, must not come out."""
    from omnibind.bind.losses import Distillation

    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    student = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    p = np.array([1 / (1 + math.e), math.e / (1 + math.e)])
    forward, backward = float((p * np.log(2 * p)).sum() / 2), float((0.5 * np.log(0.5 / p)).sum() / 2)
    assert forward == pytest.approx(0.0554715, abs=1e-6) and backward == pytest.approx(0.0600575, abs=1e-6)
    got = Distillation("contrastive", temperature=1.0).compute(student, teacher).item()
    assert got == pytest.approx(forward, abs=1e-6)


def test_contrastive_distillation_matches_numpy_kl_target_to_student():
    from omnibind.bind.losses import Distillation

    rng = np.random.default_rng(7)
    s, t = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    temp = 0.3
    us, ut = unit(s), unit(t)
    q, p = softmax(us @ ut.T / temp), softmax(ut @ ut.T / temp)
    kl_pq = float((p * (np.log(p) - np.log(q))).sum() / len(s))
    kl_qp = float((q * (np.log(q) - np.log(p))).sum() / len(s))
    assert abs(kl_pq - kl_qp) > 0.05  # direction matters on this batch
    got = Distillation("contrastive", temperature=temp).compute(torch.tensor(s, dtype=torch.float32),
                                                                torch.tensor(t, dtype=torch.float32)).item()
    assert got == pytest.approx(kl_pq, rel=1e-4)


# -- ingest: content, not size; prune and confine by path, not string prefix ---------------------


@pytest.fixture
def collection(tmp_path: Path, space):
    from omnibind.collection import Collection

    return Collection.open(tmp_path / "coll", space=space)


def test_same_size_same_mtime_edit_is_updated(collection, space, tmp_path: Path):
    from omnibind.ingest import ingest

    folder = tmp_path / "notes"
    folder.mkdir()
    note, wav = folder / "note.txt", folder / "tone.wav"
    before_text, after_text = "The cat sleeps on the warm mat.", "Stock prices fell on Monday!!!!"
    assert len(before_text.encode()) == len(after_text.encode())
    note.write_text(before_text, "utf-8")
    import soundfile as sf

    t = np.arange(2 * 22050) / 22050
    sf.write(wav, 0.4 * np.sin(2 * np.pi * 440 * t), 22050, subtype="PCM_16")
    first = ingest(collection, folder)
    assert (first.added, first.failed) == (2, [])
    old = {r["id"]: r for r in collection.get([str(note), str(wav)])}
    stats = {p: p.stat() for p in (note, wav)}

    note.write_text(after_text, "utf-8")
    sf.write(wav, 0.4 * np.sign(np.sin(2 * np.pi * 97 * t)), 22050, subtype="PCM_16")  # a square wave, same length
    for p, st in stats.items():
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert p.stat().st_size == st.st_size and p.stat().st_mtime_ns == st.st_mtime_ns
    second = ingest(collection, folder)
    assert (second.added, second.updated, second.unchanged) == (0, 2, 0), second.summary()
    new = {r["id"]: r for r in collection.get([str(note), str(wav)])}
    np.testing.assert_allclose(new[str(note)]["vector"], space.embed(after_text)[0], atol=1e-5)
    for key in new:
        assert new[key]["sha256"] != old[key]["sha256"]
        assert float(np.dot(new[key]["vector"], old[key]["vector"])) < 0.99


def test_prune_leaves_a_sibling_folder_with_the_same_prefix_alone(collection, tmp_path: Path):
    from omnibind.ingest import ingest

    for name in ("media", "media2", "media-old"):
        (tmp_path / name).mkdir()
        for note in ("a", "b"):
            (tmp_path / name / f"{note}.txt").write_text(f"note {note} in {name}", "utf-8")
        assert ingest(collection, tmp_path / name).added == 2
    (tmp_path / "media" / "a.txt").unlink()
    report = ingest(collection, tmp_path / "media", prune=True)
    assert report.removed == 1
    assert set(collection.manifest()) == {str(tmp_path / n / f) for n, f in
                                          [("media", "b.txt"), ("media2", "a.txt"), ("media2", "b.txt"),
                                           ("media-old", "a.txt"), ("media-old", "b.txt")]}
    # a trailing slash on the root means the same folder
    (tmp_path / "media2" / "b.txt").unlink()
    assert ingest(collection, str(tmp_path / "media2") + os.sep, prune=True).removed == 1
    assert str(tmp_path / "media-old" / "b.txt") in collection.manifest()


def test_confine_is_by_path_not_by_string_prefix(tmp_path: Path):
    from omnibind.server.settings import confine

    with pytest.raises(PermissionError):
        confine("/x/inbox2/a", [Path("/x/inbox")])
    inbox, sibling = tmp_path / "inbox", tmp_path / "inbox2"
    for d in (inbox, sibling):
        d.mkdir()
        (d / "a.txt").write_text("hi")
    roots = [inbox.resolve()]
    assert confine(str(inbox / "a.txt"), roots) == (inbox / "a.txt").resolve()
    assert confine(str(inbox), roots) == inbox.resolve()
    for path in (sibling / "a.txt", sibling, inbox / ".." / "inbox2" / "a.txt", tmp_path / "inboxa.txt"):
        with pytest.raises(PermissionError):
            confine(str(path), roots)
