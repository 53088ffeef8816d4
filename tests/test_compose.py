"""Text-bridged composition (omnibind/compose.py, omnibind/bind/connect.py, `omnibind compose`).

In the toy world of tests/tiny_compose.py a CLIP-like and a CLAP-like model relate to the anchor
by a KNOWN map plus a modality offset, so image <-> audio retrieval through the composed space is
checked against the known-map ceiling (retrieval with the true latents) and against chance, and a
wrong map must fail the same check. Real tiny `hf:` CLIP / CLAP checkpoints (tests/tiny_hub.py)
go through the CLI end to end: compose, info, embed, ingest, search image -> audio.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import tiny_compose as tc
from omnibind.bind.connect import ConnectError, fit_connection
from omnibind.cli import app
from omnibind.compose import ComposeError, compose, load_corpus, parse_towers
from omnibind.heads import IdentityHead
from omnibind.space import Space, load_space
from omnibind.tower import Tower

runner = CliRunner()
TOWERS = {"image": "toyjoint:clip", "audio": "toyjoint:clap"}
N_PAIRS = 40
MARGIN = 12.0  # points of R@1 the composed space may lose against the known-map ceiling
CHANCE_FACTOR = 10  # and it must beat chance (1 / N_PAIRS) this many times over


@pytest.fixture(scope="module", autouse=True)
def toys():
    tc.register_toys()
    yield
    tc.unregister_toys()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("compose")
    anchor = Space({"text": Tower("text", "toy-anchor", IdentityHead("embedding", tc.ANCHOR_DIM))}, name="toy")
    anchor.save(root / "anchor")
    images, sounds, captions, ceiling = tc.write_pairs(root / "pairs", N_PAIRS, seed=0)
    memory_images, memory_sounds, _, _ = tc.write_pairs(root / "memory", 40, seed=7)  # unpaired: other captions
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(tc.corpus(600)) + "\n", encoding="utf-8")
    return {"root": root, "anchor": anchor, "images": images, "sounds": sounds, "captions": captions,
            "ceiling": tc.recall_at_1(ceiling), "memory": {"image": memory_images, "audio": memory_sounds},
            "corpus": corpus}


def retrieval_ok(images: np.ndarray, sounds: np.ndarray, ceiling: float) -> tuple[bool, float]:
    """The acceptance check: image -> audio R@1 within MARGIN of the ceiling and far above chance."""
    r1 = tc.recall_at_1(images @ sounds.T)
    return r1 >= ceiling - MARGIN and r1 >= CHANCE_FACTOR * 100.0 / len(images), r1


def test_the_toy_ceiling_is_high_and_chance_is_low(world):
    assert world["ceiling"] >= 85.0  # the known map retrieves nearly everything
    assert CHANCE_FACTOR * 100.0 / N_PAIRS <= 25.0


def test_composed_space_retrieves_image_audio_near_the_known_map_ceiling(world):
    space = compose(world["anchor"], TOWERS, corpus=world["corpus"], media=world["memory"], noise=0.1)
    images, sounds = space.embed(world["images"]), space.embed(world["sounds"])
    ok, r1 = retrieval_ok(images, sounds, world["ceiling"])
    assert ok, f"image->audio R@1 {r1:.1f} vs ceiling {world['ceiling']:.1f}"
    ok, r1 = retrieval_ok(sounds, images, world["ceiling"])
    assert ok, f"audio->image R@1 {r1:.1f}"
    # Through text: each medium finds its own caption among all captions in the anchor space.
    captions = space.embed(world["captions"])
    assert tc.recall_at_1(images @ captions.T) >= 70.0 and tc.recall_at_1(sounds @ captions.T) >= 70.0


def test_a_wrong_map_fails_the_check(world):
    space = compose(world["anchor"], TOWERS, corpus=world["corpus"], media=world["memory"], noise=0.1)
    head = space.towers["image"].head
    with torch.no_grad():  # the map's outputs in a wrong order: a map that is not the known one
        first = head.proj
        perm = torch.randperm(first.weight.shape[0], generator=torch.Generator().manual_seed(0))
        first.weight.copy_(first.weight[perm])
        first.bias.copy_(first.bias[perm])
    ok, r1 = retrieval_ok(space.embed(world["images"]), space.embed(world["sounds"]), world["ceiling"])
    assert not ok and r1 < 20.0, r1


def test_gap_aware_map_beats_plain_regression_when_the_modalities_are_offset(world):
    scores = {}
    for method in ("ridge", "gap"):
        space = compose(world["anchor"], TOWERS, corpus=world["corpus"], method=method, media=world["memory"], noise=0.1)
        scores[method] = tc.recall_at_1(space.embed(world["images"]) @ space.embed(world["sounds"]).T)
    assert scores["gap"] >= scores["ridge"] + 30.0, scores
    assert scores["ridge"] < world["ceiling"] - MARGIN, scores  # plain regression does not survive the gap


def test_generated_probes_stand_in_for_missing_media(world):
    space = compose(world["anchor"], TOWERS, corpus=world["corpus"], noise=0.1)  # no media: generated probes
    r1 = tc.recall_at_1(space.embed(world["images"]) @ space.embed(world["sounds"]).T)
    assert r1 >= 50.0, r1
    assert "generated probes" in space.provenance["tower image"]


def test_the_map_head_computes_the_fitted_map_exactly(world):
    from omnibind.backbones import load_backbone
    from omnibind.compose import features

    texts = list(load_corpus(world["corpus"]).texts)
    src = features(load_backbone("toyjoint:clip", "text"), texts)
    anchor = world["anchor"].embed(texts)
    media = features(load_backbone("toyjoint:clip", "image"), world["memory"]["image"])
    connection = fit_connection(src, anchor, "gap", media=media, noise=0.1)
    head = connection.to_head()
    x = features(load_backbone("toyjoint:clip", "image"), world["images"])
    with torch.no_grad():
        got = torch.nn.functional.normalize(head({"embedding": torch.tensor(x, dtype=torch.float32)}), dim=-1).numpy()
    np.testing.assert_allclose(got, connection.apply(x), atol=1e-4)
    assert connection.quality["R@1"] >= 90.0 and connection.quality["cosine"] > 0.9


def test_saved_composed_space_round_trips_and_says_how_it_was_built(world, tmp_path):
    space = compose(world["anchor"], TOWERS, corpus=world["corpus"], media=world["memory"])
    again = load_space(space.save(tmp_path / "composed"))
    np.testing.assert_allclose(again.embed(world["images"][:5]), space.embed(world["images"][:5]), atol=1e-5)
    p = again.provenance
    assert p["built_by"] == "omnibind.compose" and p["tower text"].startswith("anchor: toy-anchor")
    assert "toyjoint:clip image half + gap map" in p["tower image"] and "40 media given" in p["tower image"]
    note = p["connections"]["audio"]
    assert note["corpus"]["texts"] == len(load_corpus(world["corpus"]).texts) and len(note["corpus"]["sha256"]) == 64
    assert note["fit"]["R@1"] > 50 and note["method"] == "gap" and note["date"]


def test_calibration_is_fitted_on_held_out_pairs(world, tmp_path):
    manifest = tmp_path / "pairs.jsonl"
    rows = [{"a": c, "b": str(f)} for c, f in zip(world["captions"], world["images"])]
    rows += [{"a": c, "b": str(f)} for c, f in zip(world["captions"], world["sounds"])]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    space = compose(world["anchor"], TOWERS, corpus=world["corpus"], media=world["memory"], pairs=manifest)
    assert {"text->image", "image->text", "text->audio", "audio->text"} <= set(space.calibration)
    assert all(fit[0] > 0 for fit in space.calibration.values())
    assert "held-out pairs pairs.jsonl" in space.provenance["calibration"]
    bare = compose(world["anchor"], TOWERS, corpus=world["corpus"], media=world["memory"])
    assert bare.calibration == {} and "uncalibrated" in bare.provenance["calibration"]


def test_errors_say_what_to_fix(world):
    anchor, corpus = world["anchor"], world["corpus"]
    with pytest.raises(ComposeError, match="unknown backbone"):
        compose(anchor, {"image": "nosuchfamily:x"}, corpus=corpus)
    with pytest.raises(ComposeError, match="no audio tower"):
        compose(anchor, {"audio": "toyjoint:clip"}, corpus=corpus)
    with pytest.raises(ComposeError, match="no usable text tower"):
        compose(anchor, {"image": "toyjoint:nosuchmodel"}, corpus=corpus)
    with pytest.raises(ComposeError, match="too few"):
        compose(anchor, TOWERS, corpus=tc.corpus(600)[:20])
    with pytest.raises(ComposeError, match="anchor's own"):
        compose(anchor, {"text": "toyjoint:clip"}, corpus=corpus)
    with pytest.raises(ComposeError, match="MODALITY=REF"):
        parse_towers(["image"])
    with pytest.raises(ComposeError, match="neither a file nor a named corpus"):
        load_corpus("no-such-corpus.txt")
    with pytest.raises(ConnectError, match="unknown method"):
        fit_connection(np.ones((60, 4)), np.ones((60, 3)), "magic")


# --------------------------------------------------------------------------------------------
# The CLI


def test_cli_compose_then_embed_ingest_and_search_image_to_audio(world, tmp_path):
    out, home = tmp_path / "composed", tmp_path / "home"
    media = [f"--media=image={world['root'] / 'memory'}", f"--media=audio={world['root'] / 'memory'}"]
    result = runner.invoke(app, ["compose", str(out), "--anchor", str(world["root"] / "anchor"), "-t", "image=toyjoint:clip",
                                 "-t", "audio=toyjoint:clap", "--corpus", str(world["corpus"]), "--noise", "0.1", *media])
    assert result.exit_code == 0, result.output
    assert "gap map" in result.output and "calibration" in result.output

    info = runner.invoke(app, ["info", "--space", str(out)])
    assert info.exit_code == 0, info.output
    assert "tower image" in info.output and "toyjoint:clip image half" in info.output

    npy = tmp_path / "v.npy"
    files = [str(p) for p in world["images"] + world["sounds"]]
    embedded = runner.invoke(app, ["embed", *files, "--space", str(out), "--out", str(npy)])
    assert embedded.exit_code == 0, embedded.output
    vectors = np.load(npy)
    ok, r1 = retrieval_ok(vectors[:N_PAIRS], vectors[N_PAIRS:], world["ceiling"])
    assert ok, f"R@1 {r1:.1f} vs ceiling {world['ceiling']:.1f}"

    sounds = world["root"] / "pairs"
    ingested = runner.invoke(app, ["ingest", str(sounds), "-c", "sounds", "--space", str(out), "--home", str(home),
                                   "-x", "*.png"])
    assert ingested.exit_code == 0, ingested.output
    found = 0
    for i in range(10):
        hits = runner.invoke(app, ["search", "--file", str(world["images"][i]), "-c", "sounds", "--modality", "audio",
                                   "--json", "--local", "-k", "3", "--home", str(home)])
        assert hits.exit_code == 0, hits.output
        found += Path(json.loads(hits.stdout)[0]["source"]).name == world["sounds"][i].name
    assert found >= 7, found


def test_cli_compose_errors_exit_with_a_message(world, tmp_path):
    result = runner.invoke(app, ["compose", str(tmp_path / "x"), "--anchor", str(world["root"] / "anchor"),
                                 "-t", "audio=toyjoint:clip", "--corpus", str(world["corpus"])])
    assert result.exit_code == 1 and "no audio tower" in result.output
    assert not (tmp_path / "x").exists()


def test_cli_composes_real_tiny_hub_checkpoints(tmp_path):
    """The loading path of real checkpoints: tiny sentence-transformers anchor, tiny CLIP and CLAP
    (random weights: no quality to assert, only that everything runs and is wired)."""
    pytest.importorskip("transformers")
    from tiny_hub import build_clap, build_clip, build_st

    st, clip, clap = build_st(tmp_path / "st"), build_clip(tmp_path / "clip"), build_clap(tmp_path / "clap")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(tc.corpus(80, seed=3)) + "\n", encoding="utf-8")
    out, home, folder = tmp_path / "composed", tmp_path / "home", tmp_path / "media"
    result = runner.invoke(app, ["compose", str(out), "--anchor", f"st:{st}", "-t", f"image=hf:{clip}",
                                 "-t", f"audio=hf:{clap}", "--corpus", str(corpus)])
    assert result.exit_code == 0, result.output
    space = load_space(out)
    assert {m: t.backbone_ref for m, t in space.towers.items()} == {"text": f"st:{st}", "image": f"hf:{clip}",
                                                                    "audio": f"hf:{clap}"}
    assert space.towers["image"].head.kind == "linear" and space.dim == 32
    images, sounds, _, _ = tc.write_pairs(folder, 4, seed=1)
    vectors = space.embed(images + sounds)
    assert vectors.shape == (8, 32) and np.isfinite(vectors).all()
    assert runner.invoke(app, ["ingest", str(folder), "-c", "hub", "--space", str(out), "--home", str(home),
                               "-x", "*.png"]).exit_code == 0
    hits = runner.invoke(app, ["search", "--file", str(images[0]), "-c", "hub", "--json", "--local", "--home", str(home)])
    assert hits.exit_code == 0, hits.output
    assert {h["modality"] for h in json.loads(hits.stdout)} == {"audio"} and len(json.loads(hits.stdout)) == 4
    # Anchored on CLIP itself: its image half needs no map (the same model as the anchor's text).
    shared = compose(f"hf:{clip}", {"image": f"hf:{clip}", "audio": f"hf:{clap}"}, corpus=corpus)
    assert shared.towers["image"].head.kind == "identity" and "no map" in shared.provenance["tower image"]


def test_features_keep_input_order_when_the_backbone_sorts_its_batches():
    """A text backbone that batches longest-first (as sentence-transformers does) must still give
    row i for text i: the map pairs it with the anchor's row i."""
    from omnibind.backbones.base import Backbone
    from omnibind.compose import features

    class LengthSorted(Backbone):
        ref, modality, outputs, flush_batches = "length-sorted", "text", {"embedding": 1}, 4

        def segments(self, item):
            yield item.payload

        def sort_key(self, segment):
            return -len(segment)

        def collate(self, segments):
            return list(segments)

        def features(self, batch):
            return {"embedding": torch.tensor([[float(len(t))] for t in batch])}

    texts = ["a", "abcd", "ab", "abcdef", "abc", "abcde"]
    got = features(LengthSorted(), texts, batch_size=2)
    assert got[:, 0].tolist() == [float(len(t)) for t in texts]
