"""The evaluation suite's plumbing: flat scores for sweeps, shared feature caches, prompt templates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from omnibind import modalities
from omnibind.errors import OmnibindError
from omnibind.evaluate import suite
from omnibind.evaluate.suite import FeatureCaches, TaskResult, scalar_metrics
from omnibind.tower import Tower


def test_scalar_metrics_put_the_headline_first_and_drop_sizes():
    retrieval = TaskResult("t", "retrieval", {}, {
        "caption->image": {"R@1": 30.0, "R@5": 50.0, "R@10": 61.0, "MRR": 0.4, "nDCG@10": 0.45, "queries": 223},
        "image->caption": {"R@1": 28.0, "R@5": 48.0, "R@10": 60.0, "MRR": 0.38, "nDCG@10": 0.42, "queries": 223}})
    flat = scalar_metrics(retrieval)
    assert list(flat)[:2] == ["caption->image/R@10", "caption->image/R@1"] and len(flat) == 10
    assert flat["image->caption/MRR"] == 0.38 and not any("queries" in k for k in flat)
    classification = TaskResult("c", "classification", {}, {
        "accuracy": 24.7, "balanced_accuracy": 24.6, "per_class_accuracy": {"bag": 50.0},
        "confusion_matrix": [[1]], "top5_accuracy": 70.0, "n": 10000})
    assert scalar_metrics(classification) == {"accuracy": 24.7, "balanced_accuracy": 24.6, "top5_accuracy": 70.0}
    sts = TaskResult("s", "sts", {}, {"spearman": 82.0, "pearson": 82.7, "n": 1379})
    assert list(scalar_metrics(sts).items()) == [("spearman", 82.0), ("pearson", 82.7)]


class FakeBackbone:
    outputs = {"embedding": 4}
    flush_batches = 1

    def __init__(self, modality: str) -> None:
        self.ref, self.modality = "hf:both", modality

    def preprocess_config(self) -> dict:
        return {}


def test_feature_caches_are_per_backbone_and_modality(tmp_path: Path):
    """One `hf:` checkpoint serving text and image must not share one cache (it computes with its backbone)."""
    from omnibind.heads import LinearHead

    head = LinearHead("embedding", 4, 4)
    text = Tower("text", "hf:both", head, _backbone=FakeBackbone("text"))
    image = Tower("image", "hf:both", head, _backbone=FakeBackbone("image"))
    caches = FeatureCaches(tmp_path)
    assert caches.for_tower(text) is caches.for_tower(text) is not caches.for_tower(image)
    assert caches.for_tower(image).backbone.modality == "image"


def test_score_runs_the_named_tasks_once_each(monkeypatch, space):
    calls = []

    def fake(embed, limit):
        calls.append(limit)
        return TaskResult("fake", "sts", {}, {"pearson": 1.0, "spearman": 2.0, "n": 3})

    monkeypatch.setitem(suite.TASKS, "fake", fake)
    assert suite.score(space, ["fake", "fake"], limit=5) == {"fake": {"spearman": 2.0, "pearson": 1.0}}
    assert calls == [5]
    with pytest.raises(OmnibindError, match="unknown task 'fashion-mnist-test'"):
        suite.score(space, ["fashion-mnist-test"])


def test_folder_task_prompts_with_the_modality_tables_templates(tmp_path: Path, monkeypatch):
    from conftest import write_wav

    for label in ("low_hum", "rain"):
        (tmp_path / label).mkdir()
        write_wav(tmp_path / label / "1.wav", 0.5, 200)
    asked: list[tuple[str, list]] = []

    class Recorder:
        space = type("S", (), {"dim": 8, "towers": {"text": None, "audio": None}})()

        def __call__(self, objs, modality):
            asked.append((modality, list(objs)))
            return np.random.default_rng(len(objs)).standard_normal((len(objs), 8)).astype(np.float32)

    result = suite.folder_task(str(tmp_path))(Recorder(), None)
    prompts = [t.format(n) for n in ("low hum", "rain") for t in modalities.templates("audio")]
    assert asked[0] == ("text", prompts) and asked[1][0] == "audio"
    assert result.metrics["n"] == 2


def test_evaluation_never_imports_merge_or_the_cli():
    """merge builds on evaluate, never the reverse (function-level imports count too): no cycle."""
    import ast

    root = Path(suite.__file__).parent
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) and node.module
                     else [])
            bad = [n for n in names if n.startswith(("omnibind.merge", "omnibind.cli"))]
            assert not bad, f"{path.name} imports {bad}"


def test_keyword_rank_metrics_name_what_the_report_reads():
    import math

    from omnibind.evaluate.keywords import rank_metrics

    m = rank_metrics([1, 2, None, 7])
    assert (m["R@1"], m["R@5"], m["R@10"], m["queries"]) == (25.0, 50.0, 75.0, 4)
    assert m["MRR"] == round((1 + 1 / 2 + 1 / 7) / 4, 4)
    assert m["nDCG@10"] == round((1 + 1 / math.log2(3) + 1 / math.log2(8)) / 4, 4)
