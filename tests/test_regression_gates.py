"""Quality gates near the measured numbers: the shipped `default` must not lose what it measures.

test_real_data.py only proves "above chance" (losing the trained image head passes it). These
gates sit a little under the numbers in README.md's results table (written by `omnibind eval`),
and they are computed by the very same code: `omnibind.evaluate.suite.score(space, [task],
limit=None)`, the whole test split of each task.

| gate | measured (README) | floor |
|---|---|---|
| default tux-images caption->image R@10 (n=223) | 66.4 | 64.0 |
| default tux-images image->caption R@10 | 61.4 | 59.0 |
| default tux-images caption->image R@1 | 34.1 | 32.0 |
| default - bridge, tux-images caption->image R@10 | 66.4 - 61.9 | >= 3 points |
| bridge tux-images caption->image R@10 | 61.9 | 59.5 |
| tux-sounds caption->sound R@10 (n=52; one sound = 1.9 points) | 44.2 | 40.0 |
| tux-sounds caption->sound R@1 (ConSE without its temperature: 9.6) | 15.4 | 13.0 |
| default fashion-mnist zero-shot accuracy (n=10,000) | 33.4 | 31.5 |
| default - bridge, fashion-mnist accuracy (out of domain: the head must not lower it beyond noise) | 33.4 - 33.5 | >= -0.5 points |
| sts-b Spearman x100 (n=1,379) | 82.0 | 81.5 |

A deliberate change that moves a number (a retrained default) updates README.md with `make eval`
and these floors in the same commit.

Runtime: backbone features go through the feature cache ($OMNIBIND_CACHE or ~/.cache/omnibind/
features), shared by both spaces here: a warm run takes ~13 s; a cold one (empty cache, ONNX
exports included) took 96 s on the 2-core dev machine, 65 s of it the 10,000 Fashion-MNIST images.
`make eval` warms the same cache.
"""

from __future__ import annotations

import functools

import pytest

from omnibind.evaluate import datasets as ds
from omnibind.evaluate.suite import FeatureCaches, score

pytestmark = pytest.mark.slow

MISSING = {
    "tux-images": ds.TUXPAINT_ROOT, "tux-sounds": ds.TUXPAINT_ROOT,
    "fashion-mnist": ds.FASHION_MNIST_ROOT / "t10k-images-idx3-ubyte.gz",
}


@pytest.fixture(scope="module")
def scores():
    """scores(space, task) -> the task's scalar metrics, each (space, task) computed once."""
    import omnibind

    caches = FeatureCaches()  # one cache per backbone, shared by default and bridge
    spaces = {name: omnibind.load_space(name) for name in ("default", "bridge")}

    @functools.cache
    def run(space: str, task: str) -> dict[str, float]:
        path = MISSING.get(task)
        if path is not None and not path.exists():
            pytest.skip(f"{task}: {path} is missing (scripts/get-eval-data.sh)")
        try:
            return score(spaces[space], [task], limit=None, caches=caches)[task]
        except ds.DataMissingError as exc:
            pytest.skip(str(exc))

    return run


def test_tux_images_default(scores):
    r = scores("default", "tux-images")
    assert r["caption->image/R@10"] >= 64.0, r
    assert r["image->caption/R@10"] >= 59.0, r
    assert r["caption->image/R@1"] >= 32.0, r


def test_tux_images_default_beats_bridge(scores):
    d, b = scores("default", "tux-images"), scores("bridge", "tux-images")
    assert b["caption->image/R@10"] >= 59.5, b
    assert d["caption->image/R@10"] - b["caption->image/R@10"] >= 3.0, (d, b)


@pytest.mark.parametrize("space", ["default", "bridge"])
def test_tux_sounds(scores, space):
    r = scores(space, "tux-sounds")
    assert r["caption->sound/R@10"] >= 40.0, r
    assert r["caption->sound/R@1"] >= 13.0, r


def test_fashion_mnist_zero_shot(scores):
    d, b = scores("default", "fashion-mnist"), scores("bridge", "fashion-mnist")
    assert d["accuracy"] >= 31.5, d
    # out of domain: the trained head must not lower it beyond noise (measured -0.12: 12 images of 10,000)
    assert d["accuracy"] - b["accuracy"] >= -0.5, (d, b)


def test_sts_b(scores):
    pytest.importorskip("scipy")
    assert scores("default", "sts-b")["spearman"] >= 81.5
