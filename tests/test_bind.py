"""Binder: pairs manifests, the on-disk feature cache, and head training against the text anchor.

The end-to-end task is generated: drawings of 8 colours x 3 shapes at several sizes and
positions, captioned "a {colour} {shape}". The shipped training-free ConSE bridge (ImageNet
classes; the "bridge" space, pinned by name whatever "default" becomes) is poor at it; a head
trained on the cached EfficientNet features should find it easy, so held-out recall must rise
clearly. Every image is its own group, so held-out images are unseen renderings.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from omnibind import modalities
from omnibind.bind import cache as cache_mod
from omnibind.bind import losses as L
from omnibind.bind import trainer as trainer_mod
from omnibind.bind.cache import FeatureCache, backbone_fingerprint, content_key
from omnibind.bind.pairs import (BadRow, ManifestError, Pair, manifest_sha256, manifest_sha256_of, pairs_from_folder,
                                 pairs_from_labels, read_manifest)
from omnibind.bind.trainer import BindConfig, BindError, _batches, _split, _weighted_epoch, bind, bind_manifest
from omnibind.errors import InputError
from omnibind.heads import ConSEHead, LinearHead, ResidualHead
from omnibind.space import Space

from conftest import draw_image

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "pink"]
SHAPES = ["circle", "square", "triangle"]
VARIANTS = 4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Heads are tiny: one intra-op thread is faster, and far faster on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def shape_image(shape: str, colour: str, variant: int) -> Image.Image:
    image = Image.new("RGB", (64, 64), "white")
    draw = ImageDraw.Draw(image)
    side = (22, 30, 38, 46)[variant % 4]
    x0, y0 = (3, 9, 15)[variant % 3], (15, 3, 9)[(variant + 1) % 3]
    box = (x0, y0, x0 + side, y0 + side)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(x0, y0 + side), (x0 + side, y0 + side), (x0 + side // 2, y0)], fill=colour)
    return image


@pytest.fixture(scope="module")
def space():
    """The training-free ConSE bridge space, pinned by name (the "default" space may be a trained one)."""
    import omnibind

    sp = omnibind.load_space("bridge")
    assert sp.towers["image"].head.kind == "conse"
    return sp


@pytest.fixture(scope="module")
def shape_pairs() -> list[Pair]:
    pairs = []
    for colour in COLOURS:
        for shape in SHAPES:
            for v in range(VARIANTS):
                pairs.append(Pair(f"a {colour} {shape}", shape_image(shape, colour, v), group=f"img-{len(pairs)}",
                                  line=len(pairs) + 1))
    return pairs


@pytest.fixture(scope="module")
def feature_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("features")


def _config(**kw) -> BindConfig:
    base = dict(head="linear", teacher=None, epochs=60, batch_size=32, val_fraction=0.25, seed=0)
    base.update(kw)
    return BindConfig(**base)


@pytest.fixture(scope="module")
def linear_result(space, shape_pairs, feature_root):
    return bind(space, shape_pairs, _config(), cache_root=feature_root, manifest_hash="f" * 64)


@pytest.fixture(scope="module")
def residual_result(space, shape_pairs, feature_root):
    return bind(space, shape_pairs, _config(head="residual", hidden=128), cache_root=feature_root)


def _held_out(pairs: list[Pair], config: BindConfig) -> list[Pair]:
    _, val = _split([p.group_key for p in pairs], config.val_fraction, config.seed)
    return [pairs[i] for i in val]


def _retrieval(sp: Space, pairs: list[Pair]) -> tuple[float, float]:
    """(caption->image R@1, image->caption R@1) in %, over the given pairs' captions and images."""
    captions = sorted({p.a for p in pairs})
    target = np.array([captions.index(p.a) for p in pairs])
    sims = sp.embed([p.b for p in pairs]) @ sp.embed(captions).T  # [images, captions]
    i2t = float(100 * np.mean(sims.argmax(1) == target))
    t2i = float(100 * np.mean([target[sims[:, c].argmax()] == c for c in range(len(captions))]))
    return t2i, i2t


# -- manifests ---------------------------------------------------------------------------------


@pytest.fixture
def manifest_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    (folder / "img").mkdir(parents=True)
    draw_image("circle", 32, "red").save(folder / "img" / "red.png")
    draw_image("square", 32, "blue").save(folder / "img" / "blue.png")
    return folder


def test_read_manifest_jsonl(manifest_dir: Path, monkeypatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)  # cells are relative to the manifest's folder, not the working directory
    absolute = manifest_dir / "img" / "blue.png"
    rows = [
        {"a": "a red circle", "b": "img/red.png", "weight": 2, "group": "g1"},  # line 1
        {"a": str(absolute), "b": "a blue square", "group": 7},  # line 2: absolute path, numeric group
        {"a": "", "b": "img/red.png"},  # line 3: empty cell
        {"a": "a dog"},  # line 4: missing column
        {"a": "a cat", "b": "img/cat.png"},  # line 5: media-looking file that does not exist
        {"a": "a red circle", "b": "img/red.png", "weight": "heavy"},  # line 6
        {"a": "a red circle", "b": "img/red.png", "weight": 0},  # line 7
        {"a": "a red circle", "b": "img/red.png", "weight": -1.5},  # line 8
    ]
    lines = [json.dumps(r) for r in rows]
    lines += ["{not json", "", '["a", "b"]', json.dumps({"a": "x", "b": "a notes.txt file"})]
    manifest = manifest_dir / "pairs.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")

    pairs, bad = read_manifest(manifest)

    assert [p.line for p in pairs] == [1, 2, 12]
    first, second, third = pairs
    assert first.a == "a red circle" and first.b == manifest_dir / "img" / "red.png" and isinstance(first.b, Path)
    assert (first.weight, first.group, first.group_key) == (2.0, "g1", "g1")
    assert second.a == absolute and second.b == "a blue square" and second.group == "7" and second.weight == 1.0
    assert third.a == "x" and third.b == "a notes.txt file" and third.group is None  # text, not a file
    assert third.group_key == f"x\u241fa notes.txt file"

    reasons = {b.line: b.reason for b in bad}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9, 11]  # line 10 is blank: not a row
    assert "'a'" in reasons[3] and "empty" in reasons[3]
    assert "'b'" in reasons[4] and "empty" in reasons[4]
    assert "img/cat.png" in reasons[5] and "not found" in reasons[5]
    assert "not a number" in reasons[6]
    assert "positive" in reasons[7] and "positive" in reasons[8]
    assert "not valid JSON" in reasons[9]
    assert "not a JSON object" in reasons[11]
    assert str(BadRow(9, "x")) == "line 9: x"


