"""Weight-interpolation merging: tiny spaces whose backbones are never loaded (fast)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from omnibind import merge as mg
from omnibind.errors import SpaceError
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


def assert_same_weights_tower(x: Space, y: Space, modality: str) -> None:
    sx, sy = x.towers[modality].head.state_dict(), y.towers[modality].head.state_dict()
    assert all(torch.equal(sx[k], sy[k]) for k in sx)


def test_sweep_evaluates_once_per_alpha_in_order(pair):
    a, b = pair
    seen = []

    def evaluate(space):
        seen.append(space.provenance["alpha"])
        return {"mean": space.towers["text"].head.proj.weight.mean().item(), "n": 1}

    progressed = []
    rows = mg.sweep(a, b, [1, 0, 0.5], evaluate, progress=progressed.append)
    assert seen == [1.0, 0.0, 0.5] and [r["alpha"] for r in rows] == seen and progressed == rows
    assert list(rows[0]) == ["alpha", "mean", "n"]
    ma, mb = (s.towers["text"].head.proj.weight.mean().item() for s in (a, b))
    assert rows[0]["mean"] == mb and rows[1]["mean"] == ma
    assert rows[2]["mean"] == pytest.approx((ma + mb) / 2, abs=1e-6)
    with pytest.raises(ValueError):
        mg.sweep(a, b, [0, 2], evaluate)
    assert len(seen) == 3  # alphas are checked before any evaluation


def test_plot_tradeoff_writes_png(tmp_path):
    rows = [{"alpha": x, "domain/acc": 50 + 30 * x, "general/R@10": 40 - 10 * x * x} for x in np.linspace(0, 1, 6)]
    out = mg.plot_tradeoff(rows, "domain/acc", "general/R@10", tmp_path / "plots" / "t.png", "trade-off")
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    tied = [{"alpha": a, "x": 1.0, "y": 2.0} for a in (0.4, 0.5)] + [{"alpha": 1.0, "x": float("nan"), "y": 3.0}]
    assert mg.plot_tradeoff(tied, "x", "y", tmp_path / "tied.png", "ties").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="missing"):
        mg.plot_tradeoff(rows, "nope", "general/R@10", tmp_path / "x.png", "t")


def test_eval_registry_signatures():
    assert set(mg.EVALS) == {"tux-test", "fashion-mnist-test"}
    for fn in mg.EVALS.values():
        params = inspect.signature(fn).parameters
        assert list(params)[:2] == ["space", "limit"]
    assert inspect.signature(mg.EVALS["fashion-mnist-test"]).parameters["limit"].default == 2000


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

    def features(self, batch):
        self.calls += 1
        rows = [torch.from_numpy(np.random.default_rng(sum(map(ord, s))).standard_normal(384).astype(np.float32)) for s in batch]
        return {"embedding": torch.stack(rows)}

    flush_batches = 1


def test_embed_cached_matches_embed_and_reuses_features(pair):
    a, b = pair
    backbone = CountingBackbone()
    for s in (a, b):
        s.towers["text"]._backbone = backbone
    texts = ["a red circle", "two dogs", "a very long sentence about a cat", "x"]
    mg.clear_feature_cache()
    try:
        ea = mg.embed_cached(a, "text", "t", lambda: texts, batch_size=3)
        assert np.allclose(ea, a.embed(texts), atol=1e-6)
        calls = backbone.calls
        eb = mg.embed_cached(b, "text", "t", lambda: pytest.fail("features should be cached"), batch_size=3)
        assert backbone.calls == calls and np.allclose(eb, b.embed(texts), atol=1e-6)
        merged = mg.merge_spaces(a, b, 0.5)
        assert merged.towers["text"].backbone is backbone  # the loaded backbone is shared
    finally:
        mg.clear_feature_cache()


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


def test_cli_sweep_with_stub_evaluators(pair, tmp_path, monkeypatch):
    from omnibind.cli import app

    a, b = pair
    pa, pb, pc = a.save(tmp_path / "A"), b.save(tmp_path / "B"), tmp_path / "C"
    calls = []

    def general(space, limit=None):
        calls.append(("general", space.provenance["alpha"], limit))
        return {"R@10": 40 - 10 * space.provenance["alpha"], "MRR": 0.3}

    def domain(space, limit=2000):
        calls.append(("domain", space.provenance["alpha"], limit))
        return {"accuracy": 50 + 30 * space.provenance["alpha"]}

    monkeypatch.setitem(mg.EVALS, "stub-general", general)
    monkeypatch.setitem(mg.EVALS, "stub-domain", domain)
    args = ["merge", str(pa), str(pb), "--alphas", "0,0.5,1", "--eval-general", "stub-general",
            "--eval-domain", "stub-domain", "--limit", "7", "--out", str(pc)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [c[1] for c in calls if c[0] == "general"] == [0.0, 0.5, 1.0] and {c[2] for c in calls} == {7}
    record = json.loads((pc / "merge_sweep.json").read_text())
    assert record["x_metric"] == "stub-domain/accuracy" and record["y_metric"] == "stub-general/R@10"
    assert [r["alpha"] for r in record["rows"]] == [0.0, 0.5, 1.0]
    assert record["rows"][2]["stub-domain/accuracy"] == 80.0
    assert record["a"]["heads_sha256"] == mg.heads_sha256(a)
    assert (pc / "merge_tradeoff.png").read_bytes()[:8] == PNG_MAGIC
    assert not (pc / "space.json").exists()  # a sweep alone writes no space

    unknown = CliRunner().invoke(app, [*args[:5], "--eval-general", "nope", "--eval-domain", "stub-domain", "--out", str(pc)])
    assert unknown.exit_code == 1 and "unknown evaluation set 'nope'" in unknown.output
