"""Weight-interpolation merging: tiny spaces whose backbones are never loaded (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from omnibind import merge as mg
from omnibind.errors import OmnibindError, SpaceError
from omnibind.evaluate import suite
from omnibind.heads import HEADS, Head, LinearHead, MLPHead
from omnibind.space import Space, load_space
from omnibind.tower import Tower

DIM = 16
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_space(seed: int, name: str = "tiny", image_head: Head | None = None, image_ref: str = "efficientnet-lite0") -> Space:
    torch.manual_seed(seed)
    text = Tower("text", "minilm", LinearHead("embedding", 384, DIM).eval())
    image = Tower("image", image_ref, (image_head or MLPHead("pooled", 1280, DIM, hidden=8)).eval())
    return Space({"text": text, "image": image}, name=name, provenance={"note": f"seed {seed}"})


def states(space: Space) -> dict[str, dict[str, torch.Tensor]]:
    return {m: t.head.state_dict() for m, t in space.towers.items()}


def assert_same_weights(x: Space, y: Space) -> None:
    sx, sy = states(x), states(y)
    assert sx.keys() == sy.keys()
    for m in sx:
        assert sx[m].keys() == sy[m].keys()
        for k in sx[m]:
            assert sx[m][k].dtype == sy[m][k].dtype
            assert torch.equal(sx[m][k], sy[m][k]), f"{m}.{k}"


@pytest.fixture
def pair() -> tuple[Space, Space]:
    return tiny_space(1, "zero-shot"), tiny_space(2, "tuned")


def test_endpoints_are_exact(pair):
    a, b = pair
    assert_same_weights(mg.merge_spaces(a, b, 0.0), a)
    assert_same_weights(mg.merge_spaces(a, b, 1), b)


def test_midpoint_and_general_alpha(pair):
    a, b = pair
    mid, third = mg.merge_spaces(a, b, 0.5), mg.merge_spaces(a, b, 0.3)
    sa, sb, sm, st = states(a), states(b), states(mid), states(third)
    for m in sa:
        for k, ta in sa[m].items():
            tb = sb[m][k]
            assert not torch.equal(ta, tb) or k.startswith("net.0")  # LayerNorm starts at 1/0 in both
            assert torch.equal(sm[m][k], ((ta.double() + tb.double()) / 2).float())
            assert torch.allclose(st[m][k], 0.7 * ta + 0.3 * tb, atol=1e-6)
    # merged heads are new modules: changing them leaves the parents alone
    mid.towers["image"].head.net[1].weight.data.zero_()
    assert sa["image"]["net.1.weight"].abs().sum() > 0


def test_merged_space_keeps_structure_and_embeds_linearly(pair):
    a, b = pair
    mid = mg.merge_spaces(a, b, 0.5)
    assert mid.towers.keys() == a.towers.keys() and mid.anchor == a.anchor and mid.dim == DIM
    for m in a.towers:
        assert mid.towers[m].config() == a.towers[m].config()
    # a linear head's raw output is linear in its weights
    x = {"embedding": torch.randn(3, 384)}
    out = mid.towers["text"].head(x)
    expected = (a.towers["text"].head(x) + b.towers["text"].head(x)) / 2
    assert torch.allclose(out, expected, atol=1e-5)


def test_alpha_out_of_range(pair):
    a, b = pair
    for bad in (-0.01, 1.5, float("nan"), "half"):
        with pytest.raises(ValueError):
            mg.merge_spaces(a, b, bad)


@pytest.mark.parametrize(
    "other, expected",
    [
        (lambda: tiny_space(3, image_head=LinearHead("pooled", 1280, DIM)), "kind"),
        (lambda: tiny_space(3, image_head=MLPHead("logits", 1000, DIM, hidden=8)), "input_key"),
        (lambda: tiny_space(3, image_head=MLPHead("pooled", 1280, DIM, hidden=16)), "hidden"),
        (lambda: tiny_space(3, image_ref="hf:some/vision-model"), "backbone"),
    ],
)
def test_structure_mismatch_names_the_difference(pair, other, expected):
    a, _ = pair
    with pytest.raises(SpaceError, match=rf"image tower head\.{expected}|image tower {expected}") as info:
        mg.merge_spaces(a, other(), 0.5)
    assert "differs" in str(info.value)


def test_dimension_and_modality_mismatch():
    torch.manual_seed(0)
    a = tiny_space(1)
    wide = Space({"text": Tower("text", "minilm", LinearHead("embedding", 384, 32)),
                  "image": Tower("image", "efficientnet-lite0", MLPHead("pooled", 1280, 32, hidden=8))})
    with pytest.raises(SpaceError, match=r"text tower head\.out_dim differs: A 16, B 32"):
        mg.merge_spaces(a, wide, 0.5)
    text_only = Space({"text": Tower("text", "minilm", LinearHead("embedding", 384, DIM))})
    with pytest.raises(SpaceError, match="only A has image"):
        mg.merge_spaces(a, text_only, 0.5)


class StepsHead(LinearHead):
    """A test head with an integer buffer, which merging must copy, never interpolate."""

    kind = "test-steps"

    def __init__(self, input_key: str, in_dim: int, out_dim: int) -> None:
        super().__init__(input_key, in_dim, out_dim)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))


def test_non_float_buffers_are_copied_and_must_match(monkeypatch):
    monkeypatch.setitem(HEADS, StepsHead.kind, StepsHead)
    heads = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        heads.append(StepsHead("pooled", 1280, DIM))
        heads[-1].steps.fill_(7)
    a, b = tiny_space(1, image_head=heads[0]), tiny_space(2, image_head=heads[1])
    merged = mg.merge_spaces(a, b, 0.25)
    steps = merged.towers["image"].head.steps
    assert steps.dtype == torch.long and int(steps) == 7
    heads[1].steps.fill_(8)
    with pytest.raises(SpaceError, match="'steps' is not floating point and differs"):
        mg.merge_spaces(a, b, 0.25)


def test_provenance_and_save_load(pair, tmp_path):
    a, b = pair
    merged = mg.merge_spaces(a, b, 0.25)
    assert merged.name == "zero-shot+tuned@0.25"
    assert mg.merge_spaces(a, b, 0.25, name="soup").name == "soup"
    p = merged.provenance
    assert p["built_by"] == "omnibind.merge" and "merged by omnibind.merge" in p["training"]
    assert p["alpha"] == 0.25
    assert [(x["role"], x["name"]) for x in p["parents"]] == [("A", "zero-shot"), ("B", "tuned")]
    assert p["parents"][0]["heads_sha256"] == mg.heads_sha256(a) != mg.heads_sha256(b)
    assert p["parents"][1]["provenance"] == {"note": "seed 2"}
    assert len(mg.heads_sha256(a)) == 64 and mg.heads_sha256(mg.merge_spaces(a, b, 0)) == mg.heads_sha256(a)

    loaded = Space.load(merged.save(tmp_path / "merged"))
    assert_same_weights(loaded, merged)
    assert loaded.provenance == p and loaded.name == merged.name
    assert mg.heads_sha256(loaded) == mg.heads_sha256(merged)


def test_default_space_with_two_learned_image_heads():
    """The shipped default space, its image bridge swapped for two random linear heads."""
    spaces = []
    for seed in (10, 11):
        base = load_space()
        torch.manual_seed(seed)
        base.towers["image"] = Tower("image", "efficientnet-lite0", LinearHead("pooled", 1280, 384).eval())
        spaces.append(base)
    mid = mg.merge_spaces(*spaces, 0.5)
    w = [s.towers["image"].head.proj.weight for s in spaces]
    assert torch.allclose(mid.towers["image"].head.proj.weight, (w[0] + w[1]) / 2, atol=1e-7)
    assert_same_weights_tower(mid, spaces[0], "audio")  # identical ConSE bridges stay identical
    # calibration: the image fits are dropped (the image heads moved), the others kept
    assert "text->image" in spaces[0].calibration and "text->image" not in mid.calibration
    assert mid.calibration["text->audio"] == spaces[0].calibration["text->audio"]
    assert mid.calibration["text->text"] == spaces[0].calibration["text->text"]
    assert "dropped" in mid.provenance["calibration"] and "text->image" in mid.provenance["calibration"]
    assert mg.merge_spaces(*spaces, 0.0).calibration == spaces[0].calibration


def assert_same_weights_tower(x: Space, y: Space, modality: str) -> None:
    sx, sy = x.towers[modality].head.state_dict(), y.towers[modality].head.state_dict()
    assert all(torch.equal(sx[k], sy[k]) for k in sx)


def _stub_task(kind: str, calls: list, metrics):
    """A task for suite.TASKS that scores a space from its head weights, recording each call."""

    def run(embed, limit):
        space = embed.space
        calls.append((kind, space.provenance["alpha"], limit))
        return suite.TaskResult(kind, "classification" if kind == "domain" else "retrieval",
                                {"name": kind, "n": 1}, metrics(space))

    return run


def _mean(space: Space) -> float:
    return space.towers["text"].head.proj.weight.mean().item()


@pytest.fixture
def stub_tasks(monkeypatch):
    calls: list = []
    general = _stub_task("general", calls, lambda s: {"q->d": {"R@1": 10.0, "R@10": 40 - 10 * s.provenance["alpha"],
                                                                 "MRR": _mean(s), "queries": 3}})
    domain = _stub_task("domain", calls, lambda s: {"accuracy": 50 + 30 * s.provenance["alpha"], "n": 3,
                                                    "per_class_accuracy": {"x": 1.0}})
    monkeypatch.setitem(suite.TASKS, "stub-general", general)
    monkeypatch.setitem(suite.TASKS, "stub-domain", domain)
    return calls


def test_sweep_scores_each_alpha_in_order_on_the_named_tasks(pair, stub_tasks):
    a, b = pair
    progressed = []
    result = mg.sweep(a, b, [1, 0, 0.5], "stub-general", "stub-domain", limit=7, progress=progressed.append)
    rows = result.rows
    assert [c[1] for c in stub_tasks if c[0] == "general"] == [1.0, 0.0, 0.5] and {c[2] for c in stub_tasks} == {7}
    assert [r["alpha"] for r in rows] == [1.0, 0.0, 0.5] and progressed == rows
    # every scalar metric, headline first per task; sizes and per-class dicts left out
    assert list(rows[0]) == ["alpha", "stub-general/q->d/R@10", "stub-general/q->d/R@1", "stub-general/q->d/MRR",
                             "stub-domain/accuracy"]
    assert (result.x_metric, result.y_metric) == ("stub-domain/accuracy", "stub-general/q->d/R@10")
    assert rows[0]["stub-general/q->d/MRR"] == _mean(b) and rows[1]["stub-general/q->d/MRR"] == _mean(a)
    assert rows[2]["stub-general/q->d/MRR"] == pytest.approx((_mean(a) + _mean(b)) / 2, abs=1e-6)
    assert result.files == {} and result.record["rows"] == rows and result.record["limit"] == 7


def test_sweep_checks_everything_before_any_work(pair, stub_tasks):
    a, b = pair
    with pytest.raises(ValueError, match="alpha must be in"):
        mg.sweep(a, b, [0, 2], "stub-general", "stub-domain")
    with pytest.raises(ValueError, match="at least one alpha"):
        mg.sweep(a, b, [], "stub-general", "stub-domain")
    with pytest.raises(OmnibindError, match="unknown task 'tux-test'"):
        mg.sweep(a, b, [0, 1], "tux-test", "stub-domain")  # the old merge-only name is gone
    with pytest.raises(SpaceError):
        mg.sweep(a, tiny_space(3, image_head=LinearHead("pooled", 1280, DIM)), [0], "stub-general", "stub-domain")
    assert stub_tasks == []


def test_sweep_writes_record_and_tradeoff_plot(pair, stub_tasks, tmp_path):
    a, b = pair
    result = mg.sweep(a, b, [0, 0.5, 1], "stub-general", "stub-domain", tmp_path / "out", refs=("A-dir", "B-dir"))
    assert result.files == {"json": tmp_path / "out" / "merge_sweep.json", "png": tmp_path / "out" / "merge_tradeoff.png"}
    record = json.loads(result.files["json"].read_text())
    assert record == json.loads(json.dumps(result.record))
    assert record["x_metric"] == "stub-domain/accuracy" and record["y_metric"] == "stub-general/q->d/R@10"
    assert record["a"] == {"space": "A-dir", "name": a.name, "heads_sha256": mg.heads_sha256(a)}
    assert record["general"] == "stub-general" and record["domain"] == "stub-domain" and record["limit"] is None
    assert [r["alpha"] for r in record["rows"]] == [0.0, 0.5, 1.0] and record["rows"][2]["stub-domain/accuracy"] == 80.0
    assert result.files["png"].read_bytes()[:8] == PNG_MAGIC
    assert not (tmp_path / "out" / "space.json").exists()  # a sweep alone writes no space


def test_plot_tradeoff_writes_png(tmp_path):
    rows = [{"alpha": x, "domain/acc": 50 + 30 * x, "general/R@10": 40 - 10 * x * x} for x in np.linspace(0, 1, 6)]
    out = mg.plot_tradeoff(rows, "domain/acc", "general/R@10", tmp_path / "plots" / "t.png", "trade-off")
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    tied = [{"alpha": a, "x": 1.0, "y": 2.0} for a in (0.4, 0.5)] + [{"alpha": 1.0, "x": float("nan"), "y": 3.0}]
    assert mg.plot_tradeoff(tied, "x", "y", tmp_path / "tied.png", "ties").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="missing"):
        mg.plot_tradeoff(rows, "nope", "general/R@10", tmp_path / "x.png", "t")


class CountingBackbone:
    """Stands in for a text backbone: deterministic features, counts its batches."""

    ref, modality, outputs = "fake", "text", {"embedding": 384}

    def __init__(self) -> None:
        self.calls = 0

    def segments(self, item):
        yield item.payload

    def sort_key(self, segment):
        return -len(segment)

    def collate(self, segments):
        return list(segments)

    def preprocess_config(self):
        return {}

    def features(self, batch):
        self.calls += 1
        rows = [torch.from_numpy(np.random.default_rng(sum(map(ord, s))).standard_normal(384).astype(np.float32)) for s in batch]
        return {"embedding": torch.stack(rows)}

    flush_batches = 1


def test_sweep_reads_backbone_features_once_and_projects_like_embed(pair, tmp_path, monkeypatch):
    """Every alpha reuses one pass of backbone features (the sweep's own caches) and embeds exactly
    as `Space.embed` does (the shared per-item projection)."""
    a, b = pair
    backbone = CountingBackbone()
    for s in (a, b):
        s.towers["text"]._backbone = backbone
    texts = ["a red circle", "two dogs", "a very long sentence about a cat", "x"]
    seen = {}

    def texts_task(embed, limit):
        vectors = embed(texts, "text")
        seen[embed.space.provenance["alpha"]] = (embed.space, vectors)
        return suite.TaskResult("texts", "retrieval", {"name": "texts", "n": 4},
                                {"t->t": suite.M.retrieval_metrics(vectors @ vectors.T)})

    opened = []

    class CountingCache(suite.FeatureCache):
        def __init__(self, *args, **kwargs):
            opened.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setitem(suite.TASKS, "texts", texts_task)
    monkeypatch.setattr(suite, "FeatureCache", CountingCache)
    mg.sweep(a, b, [0, 0.5, 1], "texts", "texts", cache_root=tmp_path)
    assert opened == [backbone] and backbone.calls == 1  # one cache, one batch of features, for 3 alphas
    for space, vectors in seen.values():
        assert np.allclose(vectors, space.embed(texts), atol=1e-6)
    assert seen[0.5][0].towers["text"].backbone is backbone  # the loaded backbone is shared


def test_cli_merge(pair, tmp_path):
    from omnibind.cli import app

    a, b = pair
    pa, pb, pc = a.save(tmp_path / "A"), b.save(tmp_path / "B"), tmp_path / "C"
    result = CliRunner().invoke(app, ["merge", str(pa), str(pb), "--alpha", "0.3", "--out", str(pc)])
    assert result.exit_code == 0, result.output
    merged = load_space(pc)
    assert merged.provenance["alpha"] == 0.3
    assert_same_weights(merged, mg.merge_spaces(a, b, 0.3))

    bad = CliRunner().invoke(app, ["merge", str(pa), str(pb), "--alpha", "1.3", "--out", str(tmp_path / "D")])
    assert bad.exit_code == 1 and "alpha must be in [0, 1]" in bad.output
    assert not (tmp_path / "D").exists()
    none = CliRunner().invoke(app, ["merge", str(pa), str(pb), "--out", str(tmp_path / "D")])
    assert none.exit_code == 1


@pytest.mark.slow
def test_sweep_numbers_equal_the_eval_report(space, tmp_path):
    """One name, one number: a sweep's column at alpha=0 is A's number in `omnibind eval` (same limit),
    Fashion-MNIST with its three templates included (merge used one template before)."""
    from omnibind.evaluate import datasets as ds
    from omnibind.evaluate import report as rep

    try:
        ds.fashion_mnist("test"), ds.tuxpaint_images("test")
    except ds.DataMissingError as exc:
        pytest.skip(str(exc))
    result = mg.sweep(space, space, [0], "tux-images", "fashion-mnist", limit=60, cache_root=tmp_path)
    report = rep.run(["default"], ["tux-images", "fashion-mnist"], limit=60, cache_root=tmp_path)
    row, tasks = result.rows[0], report["tasks"]
    fm = tasks["fashion-mnist"]["results"]["default"]["metrics"]
    tux = tasks["tux-images"]["results"]["default"]["metrics"]
    assert (result.x_metric, result.y_metric) == ("fashion-mnist/accuracy", "tux-images/caption->image/R@10")
    assert row["fashion-mnist/accuracy"] == fm["accuracy"] and row["fashion-mnist/top5_accuracy"] == fm["top5_accuracy"]
    for direction in ("caption->image", "image->caption"):
        for k in ("R@1", "R@5", "R@10", "MRR", "nDCG@10"):
            assert row[f"tux-images/{direction}/{k}"] == tux[direction][k], (direction, k)


def test_cli_sweep_runs_the_library_sweep(pair, stub_tasks, tmp_path):
    """`omnibind merge --alphas` parses, calls merge.sweep and prints its table and files."""
    from omnibind.cli import app

    a, b = pair
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    out = tmp_path / "sweep"
    result = CliRunner().invoke(app, ["merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out),
                                      "--alphas", "0,1", "--eval-general", "stub-general", "--eval-domain", "stub-domain"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "merge_sweep.json").read_text())
    assert [r["alpha"] for r in record["rows"]] == [0.0, 1.0]
    assert record["rows"][1]["stub-domain/accuracy"] == pytest.approx(80.0) and "merge_tradeoff.png" in result.output
    bad = CliRunner().invoke(app, ["merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out),
                                   "--alphas", "0,1", "--eval-general", "tux-test", "--eval-domain", "stub-domain"])
    assert bad.exit_code == 1 and "tux-test" in bad.output


@pytest.mark.slow
def test_merge_with_held_out_pairs_refits_the_moved_towers_calibration(tmp_path):
    """`omnibind merge --pairs`: the moved image tower's fits are dropped by the merge, then refit
    on the given pairs (Tux Paint *train* stamps, a manifest) with the merged space's vectors."""
    from omnibind.cli import app
    from omnibind.evaluate.datasets import DataMissingError, tuxpaint_images

    try:
        stamps = tuxpaint_images("train")[:40]
    except DataMissingError as exc:
        pytest.skip(str(exc))
    a = load_space("default")
    b = load_space("default")
    with torch.no_grad():
        b.towers["image"].head.correction[-1].weight.mul_(0.5)
    manifest = tmp_path / "held.jsonl"
    manifest.write_text("".join(json.dumps({"a": s.caption, "b": str(s.image)}) + "\n" for s in stamps))
    plain = mg.merge_spaces(a, b, 0.5)
    assert "text->image" not in plain.calibration and "image->text" not in plain.calibration
    result = CliRunner().invoke(app, ["merge", str(a.save(tmp_path / "A")), str(b.save(tmp_path / "B")), "--alpha", "0.5",
                                      "--out", str(tmp_path / "C"), "--pairs", str(manifest)])
    assert result.exit_code == 0, result.output
    merged = load_space(tmp_path / "C")
    assert {"text->image", "image->text"} <= set(merged.calibration)
    assert merged.calibration["text->audio"] == a.calibration["text->audio"]  # the audio tower did not move
    slope, *_ = merged.calibration["text->image"]
    assert slope > 0 and "refit on held.jsonl: image->text, text->image" in merged.provenance["calibration"]
    assert "refit on held.jsonl" in result.output