@pytest.mark.parametrize("suffix,delimiter", [(".csv", ","), (".tsv", "\t")])
def test_read_manifest_csv_tsv(manifest_dir: Path, suffix: str, delimiter: str):
    manifest = manifest_dir / f"pairs{suffix}"
    with open(manifest, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(["a", "b", "weight", "group"])  # line 1
        w.writerow(["img/red.png", "a red circle", "0.5", "reds"])  # line 2
        w.writerow(["img/blue.png", "a blue, square", "", ""])  # line 3: default weight, no group
        w.writerow(["img/green.png", "a green circle", "", ""])  # line 4: missing file
        w.writerow(["img/red.png", "", "", ""])  # line 5: empty cell
        w.writerow(["img/red.png"])  # line 6: missing value
        w.writerow(["img/red.png", "red", "nan", ""])  # line 7: not positive
        w.writerow(["img/red.png", "red", "1e", ""])  # line 8: not a number

    pairs, bad = read_manifest(manifest)

    assert [(p.line, p.a, p.b, p.weight, p.group) for p in pairs] == [
        (2, manifest_dir / "img" / "red.png", "a red circle", 0.5, "reds"),
        (3, manifest_dir / "img" / "blue.png", "a blue, square", 1.0, None),
    ]
    reasons = {b.line: b.reason for b in bad}
    assert sorted(reasons) == [4, 5, 6, 7, 8]
    assert "not found" in reasons[4]
    assert "empty" in reasons[5] and "empty" in reasons[6]
    assert "positive" in reasons[7]
    assert "not a number" in reasons[8]


def test_manifest_errors(tmp_path: Path):
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "missing.jsonl")
    no_header = tmp_path / "pairs.csv"
    no_header.write_text("image,caption\nx.png,a cat\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="columns a and b"):
        read_manifest(no_header)
    header_only = tmp_path / "empty.csv"
    header_only.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="no rows"):
        read_manifest(header_only)
    other = tmp_path / "pairs.xlsx"
    other.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="jsonl"):
        read_manifest(other)


@pytest.mark.parametrize("caption", ["a very long caption " * 20, "~ a tilde starts this caption"])
def test_read_manifest_odd_captions_are_text(tmp_path: Path, caption: str):
    manifest = tmp_path / "pairs.jsonl"
    manifest.write_text(json.dumps({"a": caption, "b": "another caption"}) + "\n", encoding="utf-8")
    pairs, bad = read_manifest(manifest)
    assert not bad and pairs[0].a == caption


def test_pairs_from_labels_round_robin_and_groups():
    items = [(f"item{i}", label) for i, label in enumerate(["dog", "cat", "dog", "bird", "cat"])]
    pairs = pairs_from_labels(items, "audio", templates=["{} sound", "a {} barks", "noise of {}"])
    assert [p.a for p in pairs] == ["dog sound", "a cat barks", "noise of dog", "bird sound", "a cat barks"]
    assert [p.b for p in pairs] == [x for x, _ in items]
    assert [p.group for p in pairs] == [f"item:{i}" for i in range(5)]
    by_label = pairs_from_labels(items, "image", group_by_item=False)
    assert [p.a for p in by_label] == [f"a photo of a {label}." for _, label in items]  # default template
    assert [p.group for p in by_label] == ["label:dog", "label:cat", "label:dog", "label:bird", "label:cat"]
    assert pairs_from_labels([("x", "y")], "text")[0].a == "y"  # the text row's first template is "{}"
    for modality in ("image", "audio", "video"):  # the modality table's first template is the caption
        assert pairs_from_labels([("x", "dog")], modality)[0].a == modalities.templates(modality)[0].format("dog")
    assert pairs_from_labels([("x", "dog")], "audio")[0].a == "the sound of a dog."
    with pytest.raises(ValueError, match="unknown modality"):
        pairs_from_labels([("x", "y")], "smell")


def test_pairs_from_folder(tmp_path: Path):
    for label, names in {"red_fox": ["b.png", "a.png"], "cat": ["c.png"]}.items():
        (tmp_path / label / "sub").mkdir(parents=True)
        for name in names:
            draw_image(size=16).save(tmp_path / label / name)
    (tmp_path / "loose.png").write_bytes(b"not in a label folder")
    pairs = pairs_from_folder(tmp_path, "image")
    assert [(p.a, p.b.relative_to(tmp_path).as_posix()) for p in pairs] == [
        ("a photo of a cat.", "cat/c.png"),
        ("a photo of a red fox.", "red_fox/a.png"),
        ("a photo of a red fox.", "red_fox/b.png"),
    ]
    with pytest.raises(ManifestError, match="no labelled"):
        pairs_from_folder(tmp_path / "cat" / "sub", "image")


def test_media_suffixes_come_from_the_modality_table(tmp_path: Path):
    manifest = tmp_path / "pairs.jsonl"
    manifest.write_text(json.dumps({"a": "a depth scan", "b": "scan.depthraw"}) + "\n"
                        + json.dumps({"a": "a cat", "b": "cat.ogg"}) + "\n", encoding="utf-8")
    pairs, bad = read_manifest(manifest)
    assert pairs[0].b == "scan.depthraw"  # no modality claims the suffix: it is text
    assert [(b.line, b.manifest) for b in bad] == [(2, str(manifest))] and "not found" in bad[0].reason  # .ogg: audio
    modalities.register(modalities.Modality("depthraw", (".depthraw",)))
    try:
        pairs, bad = read_manifest(manifest)
        assert not pairs and [b.line for b in bad] == [1, 2] and "not found" in bad[0].reason
    finally:
        modalities.unregister("depthraw")


