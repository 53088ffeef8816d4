"""Metric layer of `omnibind eval`: hand-computed cases plus cross-checks against sklearn / scipy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from omnibind.evaluate import metrics as M

approx = lambda x: pytest.approx(x, abs=1e-6)  # noqa: E731

# 1 / log2(rank + 2) for 0-based ranks 0..5
D0, D1, D2, D3, D5 = 1.0, 0.6309297536, 0.5, 0.4306765581, 0.3562071871


# -- retrieval: hand-computed ---------------------------------------------------------------------


def test_retrieval_diagonal_by_hand():
    sims = np.array([[0.9, 0.1, 0.3],   # item 0 first      -> rank 0
                     [0.8, 0.5, 0.2],   # item 1 behind 0   -> rank 1
                     [0.7, 0.6, 0.1]])  # item 2 last       -> rank 2
    m = M.retrieval_metrics(sims, ks=(1, 2, 5))
    assert m["R@1"] == approx(100 / 3)
    assert m["R@2"] == approx(200 / 3)
    assert m["R@5"] == approx(100.0)
    assert m["MRR"] == approx(11 / 18)  # (1 + 1/2 + 1/3) / 3
    assert m["nDCG@10"] == approx((D0 + D1 + D2) / 3)  # one relevant item: ideal DCG = 1
    assert m["nDCG@10"] == approx(0.7103099)
    assert m["queries"] == 3


def test_retrieval_ties_count_against_query():
    sims = np.array([[0.5, 0.5, 0.1],   # item 1 ties relevant item 0 -> rank 1 (not 0)
                     [0.2, 0.7, 0.7],   # item 2 ties relevant item 1 -> rank 1
                     [0.3, 0.3, 0.3]])  # everything tied             -> rank 2
    m = M.retrieval_metrics(sims)
    assert m["R@1"] == 0.0
    assert m["R@5"] == 100.0
    assert m["MRR"] == approx(4 / 9)  # (1/2 + 1/2 + 1/3) / 3
    assert m["nDCG@10"] == approx((D1 + D1 + D2) / 3)
    assert m["nDCG@10"] == approx(0.5872865)


def test_retrieval_several_relevant_items():
    row = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]  # ranking is item order
    sims = np.array([row, row])
    # query 0: relevant at ranks 1, 3; query 1: relevant at ranks 0, 5. Ideal DCG (2 relevant) = D0 + D1
    m = M.retrieval_metrics(sims, [{1, 3}, {0, 5}], ks=(1, 2, 5))
    assert m["R@1"] == 50.0   # only query 1 has a relevant item at rank 0
    assert m["R@2"] == 100.0  # "any relevant in top K": query 0's item 1 suffices
    assert m["R@5"] == 100.0  # query 1 hit at rank 0 even though item 5 is outside the top 5
    assert m["MRR"] == approx((1 / 2 + 1) / 2)  # first relevant item only
    ndcg0 = (D1 + D3) / (D0 + D1)  # 0.6509209
    ndcg1 = (D0 + D5) / (D0 + D1)  # 0.8315546
    assert ndcg0 == approx(0.6509209) and ndcg1 == approx(0.8315546)
    assert m["nDCG@10"] == approx(0.7412378)


def test_retrieval_relevant_items_tied_with_each_other_are_not_penalised():
    sims = np.array([[0.5, 0.5, 0.1], [0.5, 0.5, 0.1]])
    both = M.retrieval_metrics(sims, [{0, 1}, {0, 1}])
    assert both["R@1"] == 100.0 and both["MRR"] == 1.0 and both["nDCG@10"] == approx(1.0)
    one = M.retrieval_metrics(sims, [{1}, {0}])  # the other tied item is not relevant -> rank 1
    assert one["R@1"] == 0.0 and one["MRR"] == 0.5 and one["nDCG@10"] == approx(D1)


def test_ndcg_ideal_dcg_is_capped_at_ten_items():
    sims = -np.arange(15.0)[None, :]  # item order is the ranking
    m = M.retrieval_metrics(sims, [set(range(12))])  # 12 relevant, all at the top
    assert m["nDCG@10"] == approx(1.0)
    m = M.retrieval_metrics(sims, [set(range(1, 13))])  # shifted by one: relevant at ranks 1..9 of the top 10
    # sum_{r=0..9} D(r) = 4.5435590; DCG = that - D0 = 3.5435590; ratio 0.7799082
    assert m["nDCG@10"] == approx(0.7799082)


def test_retrieval_query_without_relevant_items_raises():
    with pytest.raises(ValueError, match="query 1 "):
        M.retrieval_metrics(np.eye(3), [{0}, set(), {2}])
    with pytest.raises(ValueError, match="query 2 "):
        M.retrieval_metrics(np.eye(3), np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]]))


def test_retrieval_rejects_bad_input():
    with pytest.raises(ValueError, match="square"):
        M.retrieval_metrics(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="out of range"):
        M.retrieval_metrics(np.zeros((2, 3)), [{0}, {3}])
    with pytest.raises(ValueError, match="NaN"):
        M.retrieval_metrics(np.array([[np.nan, 0.0], [0.0, 1.0]]))


def test_relevance_forms_agree():
    rng = np.random.default_rng(1)
    sims = rng.normal(size=(6, 9))
    target = rng.integers(0, 9, 6)
    as_sets = M.retrieval_metrics(sims, [{int(t)} for t in target])
    as_array = M.retrieval_metrics(sims, target)
    mask = np.zeros((6, 9), dtype=bool)
    mask[np.arange(6), target] = True
    assert as_sets == as_array == M.retrieval_metrics(sims, mask)


def test_both_directions_transposes_relevance():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6]])
    # a @ b.T = [[1.0, 0.6, 0.8],     a0 relevant {b0, b1}: ranks 0 and 2
    #            [0.0, 0.8, 0.6]]     a1 relevant {b2}:     rank 1
    # reverse:  b0 -> {a0} rank 0; b1 -> {a0} (0.6 < 0.8) rank 1; b2 -> {a1} (0.6 < 0.8) rank 1
    out = M.retrieval_both_directions(a, b, [{0, 1}, {2}], "text", "image", ks=(1, 2))
    assert list(out) == ["text->image", "image->text"]
    fwd, rev = out["text->image"], out["image->text"]
    assert fwd["queries"] == 2 and rev["queries"] == 3
    assert fwd["R@1"] == 50.0 and fwd["R@2"] == 100.0
    assert fwd["MRR"] == approx(0.75)
    assert fwd["nDCG@10"] == approx(((D0 + D2) / (D0 + D1) + D1) / 2)
    assert fwd["nDCG@10"] == approx(0.7753253)
    assert rev["R@1"] == approx(100 / 3) and rev["R@2"] == 100.0
    assert rev["MRR"] == approx(2 / 3)
    assert rev["nDCG@10"] == approx(0.7539532)  # (D0 + 2 * D1) / 3


def test_both_directions_diagonal():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[0.0, 1.0], [1.0, 0.0]])  # every pair swapped: each relevant item comes last
    out = M.retrieval_both_directions(a, b, None, "x", "y", ks=(1,))
    assert out["x->y"]["R@1"] == 0.0 and out["y->x"]["R@1"] == 0.0
    assert out["x->y"]["MRR"] == 0.5 and out["y->x"]["MRR"] == 0.5


# -- retrieval: cross-checks on random data -------------------------------------------------------


def _random_relevance(rng: np.random.Generator, q: int, n: int) -> np.ndarray:
    """Masks from 1 up to ~half of the items per query, so some queries have more than 10."""
    mask = rng.random((q, n)) < rng.uniform(0.02, 0.5, size=(q, 1))
    mask[np.arange(q), rng.integers(0, n, q)] = True
    return mask


def _loop_first_rank(sims: np.ndarray, rel: set[int]) -> int:
    """Pessimistic rank of the best relevant item, the obvious way."""
    return min(sum(1 for j, s in enumerate(sims) if (j not in rel and s >= sims[r]) or (j in rel and s > sims[r]))
               for r in rel)


def test_ndcg_matches_sklearn():
    rng = np.random.default_rng(0)
    sims = rng.normal(size=(40, 60))  # continuous: no ties, where sklearn's tie averaging would differ
    mask = _random_relevance(rng, 40, 60)
    assert mask.sum(1).max() > 10 and mask.sum(1).min() < 10
    m = M.retrieval_metrics(sims, mask)
    assert m["nDCG@10"] == approx(skm.ndcg_score(mask.astype(int), sims, k=10))


@pytest.mark.parametrize("integer_scores", [False, True])
def test_mrr_and_recall_match_python_loop(integer_scores):
    rng = np.random.default_rng(2)
    sims = rng.integers(0, 4, size=(30, 25)).astype(float) if integer_scores else rng.normal(size=(30, 25))
    mask = _random_relevance(rng, 30, 25)
    rel = [set(np.flatnonzero(row).tolist()) for row in mask]
    ranks = np.array([_loop_first_rank(s, r) for s, r in zip(sims, rel)])
    m = M.retrieval_metrics(sims, rel, ks=(1, 3, 10))
    assert m["MRR"] == approx(np.mean([1 / (r + 1) for r in ranks]))
    for k in (1, 3, 10):
        assert m[f"R@{k}"] == approx(100 * np.mean(ranks < k))


def test_diagonal_with_many_ties_matches_the_rank_count():
    """The diagonal case (relevant=None) equals counting, per query, the items scored >= its own."""
    rng = np.random.default_rng(3)
    sims = rng.integers(0, 3, size=(50, 50)).astype(float)  # many ties
    m = M.retrieval_metrics(sims, ks=(1, 5, 10))
    own = np.diag(sims)[:, None]
    ranks = (sims > own).sum(1) + (sims == own).sum(1) - 1  # ties count against the query
    for k in (1, 5, 10):
        assert m[f"R@{k}"] == approx(100 * np.mean(ranks < k))
    assert m["MRR"] == approx(np.mean(1 / (ranks + 1)))


def test_chunking_does_not_change_results(monkeypatch):
    rng = np.random.default_rng(4)
    sims, mask = rng.normal(size=(23, 17)), _random_relevance(rng, 23, 17)
    whole = M.retrieval_metrics(sims, mask)
    monkeypatch.setattr(M, "_CHUNK", 5)
    assert M.retrieval_metrics(sims, mask) == pytest.approx(whole, abs=1e-12)


# -- classification -------------------------------------------------------------------------------


def test_classification_by_hand():
    scores = np.array([[0.9, 0.1, 0.0],   # true 0 -> pred 0
                       [0.2, 0.7, 0.1],   # true 0 -> pred 1
                       [0.6, 0.2, 0.1],   # true 0 -> pred 0
                       [0.1, 0.3, 0.6],   # true 1 -> pred 2
                       [0.5, 0.5, 0.0]])  # true 1 -> pred 0 (tie: lowest index, like argmax)
    m = M.classification_metrics(scores, np.array([0, 0, 0, 1, 1]), ["cat", "dog", "eel"])
    assert m["accuracy"] == approx(40.0)
    assert m["balanced_accuracy"] == approx(100 / 3)  # (2/3 + 0/2) / 2; "eel" has no samples
    assert m["per_class_accuracy"] == {"cat": approx(200 / 3), "dog": 0.0, "eel": None}
    assert m["confusion_matrix"] == [[2, 1, 0], [1, 0, 1], [0, 0, 0]]
    assert "top5_accuracy" not in m
    assert m["n"] == 5


def test_top5_by_hand_with_ties_broken_like_argmax():
    row = [0.6, 0.5, 0.4, 0.3, 0.2, 0.2]  # classes 4 and 5 tied at rank 4
    m = M.classification_metrics(np.array([row, row, row]), np.array([4, 5, 0]), list("abcdef"))
    assert m["top5_accuracy"] == approx(200 / 3)  # class 4 at rank 4 (in), class 5 at rank 5 (out), class 0 in
    assert m["accuracy"] == approx(100 / 3)


def test_classification_matches_sklearn():
    rng = np.random.default_rng(5)
    n_cls = 8
    labels = rng.integers(0, n_cls - 1, 300)  # class 7 never occurs
    scores = rng.normal(size=(300, n_cls)) + 1.5 * np.eye(n_cls)[labels]
    m = M.classification_metrics(scores, labels, [f"c{i}" for i in range(n_cls)])
    pred = scores.argmax(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns that class 7 is predicted but never true
        balanced = skm.balanced_accuracy_score(labels, pred)
    assert m["accuracy"] == approx(100 * skm.accuracy_score(labels, pred))
    assert m["balanced_accuracy"] == approx(100 * balanced)
    assert m["confusion_matrix"] == skm.confusion_matrix(labels, pred, labels=range(n_cls)).tolist()
    assert m["top5_accuracy"] == approx(100 * skm.top_k_accuracy_score(labels, scores, k=5, labels=range(n_cls)))
    recall = skm.recall_score(labels, pred, labels=range(n_cls - 1), average=None, zero_division=0)
    assert [m["per_class_accuracy"][f"c{i}"] for i in range(n_cls - 1)] == approx(list(100 * recall))
    assert m["per_class_accuracy"]["c7"] is None


def test_classification_rejects_bad_labels():
    with pytest.raises(ValueError):
        M.classification_metrics(np.zeros((2, 3)), np.array([0, 3]), ["a", "b", "c"])
    with pytest.raises(ValueError):
        M.classification_metrics(np.zeros((2, 3)), np.array([0, 1]), ["a", "b"])


def test_classification_uint8_labels_do_not_overflow():
    labels = np.array([0, 99, 50], dtype=np.uint8)
    scores = np.eye(100)[labels]
    m = M.classification_metrics(scores, labels, [str(i) for i in range(100)])
    assert m["accuracy"] == 100.0 and m["confusion_matrix"][99][99] == 1


# -- STS ------------------------------------------------------------------------------------------


def test_sts_by_hand():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = np.array([[2.0, 0.0], [3.0, 0.0], [1.0, 0.0]])  # unnormalised on purpose
    # cosines [1, 0, 1/sqrt 2]: same order as gold -> Spearman 100; Pearson by hand:
    # cos - mean = [.43096, -.56904, .13807], gold - mean = [2.5, -2.5, 0]
    # r = 2.5 / (sqrt(.52859) * sqrt(12.5)) = .97258
    m = M.sts_metrics(a, b, np.array([5.0, 0.0, 2.5]))
    assert m["spearman"] == approx(100.0)
    assert m["pearson"] == pytest.approx(97.258, abs=1e-3)
    assert m["n"] == 3
    assert M.sts_metrics(a, b, np.array([0.0, 5.0, 2.5]))["spearman"] == approx(-100.0)


def test_sts_zero_row_is_cosine_zero():
    a = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    b = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # cosines [0, 1, .70711] vs gold [1, 3, 2]: same order
    m = M.sts_metrics(a, b, np.array([1.0, 3.0, 2.0]))
    assert m["spearman"] == approx(100.0) and np.isfinite(m["pearson"])


def test_sts_matches_scipy():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(80, 16)) * 3, rng.normal(size=(80, 16))
    cos = np.array([x @ y / (np.linalg.norm(x) * np.linalg.norm(y)) for x, y in zip(a, b)])
    gold = 2.5 + 2 * cos + rng.normal(scale=0.5, size=80)
    m = M.sts_metrics(a, b, gold)
    assert m["spearman"] == approx(100 * stats.spearmanr(cos, gold).statistic)
    assert m["pearson"] == approx(100 * stats.pearsonr(cos, gold).statistic)


# -- Matryoshka -----------------------------------------------------------------------------------


def test_truncate():
    x = np.array([[3.0, 4.0, 12.0], [0.0, 0.0, 5.0], [1.0, 1.0, 1.0]])
    t = M.truncate(x, 2)
    assert t.shape == (3, 2)
    assert np.allclose(t[0], [0.6, 0.8])
    assert np.array_equal(t[1], [0.0, 0.0]) and not np.isnan(t).any()  # zero after truncation stays zero
    assert np.allclose(np.linalg.norm(t[[0, 2]], axis=1), 1.0)
    assert M.truncate(x.astype(np.float32), 3).dtype == np.float32
    with pytest.raises(ValueError):
        M.truncate(x, 4)
    with pytest.raises(ValueError):
        M.truncate(x, 0)


def test_matryoshka_curve_calls_per_dim_in_order():
    calls = []

    def metric(dim: int) -> float:
        calls.append(dim)
        return dim / 10

    assert M.matryoshka_curve(metric, [64, 8, 32]) == [(64, 6.4), (8, 0.8), (32, 3.2)]
    assert calls == [64, 8, 32]


def test_matryoshka_curve_on_truncated_retrieval():
    # the first coordinate alone cannot tell items 0 and 1 apart; both coordinates can
    x = np.array([[1.0, 1.0], [1.0, -1.0]])
    curve = M.matryoshka_curve(lambda d: M.retrieval_metrics(M.truncate(x, d) @ M.truncate(x, d).T)["R@1"], [1, 2])
    assert curve == [(1, 0.0), (2, 100.0)]
