"""Smoke run of benchmarks/views_search.py's functions on three generated long notes: ingest through
the product path, then the fusions recomputed from the rows must agree with `search`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOPICS = {
    "boats.txt": ["The sailing boat left the harbour at dawn.", "Sailors trimmed the jib in a stiff breeze.",
                  "The keel cut through the grey waves of the bay."],
    "bread.txt": ["Knead the dough until it is smooth and elastic.", "Leave the loaf to rise near a warm oven.",
                  "Bake the sourdough bread until the crust is brown."],
    "stars.txt": ["The telescope pointed at a distant galaxy.", "Astronomers measured the light of a supernova.",
                  "Saturn's rings were visible through the eyepiece."],
}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("views_search", ROOT / "benchmarks" / "views_search.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["views_search"] = module  # dataclasses resolve string annotations through it
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(scope="module")
def ingested(bench, tmp_path_factory):
    src = tmp_path_factory.mktemp("notes")
    files = []
    for name, sentences in TOPICS.items():
        path = src / name
        path.write_text(" ".join(sentences * 40), "utf-8")  # long enough for several chunks
        files.append(path)
    return bench.ingest_fresh(files, tmp_path_factory.mktemp("e2e"))


def test_ingest_makes_items_with_chunk_segments(ingested):
    collection, stats = ingested
    assert stats["items"] == 3 and stats["failed"] == 0
    assert stats["segments"] >= 6  # each note is cut into chunks
    assert stats["items_per_s"] > 0


def test_fusions_recomputed_agree_with_search(bench, ingested):
    from omnibind.search import search

    collection, _ = ingested
    rows = bench.load_rows(collection, "text")
    assert sorted(rows.names) == sorted(TOPICS)
    for query, want in (("baking a loaf of bread", "bread.txt"), ("a galaxy seen by astronomers", "stars.txt"),
                        ("sailors on a boat", "boats.txt")):
        hits = search(collection, query, k=10)
        fz = bench.query_fusions(collection, rows, query, "text")
        assert bench.name_of(hits[0]) == want
        assert [rows.names[i] for i in fz["library"][0]] == [bench.name_of(h) for h in hits]
        for order, where in fz.values():
            assert rows.names[order[0]] == want
            assert not rows.is_item[where[order[0]]]  # the location is a segment row


def test_fused_scores_by_rule(bench):
    rows = bench.Rows(["x", "y"], np.array([0, 0, 0, 1, 1]), np.array([True, False, False, True, False]),
                      np.array(["text"] * 5, dtype=object), *(np.full(5, np.nan) for _ in range(3)), np.zeros((5, 2)))
    keys = np.array([5.0, 1.0, 0.0, 3.0, 2.9])
    fz = bench.fused(rows, keys)
    assert fz["library"][0] == [0, 1]  # max over all rows: x's item row 5 > 3
    assert fz["seg_max"][0] == [1, 0]  # segments only: y 2.9 > x 1.0
    assert fz["top2_mean"][0] == [0, 1]  # (5 + 1) / 2 = 3 > (3 + 2.9) / 2
    assert fz["library"][1] == {0: 1, 1: 4}


def test_metrics_and_markdown(bench, tmp_path):
    assert bench.rank_of([2, 0, 1], 0) == 2 and bench.rank_of(list(range(20)), 15) is None
    r = bench.recalls([1, 3, None, 10])
    assert (r["r1"], r["r5"], r["r10"]) == (25.0, 50.0, 75.0)
    assert r["mrr"] == pytest.approx(100 * (1 + 1 / 3 + 1 / 10) / 4)
    assert bench.centre(2.0, 4.0) == 3.0 and bench.centre(2.0, None) == 2.0 and bench.centre(None, None) is None
    doc = tmp_path / "r.md"
    doc.write_text("# T\n\nbefore\n\n" + bench.MARK_BEGIN + "\nold\n" + bench.MARK_END + "\n\nafter\n", "utf-8")
    bench.write_markdown(doc, bench.MARK_BEGIN + "\nnew\n" + bench.MARK_END)
    text = doc.read_text("utf-8")
    assert "new" in text and "old" not in text and "before" in text and "after" in text