def test_manifest_sha256_is_over_the_files_bytes_and_read_pairs_carry_it(tmp_path: Path):
    main, replay = tmp_path / "main.jsonl", tmp_path / "replay.csv"
    main.write_bytes(b'{"a": "x", "b": "y"}\r\n{"a": "u", "b": "v"}\r\n')
    replay.write_bytes(b"a,b\nw,z\n")
    assert manifest_sha256(main) == hashlib.sha256(main.read_bytes()).hexdigest()
    # what cli.py has recorded: the bytes of the manifest, then of the replay manifest
    assert manifest_sha256(main, replay) == hashlib.sha256(main.read_bytes() + replay.read_bytes()).hexdigest()
    pairs, _ = read_manifest(main)
    more, _ = read_manifest(replay)
    assert pairs.sha256 == manifest_sha256(main) and str(pairs.path) == str(main)
    assert manifest_sha256_of(pairs) == manifest_sha256_of(pairs, ()) == manifest_sha256(main)
    assert manifest_sha256_of(pairs, more) == manifest_sha256(main, replay)
    # pairs that are not a manifest as read have no file digest (bind then hashes their cells)
    assert manifest_sha256_of(list(pairs)) is None and manifest_sha256_of(pairs[:1]) is None
    assert manifest_sha256_of(pairs, [Pair("p", "q")]) is None
    pairs[0] = Pair("p", "q")
    assert manifest_sha256_of(pairs) is None
    (tmp_path / "latin1.csv").write_bytes("a,b\ncaf\xe9,x\n".encode("latin-1"))
    with pytest.raises(ManifestError, match="UTF-8"):
        read_manifest(tmp_path / "latin1.csv")


# -- feature cache -----------------------------------------------------------------------------


@pytest.fixture
def image_backbone(space):
    return space.towers["image"].backbone


@pytest.fixture
def pngs(tmp_path: Path) -> list[Path]:
    paths = []
    for i, (kind, colour) in enumerate([("circle", "red"), ("square", "blue"), ("circle", "green")]):
        path = tmp_path / f"img{i}.png"
        draw_image(kind, 48, colour).save(path)
        paths.append(path)
    return paths


def test_content_key():
    assert content_key("a cat") == content_key("a cat") != content_key("a dog")
    assert len(content_key("a cat")) == 64
    red, blue = draw_image(color="red"), draw_image(color="blue")
    assert content_key(red) == content_key(draw_image(color="red")) != content_key(blue)
    assert content_key(b"abc") != content_key("abc")  # file bytes are not text
    audio = {"array": np.zeros(100, np.float32), "sampling_rate": 16000}
    assert content_key(audio) == content_key(dict(audio)) != content_key({**audio, "sampling_rate": 22050})
    with pytest.raises(InputError):
        content_key(3.5)


def test_content_key_of_files_is_the_content(tmp_path: Path):
    a, b, c = tmp_path / "a.png", tmp_path / "sub-b.png", tmp_path / "c.png"
    draw_image(color="red").save(a)
    b.write_bytes(a.read_bytes())
    draw_image(color="blue").save(c)
    assert content_key(a) == content_key(b) == content_key(a.read_bytes())  # names do not matter
    assert content_key(a) != content_key(c)


def test_feature_cache_hits_misses_and_disk(image_backbone, pngs, tmp_path: Path):
    root = tmp_path / "cache"
    objs = [*pngs, draw_image("square", 40, "yellow")]
    first = FeatureCache(image_backbone, root)
    feats, errors = first.features(objs)
    assert not errors and (first.hits, first.misses) == (0, 4)
    assert all(set(f) == {"pooled", "logits"} and f["pooled"].shape == (1, 1280) and f["logits"].shape == (1, 1000)
               for f in feats)
    assert all(f["pooled"].dtype == np.float32 for f in feats)
    assert not np.allclose(feats[0]["pooled"], feats[1]["pooled"])

    again, _ = first.features(objs[:2])  # same instance: from its index
    assert (first.hits, first.misses) == (2, 4)

    second = FeatureCache(image_backbone, root)  # new instance over the same root: from disk
    ticks = []
    feats2, errors2 = second.features(objs, progress=ticks.append)
    assert not errors2 and (second.hits, second.misses) == (4, 0) and sum(ticks) == 4
    for f, g, h in zip(feats, feats2, again + feats2[2:]):
        for name in f:
            np.testing.assert_array_equal(f[name], g[name])
            np.testing.assert_array_equal(f[name], h[name])

    assert first.dir.parent.parent == root and first.dir.parent.name == "efficientnet-lite0"
    assert list(first.dir.glob("shard-*.npz")) and not list(root.rglob("*.tmp*"))  # atomic: no temp files


def test_feature_cache_changed_file_is_a_miss(image_backbone, pngs, tmp_path: Path):
    root = tmp_path / "cache"
    old, _ = FeatureCache(image_backbone, root).features(pngs)
    draw_image("square", 48, "purple").save(pngs[0])  # same path, different pixels
    cache = FeatureCache(image_backbone, root)
    new, _ = cache.features(pngs)
    assert (cache.hits, cache.misses) == (2, 1)
    assert not np.allclose(old[0]["pooled"], new[0]["pooled"])
    np.testing.assert_array_equal(old[1]["pooled"], new[1]["pooled"])


