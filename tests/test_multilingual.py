"""The multilingual pieces: the stacked text backbone, the agreement-gated head, the distilled
student, the USE backbone, and the shipped `multilingual` space (English unchanged, French found)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnibind.backbones import load_backbone
from omnibind.backbones.base import Backbone
from omnibind.backbones.registry import register, unregister
from omnibind.bind.text_student import merge_mlp_heads, train_student
from omnibind.errors import InputError, SpaceError
from omnibind.heads import GatedMapHead, IdentityHead, LinearHead, MLPHead, build_head
from omnibind.inputs import Text, to_input


class _Toy(Backbone):
    """A text backbone whose features are a fixed hash of the text (and `cuts` segments per text)."""

    modality = "text"

    def __init__(self, ref: str, width: int, cuts: int = 1) -> None:
        self.ref, self.outputs, self.cuts = ref, {"embedding": width}, cuts

    def segments(self, item):
        for i in range(self.cuts):
            yield f"{item.payload}#{i}"

    def collate(self, segments):
        return list(segments)

    def features(self, batch):
        rows = [np.random.default_rng(abs(hash(s)) % 2**32).standard_normal(self.outputs["embedding"]) for s in batch]
        return {"embedding": torch.tensor(np.stack(rows), dtype=torch.float32)}


@pytest.fixture
def toys():
    register("toy-a", "text")(lambda _, m: _Toy("toy-a", 4))
    register("toy-b", "text")(lambda _, m: _Toy("toy-b", 6))
    register("toy-c", "text")(lambda _, m: _Toy("toy-c", 6, cuts=2))
    yield
    for name in ("toy-a", "toy-b", "toy-c"):
        unregister(name)


def test_stack_gives_each_member_its_own_features(toys):
    stack = load_backbone("stack:toy-a,toy-b", "text")
    assert stack.outputs == {"toy-a": 4, "toy-b": 6}
    segs = [s for t in ("one", "two") for s in stack.segments(to_input(Text(t)))]
    got = stack.features(stack.collate(segs))
    alone = load_backbone("toy-b", "text")
    want = alone.features(alone.collate([s for t in ("one", "two") for s in alone.segments(to_input(Text(t)))]))
    assert torch.equal(got["toy-b"], want["embedding"]) and got["toy-a"].shape == (2, 4)


def test_stack_refuses_members_that_cut_differently(toys):
    with pytest.raises(InputError, match="segments"):
        list(load_backbone("stack:toy-a,toy-c", "text").segments(to_input(Text("x"))))


def _gated(direct: torch.Tensor, mapped: torch.Tensor) -> torch.Tensor:
    """A gated head whose map is the identity on 3-d features: `mapped` is what it maps."""
    head = GatedMapHead("b", 3, 3, direct=IdentityHead("a", 3).config(), map=LinearHead("b", 3, 3).config())
    with torch.no_grad():
        head.map.proj.weight.copy_(torch.eye(3))
        head.map.proj.bias.zero_()
    return torch.nn.functional.normalize(head({"a": direct, "b": mapped}), dim=-1)


def test_gate_keeps_the_direct_vector_where_the_encoders_agree():
    d = torch.tensor([[1.0, 0.0, 0.0]])
    m = torch.nn.functional.normalize(torch.tensor([[1.0, 0.6, 0.0]]), dim=-1)  # cosine 0.86
    assert torch.allclose(_gated(d, m), d, atol=1e-3)


def test_gate_follows_the_mapped_vector_where_they_disagree():
    d = torch.tensor([[1.0, 0.0, 0.0]])
    m = torch.tensor([[0.0, 0.0, 1.0]])  # cosine 0: the anchor cannot read this text
    assert torch.allclose(_gated(d, m), m, atol=5e-3)


def test_gated_head_round_trips_through_its_config():
    head = GatedMapHead("b", 3, 2, direct=LinearHead("a", 2, 2).config(), map=MLPHead("b", 3, 2, hidden=4).config(),
                        keep_threshold=0.6)
    again = build_head(head.config())
    again.load_state_dict(head.state_dict())
    x = {"a": torch.randn(5, 2), "b": torch.randn(5, 3)}
    assert torch.allclose(head.eval()(x), again.eval()(x))
    with pytest.raises(SpaceError, match="map reads"):
        GatedMapHead("b", 3, 2, direct=IdentityHead("a", 2).config(), map=MLPHead("c", 3, 2).config())


def test_merged_heads_compute_the_mean_of_their_members():
    torch.manual_seed(0)
    heads = [MLPHead("x", 5, 3, hidden=4).eval() for _ in range(3)]
    for h in heads:  # LayerNorm scale and shift away from (1, 0), so folding them is tested
        torch.nn.init.normal_(h.net[0].weight)
        torch.nn.init.normal_(h.net[0].bias)
    x = {"x": torch.randn(7, 5)}
    merged = merge_mlp_heads(heads)
    assert merged.hidden == 12
    assert torch.allclose(merged(x), torch.stack([h(x) for h in heads]).mean(0), atol=1e-5)


def test_student_learns_a_map_it_was_not_told():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 8))
    x = rng.standard_normal((1200, 16)).astype(np.float32)
    y = np.tanh(x @ w / 4)  # a nonlinear teacher
    head = train_student(x[:1000], y[:1000], seeds=(0,), hidden=64, epochs=15, batch_size=100)
    with torch.no_grad():
        pred = torch.nn.functional.normalize(head({"embedding": torch.tensor(x[1000:])}), dim=-1).numpy()
    target = y[1000:] / np.linalg.norm(y[1000:], axis=1, keepdims=True)
    cos = (pred * target).sum(1).mean()
    chance = (pred * np.roll(target, 1, axis=0)).sum(1).mean()
    assert cos > 0.75 and chance < 0.2, (cos, chance)  # measured: 0.82 and 0.04


def test_use_reads_languages_into_one_space():
    use = load_backbone("use-multilingual", "text")
    texts = ["a black cat sleeping", "un chat noir qui dort", "ein schwarzer Hund bellt", "the stock market fell"]
    f = use.features(use.collate([next(use.segments(to_input(Text(t)))) for t in texts]))["embedding"].numpy()
    sims = f @ f.T
    assert sims[0, 1] > sims[0, 2] > sims[0, 3]


@pytest.mark.slow
def test_multilingual_space_keeps_english_and_finds_french():
    from omnibind.space import load_space

    multi, default = load_space("multilingual"), load_space("default")
    english = ["a red apple on a table", "a dog running on the beach", "an old steam train"]
    assert np.allclose(multi.embed(english), default.embed(english), atol=0.02)  # English unchanged
    french = ["une pomme rouge sur une table", "un chien qui court sur la plage", "un vieux train à vapeur"]
    right = (multi.embed(french) @ default.embed(english).T).argmax(1)
    assert list(right) == [0, 1, 2]
    wrong = (default.embed(french) @ default.embed(english).T)
    assert (multi.embed(french) * default.embed(english)).sum(1).mean() > np.diag(wrong).mean() + 0.1


def test_stamp_translations_reads_the_translators_lines(tmp_path):
    from omnibind.evaluate import datasets as ds

    (tmp_path / "animals").mkdir()
    (tmp_path / "animals" / "cat.txt").write_text(
        "A cat.\nfr.utf8=Un  chat.\nzh_CN.utf8=一只猫。\nca@valencia.utf8=Un gat.\nde.utf8=\nnot a translation\n", "utf-8")
    stamp = ds.Stamp("animals/cat", "A cat.", None, None)
    assert ds.stamp_translations(stamp, tmp_path) == {"fr": "Un chat.", "zh_CN": "一只猫。", "ca@valencia": "Un gat."}


def test_language_rows_show_each_languages_share_of_english():
    from omnibind.evaluate.report import headline_rows

    metrics = {f"{lang} caption->image": {"R@1": 1.0, "R@5": 2.0, "R@10": r, "MRR": 0.1, "nDCG@10": 0.1,
                                          "queries": 9, "share of en": round(100 * r / 60.0, 1)}
               for lang, r in (("en", 60.0), ("fr", 41.9))}
    report = {"spaces": [{"ref": "multilingual"}], "tasks": {"tux-languages": {
        "kind": "retrieval", "dataset": {"n": 10}, "results": {"multilingual": {"metrics": metrics, "extra": {}}}}}}
    rows = headline_rows(report)
    assert [(label, values["multilingual"]) for _, label, values in rows] == [
        ("en caption→image R@10, % of en (n=9)", "60.0 (100.0%)"), ("fr caption→image R@10, % of en (n=9)", "41.9 (69.8%)")]


@pytest.mark.slow
def test_tux_languages_task_on_real_stamps(tmp_path):
    from omnibind.evaluate import datasets as ds
    from omnibind.evaluate.suite import score
    from omnibind.space import load_space

    if not ds.TUXPAINT_ROOT.is_dir():
        pytest.skip("tuxpaint-stamps-default is not installed")
    got = {name: score(load_space(name), ["tux-languages"], limit=80, caches=tmp_path)["tux-languages"]
           for name in ("default", "multilingual")}
    fr, en = "fr caption->image/R@10", "en caption->image/R@10"
    assert got["multilingual"][fr] > got["default"][fr] + 10, got
    assert abs(got["multilingual"][en] - got["default"][en]) <= 3, got


def _translating_head(weight: float = 1.0) -> GatedMapHead:
    """Identity map and direct head on 3-d features; translations under keys t1, t2."""
    head = GatedMapHead("b", 3, 3, direct=IdentityHead("a", 3).config(), map=LinearHead("b", 3, 3).config(),
                        translation_keys=["t1", "t2"], translation_weight=weight)
    with torch.no_grad():
        head.map.proj.weight.copy_(torch.eye(3))
        head.map.proj.bias.zero_()
    return head.eval()


def test_the_translation_that_agrees_is_added_and_the_others_are_not():
    head = _translating_head()
    d, m = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0]])  # the anchor cannot read it
    good = torch.nn.functional.normalize(torch.tensor([[0.0, 0.6, 1.0]]), dim=-1)  # agrees with m (0.86)
    wrong = torch.tensor([[0.0, 1.0, 0.0]])  # a "translation" from the wrong language pair
    out = head({"a": d, "b": m, "t1": wrong, "t2": good})
    assert torch.allclose(out, m + good, atol=5e-3)
    none = head({"a": d, "b": m, "t1": torch.zeros(1, 3), "t2": wrong})  # not installed / disagreeing
    assert torch.allclose(none, m, atol=5e-3)
    english = head({"a": d, "b": d, "t1": good, "t2": good})  # agreement 1: the anchor reads it
    assert torch.allclose(english, d, atol=1e-3)
    again = build_head(head.config())
    again.load_state_dict(head.state_dict())
    assert torch.allclose(again.eval()({"a": d, "b": m, "t1": wrong, "t2": good}), out)


apertium = pytest.mark.skipif(not __import__("shutil").which("apertium"), reason="apertium is not installed")


@apertium
def test_apertium_translates_spanish_and_french_into_english_for_the_reader():
    from omnibind.backbones.apertium import translate

    assert translate(["Un gato negro.", "Un perro."], ("spa-eng",)) == ["A black cat.", "A dog."]
    hostile = ["línea uno\nlínea dos", "^*$[]\\{}<b>", "", "x" * 5000]
    out = translate(hostile, ("spa-eng",))
    assert out is not None and len(out) == len(hostile)  # one line in, one line out, whatever the text
    back = load_backbone("apertium:minilm", "text")
    f = back.features(back.collate([next(back.segments(to_input(Text(t)))) for t in ("Un chat noir.", "A black cat.")]))
    reader = load_backbone("minilm", "text")
    cat = reader.features(reader.collate(["A black cat."]))["embedding"][0]
    assert torch.nn.functional.cosine_similarity(f["fra-eng"][0], cat, dim=0) > 0.9


def test_missing_apertium_gives_zero_rows_not_an_error(monkeypatch):
    from omnibind.backbones import apertium as ap

    monkeypatch.setattr(ap, "installed_modes", lambda: set())
    with pytest.warns(UserWarning, match="apt-get install"):
        back = ap.ApertiumBackbone("minilm")
    f = back.features(["Un gato."])
    assert set(f) == set(ap.CHAINS) and all(float(v.abs().sum()) == 0 for v in f.values())