def test_feature_cache_invalidated_when_the_backbone_changes(image_backbone, pngs, tmp_path: Path, monkeypatch):
    root = tmp_path / "cache"
    first = FeatureCache(image_backbone, root)
    first.features(pngs)
    fingerprint = backbone_fingerprint(image_backbone)
    assert fingerprint == backbone_fingerprint(image_backbone)
    changed = {**image_backbone.preprocess_config(), "size": 240}  # a preprocessing parameter changes
    monkeypatch.setattr(image_backbone, "preprocess_config", lambda: changed)
    assert backbone_fingerprint(image_backbone) != fingerprint
    bumped = FeatureCache(image_backbone, root)
    assert bumped.dir != first.dir and bumped.dir.parent == first.dir.parent
    bumped.features(pngs)
    assert (bumped.hits, bumped.misses) == (0, 3)


def test_feature_cache_bad_inputs_fail_alone(image_backbone, pngs, tmp_path: Path):
    root = tmp_path / "cache"
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    objs = [pngs[0], empty, "a caption, not an image", pngs[1]]
    cache = FeatureCache(image_backbone, root)
    feats, errors = cache.features(objs, batch_size=1)
    assert sorted(errors) == [1, 2]
    assert errors[1].index == 1 and "empty" in errors[1].reason
    assert errors[2].index == 2 and "text" in errors[2].reason and "image" in errors[2].reason
    assert feats[1] is None and feats[2] is None and feats[0] is not None and feats[3] is not None

    again = FeatureCache(image_backbone, root)
    feats2, errors2 = again.features(objs)
    assert sorted(errors2) == [1, 2]  # failures are not cached ...
    assert again.hits == 2  # ... the good ones are
    np.testing.assert_array_equal(feats[3]["logits"], feats2[3]["logits"])


def test_feature_cache_missing_file_fails_alone(image_backbone, pngs, tmp_path: Path):
    feats, errors = FeatureCache(image_backbone, tmp_path / "cache").features([pngs[0], tmp_path / "gone.png"])
    assert feats[0] is not None and list(errors) == [1] and "not found" in errors[1].reason


def test_feature_cache_ignores_a_crashed_temp_shard(image_backbone, pngs, tmp_path: Path):
    root = tmp_path / "cache"
    cache = FeatureCache(image_backbone, root)
    cache.features(pngs[:1])
    shard = next(cache.dir.glob("shard-*.npz"))
    # what a crash in the middle of np.savez leaves behind: a truncated temp file
    (cache.dir / "shard-00001-999999.tmp.npz").write_bytes(shard.read_bytes()[:100])
    reopened = FeatureCache(image_backbone, root)
    reopened.features(pngs[:1])
    assert reopened.hits == 1


# -- split and batches -------------------------------------------------------------------------


def test_split_keeps_groups_on_one_side():
    groups = [f"g{i % 13}" for i in range(60)] + ["solo"]
    train, val = _split(groups, 0.25, seed=3)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(61))
    train_groups, val_groups = {groups[i] for i in train}, {groups[i] for i in val}
    assert not train_groups & val_groups
    assert len(val_groups) == 4  # ceil(0.25 * 14 groups)
    again = _split(groups, 0.25, seed=3)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], val)
    assert any(not np.array_equal(_split(groups, 0.25, seed=s)[1], val) for s in range(4, 8))
    assert len(_split(groups, 0.0, seed=0)[1]) == 0
    small_train, small_val = _split(["a", "b", "c", "d", "a"], 0.5, seed=0)  # < 5 groups: no held-out set
    assert len(small_val) == 0 and len(small_train) == 5


def test_split_never_holds_out_replay_pairs():
    groups = [f"g{i % 10}" for i in range(40)] + ["r1", "r2", "g3"]
    replay = np.array([False] * 40 + [True] * 3)
    for seed in range(6):
        train, val = _split(groups, 0.3, seed=seed, replay=replay)
        assert sorted(np.concatenate([train, val]).tolist()) == list(range(43))
        assert not replay[val].any() and {40, 41, 42} <= set(train.tolist())
        assert "g3" not in {groups[i] for i in val}  # a group with a replay pair stays in training
        assert len({groups[i] for i in val}) == 3  # ceil(0.3 * 9 holdable groups)


def test_weighted_epoch_repeats_pairs_by_weight():
    idx = np.array([0, 2, 3, 5])
    assert _weighted_epoch(idx, np.ones(6), np.random.default_rng(0)) is idx
    weights = np.array([3.0, 1.0, 1.0, 1.0, 1.0, 0.25])
    counts = np.zeros(6)
    rng = np.random.default_rng(0)
    for _ in range(400):
        counts += np.bincount(_weighted_epoch(idx, weights, rng), minlength=6)
    assert counts[0] == 1200 and counts[2] == counts[3] == 400 and counts[1] == counts[4] == 0
    assert 70 <= counts[5] <= 130  # a quarter of the epochs, in expectation


def test_weighted_pairs_are_trained_more_often(space, shape_pairs, feature_root, monkeypatch):
    seen = []
    real = trainer_mod._batches
    monkeypatch.setattr(trainer_mod, "_batches", lambda t, idx, *a: seen.append(np.array(idx)) or real(t, idx, *a))
    heavy = [Pair(p.a, p.b, 4.0 if i == 0 else 1.0, p.group, p.line) for i, p in enumerate(shape_pairs)]
    bind(space, heavy, _config(epochs=2, val_fraction=0.0), cache_root=feature_root)
    assert len(seen) == 2 and all(np.sum(s == 0) == 4 and len(s) == len(shape_pairs) + 3 for s in seen)


def test_bind_replay_pairs_train_but_are_never_held_out(space, shape_pairs, feature_root):
    main, replay = shape_pairs[::2], [Pair(p.a, p.b, p.weight, f"replay-{i}") for i, p in enumerate(shape_pairs[1::2])]
    result = bind(space, main, _config(epochs=3), cache_root=feature_root, replay=replay)
    m = result.metrics
    assert m["replay"] == len(replay) and m["pairs"] == len(main) + len(replay)
    expected_val = len(_split([p.group_key for p in main], 0.25, 0)[1])
    assert m["held_out"] == expected_val and m["train"] == len(main) + len(replay) - expected_val


def test_batches_have_distinct_captions_when_there_are_many():
    text_ids = np.repeat(np.arange(24), 3)
    idx = np.arange(len(text_ids))
    batches = _batches(text_ids, idx, 32, np.random.default_rng(0))
    flat = np.concatenate(batches)
    assert len(flat) == len(set(flat.tolist())) and set(flat.tolist()) <= set(idx.tolist())
    assert len(flat) >= len(idx) - 1  # at most a single leftover is dropped
    for b in batches:
        assert len(set(text_ids[b].tolist())) == len(b)


def test_batches_have_distinct_captions_when_there_are_few():
    text_ids = np.array([0, 0, 1, 1, 2, 2])
    for b in _batches(text_ids, np.arange(6), 32, np.random.default_rng(0)):
        assert len(set(text_ids[b].tolist())) == len(b), f"caption repeated in batch {text_ids[b]}"


def test_hard_negatives_never_share_a_caption_with_the_batch(monkeypatch):
    torch.manual_seed(0)
    dim, captions, per_caption = 8, 4, 3
    anchors = torch.nn.functional.normalize(torch.randn(captions, dim), dim=-1)
    text_ids = np.repeat(np.arange(captions), per_caption)
    feats = [{"embedding": (anchors[t] + 0.05 * torch.randn(dim)).numpy()[None].astype(np.float32)} for t in text_ids]
    groups = [str(i) for i in range(len(text_ids))]
    data = trainer_mod._Data(trainer_mod._Stacked(feats), text_ids, np.ones(len(text_ids), np.float32), groups, anchors,
                             None, np.zeros(len(text_ids), bool))
    head = LinearHead("embedding", dim, dim)
    with torch.no_grad():
        head.proj.weight.copy_(torch.eye(dim))
        head.proj.bias.zero_()
    config = _config(hard_negatives=2, batch_size=captions)

    embedded: list[np.ndarray] = []
    real_embed = trainer_mod._embed_items

    def recording_embed(h, f, idx, *args):
        embedded.append(np.asarray(list(idx)))
        return real_embed(h, f, idx, *args)

    monkeypatch.setattr(trainer_mod, "_embed_items", recording_embed)
    seen: list[tuple[np.ndarray, np.ndarray | None]] = []

    class Recording(L.InfoNCE):
        def forward(self, batch: L.BatchOutputs) -> torch.Tensor:
            calls = [e for e in embedded if len(e) != len(text_ids)]  # drop the mining pool
            seen.append((calls[-2], calls[-1]) if batch.negatives is not None else (calls[-1], None))
            embedded.clear()
            return super().forward(batch)

    optimiser = torch.optim.SGD(head.parameters(), lr=0.0)
    train_idx = np.arange(len(text_ids))
    objective = trainer_mod._Objective([Recording()])
    trainer_mod._train_epoch(head, objective, optimiser, data, train_idx, config, np.random.default_rng(0))
    assert seen
    for batch, negs in seen:
        if negs is not None:
            shared = set(text_ids[negs].tolist()) & set(text_ids[batch].tolist())
            assert not shared, f"hard negatives paired with the batch's own captions {shared}"


# -- binding -----------------------------------------------------------------------------------


def test_bind_improves_held_out_recall(space, shape_pairs, linear_result):
    m = linear_result.metrics
    before, after = m["held_out_bridge"], m["held_out_trained"]
    assert (m["pairs"], m["train"], m["held_out"], m["skipped"]) == (96, 72, 24, 0)
    assert before["val_R@1"] < 30
    assert after["val_R@1"] >= before["val_R@1"] + 40
    assert after["val_caption_R@1"] >= before["val_caption_R@1"] + 40
    assert 1 <= m["best_epoch"] <= len(linear_result.history)
    assert [row["epoch"] for row in linear_result.history] == list(range(1, len(linear_result.history) + 1))

    # the returned space agrees, embedding the held-out images from scratch
    held = _held_out(shape_pairs, _config())
    assert len(held) == 24
    t2i_before, i2t_before = _retrieval(space, held)
    t2i_after, i2t_after = _retrieval(linear_result.space, held)
    assert t2i_after >= t2i_before + 40 and i2t_after >= i2t_before + 40
    assert i2t_after == pytest.approx(after["val_R@1"], abs=100 / 24 + 1e-3)  # at most one near-tie may flip


def test_bind_leaves_the_anchor_and_the_input_space_alone(space, shape_pairs, linear_result):
    new = linear_result.space
    assert new is not space and space.towers["image"].head.kind == "conse"
    assert new.towers["image"].head.kind == "linear" and new.towers["image"].backbone_ref == "efficientnet-lite0"
    assert new.towers["text"] is space.towers["text"] and new.anchor == "text" and set(new.towers) == set(space.towers)
    np.testing.assert_allclose(new.embed(["a red circle"]), space.embed(["a red circle"]), atol=1e-6)
    audio = space.towers["audio"].head.state_dict()
    assert all(torch.equal(v, new.towers["audio"].head.state_dict()[k]) for k, v in audio.items())


def test_bind_residual_improves_and_saves(space, shape_pairs, residual_result, tmp_path: Path):
    m = residual_result.metrics
    assert m["held_out_trained"]["val_R@1"] >= m["held_out_bridge"]["val_R@1"] + 40
    head = residual_result.space.towers["image"].head
    assert isinstance(head, ResidualHead) and isinstance(head.bridge, ConSEHead)
    # the frozen bridge inside is the shipped one, untouched by training
    for k, v in space.towers["image"].head.state_dict().items():
        assert torch.equal(head.bridge.state_dict()[k], v)

    folder = residual_result.space.save(tmp_path / "bound")
    loaded = Space.load(folder)
    record = json.loads((folder / "space.json").read_text())["provenance"]["bind_image"]
    assert record["base_space"] == space.name
    assert len(record["manifest_sha256"]) == 64
    assert record["config"] == json.loads(json.dumps(asdict(_config(head="residual", hidden=128))))
    assert record["metrics"]["held_out_trained"] == pytest.approx(m["held_out_trained"])
    assert loaded.provenance["bind_image"] == record
    assert loaded.name == f"{space.name}+bind-image"
    held = [p.b for p in _held_out(shape_pairs, _config())[:6]]
    np.testing.assert_allclose(loaded.embed(held), residual_result.space.embed(held), atol=1e-5)


def test_provenance_records_a_given_manifest_hash(linear_result):
    record = linear_result.space.provenance["bind_image"]
    assert record["manifest_sha256"] == "f" * 64
    assert record["losses"] == [{"name": "infonce", "class": "omnibind.bind.losses.InfoNCE", "weight": 1.0}]
    assert record["config"]["head"] == "linear" and record["config"]["teacher"] is None
    assert record["metrics"] is linear_result.metrics
    assert "built_by" in linear_result.space.provenance  # the base space's provenance is kept


def test_residual_head_starts_at_the_bridge(space, shape_pairs, feature_root):
    bridge = space.towers["image"].head
    fresh = ResidualHead.around(bridge, "pooled", 1280, "mlp", 64)
    torch.manual_seed(1)
    features = {"pooled": torch.randn(5, 1280), "logits": torch.randn(5, 1000) * 3}
    expected = torch.nn.functional.normalize(bridge(features), dim=-1)
    np.testing.assert_allclose(fresh(features).detach().numpy(), expected.numpy(), atol=1e-6)

    result = bind(space, shape_pairs, _config(head="residual", epochs=0, hidden=64), cache_root=feature_root)
    m = result.metrics
    assert result.history == [] and m["best_epoch"] == 0
    assert m["held_out_trained"] == pytest.approx(m["held_out_bridge"])
    images = [p.b for p in shape_pairs[:5]]
    np.testing.assert_allclose(result.space.embed(images), space.embed(images), atol=1e-5)


def test_bind_is_deterministic_per_seed(space, shape_pairs, feature_root):
    def run(seed: int):
        result = bind(space, shape_pairs, _config(epochs=4, patience=100, seed=seed), cache_root=feature_root)
        return result.space.towers["image"].head.state_dict(), result.history

    state_a, history_a = run(0)
    state_b, history_b = run(0)
    state_c, _ = run(1)
    assert history_a == history_b
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert not all(torch.equal(state_a[k], state_c[k]) for k in state_a)


@pytest.mark.parametrize("extra", [
    {"hard_negatives": 2},
    {"loss": "siglip", "epochs": 80},
    {"matryoshka": (32, 64)},
    {"head": "residual", "hard_negatives": 2, "hidden": 64, "epochs": 30},
    {"head": "mlp", "hidden": 64, "teacher": "bridge", "distill_weight": 0.1, "intra_weight": 0.1,
     "geometric_weight": 0.1},
], ids=["hard-negatives", "siglip", "matryoshka", "residual-hard-negatives", "mlp-regularised"])
def test_bind_options_run_and_improve(space, shape_pairs, feature_root, extra):
    epochs_seen = []
    result = bind(space, shape_pairs, _config(**extra), cache_root=feature_root, on_epoch=epochs_seen.append)
    m = result.metrics
    assert epochs_seen == result.history and all(np.isfinite(row["loss"]) for row in result.history)
    assert m["held_out_trained"]["val_R@1"] >= m["held_out_bridge"]["val_R@1"] + 30, (extra, m)
    if "matryoshka" in extra:
        held = _held_out(shape_pairs, _config())
        captions = sorted({p.a for p in held})
        target = np.array([captions.index(p.a) for p in held])
        for dim in (32, 64):
            sims = result.space.embed([p.b for p in held], dim=dim) @ result.space.embed(captions, dim=dim).T
            base = space.embed([p.b for p in held], dim=dim) @ space.embed(captions, dim=dim).T
            assert np.mean(sims.argmax(1) == target) >= np.mean(base.argmax(1) == target) + 0.3


def test_bind_errors(space, shape_pairs, feature_root, tmp_path: Path):
    with pytest.raises(BindError, match="video"):
        bind(space, shape_pairs, _config(tower="video"), cache_root=feature_root)
    with pytest.raises(BindError, match="anchor"):
        bind(space, shape_pairs, _config(tower="text"), cache_root=feature_root)
    with pytest.raises(BindError, match="no usable pairs.*line 3"):
        bind(space, [Pair("a cat", "a dog", line=3), Pair("x", "y", line=4)], _config(), cache_root=feature_root)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(BindError, match="fewer than 2"):
        bind(space, [Pair("a cat", empty, line=1), shape_pairs[0]], _config(), cache_root=feature_root)
    with pytest.raises(BindError, match="unknown head"):
        bind(space, shape_pairs[:8], _config(head="transformer"), cache_root=feature_root)
    with pytest.raises(BindError, match="unknown loss"):
        bind(space, shape_pairs[:8], _config(loss="triplet"), cache_root=feature_root)


def test_bind_skips_bad_pairs_with_reasons(space, shape_pairs, feature_root, tmp_path: Path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    pairs = [Pair("a caption", "another caption", line=101), Pair(empty, "a red circle", line=102), *shape_pairs[:12]]
    # media first, text second is fine: pairs are oriented by which cell is text
    pairs.append(Pair(shape_pairs[12].b, shape_pairs[12].a, line=103))
    result = bind(space, pairs, _config(epochs=2, val_fraction=0.0), cache_root=feature_root)
    reasons = {b.line: b.reason for b in result.skipped}
    assert sorted(reasons) == [101, 102]
    assert "one text cell" in reasons[101]
    assert "empty" in reasons[102]
    m = result.metrics
    assert (m["pairs"], m["train"], m["held_out"], m["skipped"]) == (13, 13, 0, 2)
    assert m["held_out_bridge"] == {} and m["held_out_trained"] == {} and m["best_epoch"] == 2


def test_bind_residual_around_a_random_linear_bridge(space, shape_pairs, feature_root):
    """A space whose image tower is an untrained linear head on the logits: residual binding wraps it."""
    from omnibind.tower import Tower

    torch.manual_seed(0)
    random_head = LinearHead("logits", 1000, 384).eval()
    towers = {"text": space.towers["text"],
              "image": Tower("image", "efficientnet-lite0", random_head, space.towers["image"]._backbone)}
    weak = Space(towers, name="weak")
    result = bind(weak, shape_pairs, _config(head="residual", hidden=64, epochs=30), cache_root=feature_root)
    bridge = result.space.towers["image"].head.bridge
    assert isinstance(bridge, LinearHead) and bridge.input_key == "logits"
    assert result.metrics["held_out_trained"]["val_R@1"] >= result.metrics["held_out_bridge"]["val_R@1"] + 30


# -- loss objects ------------------------------------------------------------------------------


class TowardFirstAxis(L.BindLoss):
    """A user-defined loss: every media vector toward the first axis, whatever its caption."""

    name = "first_axis"

    def forward(self, batch: L.BatchOutputs) -> torch.Tensor:
        return 1.0 - torch.nn.functional.normalize(batch.media, dim=-1)[:, 0].mean()


def test_bind_trains_with_a_user_defined_loss(space, shape_pairs, feature_root):
    term = TowardFirstAxis()
    before = [p.detach().clone() for p in term.parameters()]
    result = bind(space, shape_pairs, _config(epochs=8, lr=1e-2, val_fraction=0.0), cache_root=feature_root,
                  losses=[term])
    images = [p.b for p in shape_pairs[::7]]
    assert space.embed(images)[:, 0].max() < 0.5
    assert result.space.embed(images)[:, 0].min() > 0.9  # only this term asks for that: InfoNCE would not
    assert [set(row) >= {"loss", "loss_first_axis"} for row in result.history] == [True] * 8
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.space.provenance["bind_image"]["losses"] == [
        {"name": "first_axis", "class": f"{__name__}.TowardFirstAxis", "weight": 1.0}]
    assert before == [p.detach() for p in term.parameters()]


def test_default_losses_are_the_configs_terms_and_the_callers_are_not_trained(space, shape_pairs, feature_root):
    config = _config(epochs=3, patience=100, teacher="bridge", distill_weight=0.2, matryoshka=(32,), intra_weight=0.1)
    terms = config.default_losses(space.dim)
    assert [(type(t).__name__, t.name, t.weight) for t in terms] == [
        ("Matryoshka", "matryoshka_infonce", 1.0), ("Distillation", "distillation", 0.2),
        ("IntraModalStructure", "intra_modal", 0.1)]
    assert terms[0].dims == [32, space.dim] and terms[0].uses_teacher is False and terms[1].uses_teacher
    given = bind(space, shape_pairs, config, cache_root=feature_root, losses=terms)
    default = bind(space, shape_pairs, config, cache_root=feature_root)
    assert given.history == default.history
    assert set(default.history[0]) >= {"loss_matryoshka_infonce", "loss_distillation", "loss_intra_modal"}
    s1, s2 = given.space.towers["image"].head.state_dict(), default.space.towers["image"].head.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert terms[0].base.temperature == pytest.approx(0.07)  # bind trained a copy


def test_bind_loss_errors(space, shape_pairs, feature_root):
    with pytest.raises(BindError, match="empty"):
        bind(space, shape_pairs, _config(), cache_root=feature_root, losses=[])
    with pytest.raises(BindError, match="distinct names"):
        bind(space, shape_pairs, _config(), cache_root=feature_root, losses=[L.InfoNCE(), L.InfoNCE(weight=0.5)])
    with pytest.raises(BindError, match="teacher"):
        bind(space, shape_pairs, _config(teacher=None), cache_root=feature_root, losses=[L.InfoNCE(), L.Distillation()])


# -- from manifest files -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shape_manifests(shape_pairs, tmp_path_factory) -> tuple[Path, Path]:
    """Two manifests of saved drawings; the main one has a row that does not parse (line 2) and a
    broken image (its last line), the replay one a broken image (its last line)."""
    folder = tmp_path_factory.mktemp("manifests")
    (folder / "bad.png").write_bytes(b"")

    def write(name: str, pairs: list[Pair], unparsable: bool) -> Path:
        lines = []
        for p in pairs:
            p.b.save(folder / f"{p.group}.png")
            lines.append(json.dumps({"a": p.a, "b": f"{p.group}.png", "group": p.group}))
        if unparsable:
            lines.insert(1, json.dumps({"a": "no b column"}))
        lines.append(json.dumps({"a": "a broken picture", "b": "bad.png"}))
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        return folder / name

    return write("main.jsonl", shape_pairs[:40], True), write("replay.jsonl", shape_pairs[40:52], False)


def test_bind_manifest_records_the_files_sha256_like_bind_on_read_pairs(space, shape_manifests, feature_root):
    main, replay = shape_manifests
    config = _config(epochs=2)
    read = []
    result = bind_manifest(space, main, config, replay_path=replay, cache_root=feature_root, on_read=read.append)
    digest = result.space.provenance["bind_image"]["manifest_sha256"]
    assert digest == manifest_sha256(main, replay)
    assert digest == hashlib.sha256(main.read_bytes() + replay.read_bytes()).hexdigest()
    assert read == [41 + 13] and result.metrics["replay"] == 12 and result.metrics["skipped"] == 2
    where = [(Path(b.manifest).name, b.line) for b in result.skipped]
    assert where == [("main.jsonl", 2), ("main.jsonl", 42), ("replay.jsonl", 13)]
    assert "'b'" in result.skipped[0].reason and "bad.png" in result.skipped[1].reason

    pairs, _ = read_manifest(main)
    more, _ = read_manifest(replay)
    same = bind(space, pairs, config, cache_root=feature_root, replay=more)
    assert same.space.provenance["bind_image"]["manifest_sha256"] == digest
    assert same.history == result.history
    assert bind(space, pairs, config, cache_root=feature_root).space.provenance["bind_image"]["manifest_sha256"] == \
        manifest_sha256(main)
    cells = bind(space, list(pairs), config, cache_root=feature_root).space.provenance["bind_image"]["manifest_sha256"]
    assert len(cells) == 64 and cells != manifest_sha256(main)  # built in code: a digest of the cells


def test_cli_bind_with_replay_reports_both_manifests(shape_pairs, tmp_path: Path):
    from typer.testing import CliRunner

    from omnibind.cli import app

    def write(name: str, pairs: list[Pair], broken: bool = False) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        lines = []
        for i, p in enumerate(pairs):
            p.b.save(folder / f"{i}.png")
            lines.append(json.dumps({"a": p.a, "b": f"{i}.png", "group": p.group}))
        if broken:
            (folder / "bad.png").write_bytes(b"")
            lines.append(json.dumps({"a": "a broken picture", "b": "bad.png"}))
        path = folder / "pairs.jsonl"
        path.write_text("\n".join(lines) + "\n")
        return path

    main = write("main", shape_pairs[::2])
    replay = write("replay", shape_pairs[1::2], broken=True)
    out = tmp_path / "bound"
    result = CliRunner().invoke(app, ["bind", str(main), "--space", "bridge", "--out", str(out), "--head", "linear",
                                      "--teacher", "none", "--epochs", "3", "--replay", str(replay)])
    assert result.exit_code == 0, result.output
    assert f"({len(shape_pairs[1::2])} replay," in result.output and "1 skipped" in result.output
    assert "(replay manifest)" in result.output and "bad.png" in result.output
    record = json.loads((out / "space.json").read_text())["provenance"]["bind_image"]
    assert record["metrics"]["replay"] == len(shape_pairs[1::2])


def test_bind_refits_the_bound_towers_calibration_and_search_uses_it(space, linear_result, shape_pairs, tmp_path):
    """A bound space carries match-probability fits for its new tower, refit on the held-out pairs
    (never the old tower's, whose vectors moved), so a mixed collection still ranks on probabilities."""
    from omnibind.collection import Collection
    from omnibind.search import search

    new = linear_result.space
    refit = linear_result.metrics["calibration_refit"]
    assert set(refit) == {"text->image", "image->text"}
    assert new.calibration["text->image"] == refit["text->image"] != space.calibration.get("text->image")
    assert all(fit[0] > 0 and len(fit) == 4 for fit in refit.values())  # a, b, cosine mean, std
    assert {k: v for k, v in new.calibration.items() if "image" not in k} == \
        {k: v for k, v in space.calibration.items() if "image" not in k}
    c = Collection.open(tmp_path / "c", new)
    images = [p.b for p in shape_pairs[:24]]
    c.add(images, ids=[f"img-{n}" for n in range(len(images))])
    c.add([f"a note about {w}" for w in ("tax", "cake", "rome", "trains", "music", "rain", "bees", "maps", "wine", "golf",
                                          "chess", "glue", "ink", "jazz", "kites", "lamps", "moss", "nuts", "owls", "pens",
                                          "quilts", "rust")])
    hits = search(c, shape_pairs[0].a, k=5, modality="image")
    a, b, *_ = refit["text->image"]
    assert all(h.probability == pytest.approx(1 / (1 + np.exp(-(a * h.z + b))), rel=1e-6) for h in hits)
    c.space.calibration = {k: v for k, v in new.calibration.items() if "image" not in k}
    assert all(h.probability is None for h in search(c, shape_pairs[0].a, k=5, modality="image"))  # without the refit


def test_a_stale_fit_is_never_carried_into_a_bound_space():
    from omnibind.bind.trainer import _calibration_after_bind

    old = {"text->image": [1.0, 0.0], "image->text": [1.0, 0.0], "text->audio": [2.0, 1.0], "text->text": [3.0, 0.0]}
    assert _calibration_after_bind(old, "image", {}) == {"text->audio": [2.0, 1.0], "text->text": [3.0, 0.0]}
    assert _calibration_after_bind(old, "image", {"text->image": [4.0, -2.0]})["text->image"] == [4.0, -2.0]


def _scene(seed: int) -> Image.Image:
    """A picture unlike the shape pairs: random stripes and ellipses on a coloured ground."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (64, 64), tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = (int(v) for v in rng.integers(0, 48, 2))
        fill = tuple(int(c) for c in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x, y, x + 16, y + 30), fill=fill)
    return image


def test_unlabelled_media_keep_the_head_near_the_bridge_on_data_unlike_the_pairs(space, shape_pairs, feature_root):
    """Distillation on unlabelled pictures: on *other* pictures of that kind, the trained head stays
    closer to the bridge than the same bind without them, and the pairs are still learned."""
    unlabelled = [_scene(s) for s in range(40)]
    unseen = [_scene(1000 + s) for s in range(12)]
    config = _config(head="residual", hidden=128, teacher="bridge", distill_weight=0.0, unlabelled_weight=2.0)
    plain = bind(space, shape_pairs, config, cache_root=feature_root)
    kept = bind(space, shape_pairs, config, cache_root=feature_root, unlabelled=unlabelled)
    assert kept.metrics["unlabelled"] == 40 and plain.metrics["unlabelled"] == 0
    bridge = space.embed(unseen)

    def agreement(sp: Space) -> float:
        return float(np.mean(np.sum(sp.embed(unseen) * bridge, axis=1)))

    assert agreement(kept.space) > agreement(plain.space) + 0.3  # measured 0.95 vs 0.08
    assert kept.metrics["held_out_trained"]["val_caption_R@5"] > kept.metrics["held_out_bridge"]["val_caption_R@5"]
    assert any("loss_unlabelled" in row for row in kept.history)
    with pytest.raises(BindError, match="teacher"):
        bind(space, shape_pairs, _config(head="residual", teacher=None), unlabelled=unlabelled)
