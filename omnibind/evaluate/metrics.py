"""Every evaluation metric in omnibind: retrieval, zero-shot classification, STS and Matryoshka curves.

`omnibind eval`, `omnibind merge --alphas` and the tests all score through these functions, so one
name means one number. Pure numpy (plus scipy for rank correlation) on precomputed embeddings or score matrices, so the
same numbers come out whatever produced the embeddings, and every metric can be checked against a
reference implementation (scikit-learn, scipy) in the tests. Results are plain Python floats, ints
and lists so a report can be written as JSON as is.

Conventions follow MTEB / CLIP_benchmark: recalls and accuracies in percent, MRR and nDCG in 0..1,
correlations x100.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

Relevance = list[set[int]] | np.ndarray | None

NDCG_K = 10
_CHUNK = 512  # queries ranked at once: bounds the (queries x items) sort buffers on large sets


# -- retrieval --------------------------------------------------------------------------------------


def _relevance_mask(relevant: Relevance, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (queries x items) mask from any accepted relevance form, so one code path ranks all.

    None: item i is query i's single relevant item (square sims). A list of sets: item indices per
    query. A 2-D array: a 0/1 or boolean mask. A 1-D integer array: one relevant item per query.
    """
    q, n = shape
    if relevant is None:
        if q != n:
            raise ValueError(f"relevant=None means the diagonal, which needs a square matrix; got {q}x{n}")
        return np.eye(n, dtype=bool)
    if isinstance(relevant, np.ndarray) and relevant.ndim == 2:
        if relevant.shape != (q, n):
            raise ValueError(f"relevance mask has shape {relevant.shape}, similarities {shape}")
        return relevant.astype(bool)
    if isinstance(relevant, np.ndarray) and relevant.ndim == 1:
        relevant = [{int(j)} for j in relevant]
    if len(relevant) != q:
        raise ValueError(f"relevance given for {len(relevant)} queries, similarities have {q}")
    mask = np.zeros((q, n), dtype=bool)
    for i, items in enumerate(relevant):
        idx = np.fromiter((int(j) for j in items), dtype=np.int64, count=len(items))
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"query {i}: relevant item index out of range 0..{n - 1}")
        mask[i, idx] = True
    return mask


def _sorted_relevance(sims: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Relevance of each query's items in ranked order (best first).

    Order: score descending; among equal scores non-relevant items first (ties count against the
    query, so a constant or collapsed model cannot score well), then item index, so the result is
    deterministic.
    """
    idx = np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
    order = np.lexsort((idx, mask, -sims), axis=-1)
    return np.take_along_axis(mask, order, axis=1)


def _query_scores(ranked: np.ndarray, n_relevant: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-query hit@K, reciprocal rank and nDCG@10 from ranked relevance rows."""
    first = ranked.argmax(axis=1)  # every query has a relevant item, so this is its first position
    discount = 1.0 / np.log2(np.arange(NDCG_K) + 2.0)
    top = ranked[:, :NDCG_K]
    dcg = top @ discount[: top.shape[1]]
    ideal = np.cumsum(discount)[np.minimum(n_relevant, NDCG_K) - 1]
    out = {f"R@{k}": first < k for k in ks}
    out["MRR"] = 1.0 / (first + 1.0)
    out[f"nDCG@{NDCG_K}"] = dcg / ideal
    return out


def retrieval_metrics(sims: np.ndarray, relevant: Relevance = None, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K (%), MRR and nDCG@10 of a (queries x items) similarity matrix.

    `relevant[i]` is the set of items relevant to query i (a boolean mask or a 1-D array of one
    item per query also work); None means item i for query i. Recall@K counts a query as a hit when
    ANY relevant item is in its top K (the CLIP_benchmark / image-text retrieval convention, not
    the fraction of relevant items retrieved). MRR uses the first relevant item; nDCG@10 uses
    binary gains, a log2 discount and the ideal DCG of min(#relevant, 10) items. Ties between a
    relevant and a non-relevant item are resolved against the query.
    """
    sims = np.asarray(sims, dtype=np.float64)
    if sims.ndim != 2 or 0 in sims.shape:
        raise ValueError(f"similarities must be a non-empty 2-D (queries x items) matrix, got shape {sims.shape}")
    if not np.isfinite(sims).all():
        raise ValueError("similarities contain NaN or inf")
    mask = _relevance_mask(relevant, sims.shape)
    n_relevant = mask.sum(axis=1)
    if (n_relevant == 0).any():
        raise ValueError(f"query {int(np.flatnonzero(n_relevant == 0)[0])} has no relevant items")
    parts = [_query_scores(_sorted_relevance(sims[s:s + _CHUNK], mask[s:s + _CHUNK]), n_relevant[s:s + _CHUNK], ks)
             for s in range(0, len(sims), _CHUNK)]
    out = {key: float(np.concatenate([p[key] for p in parts]).mean()) for key in parts[0]}
    for k in ks:
        out[f"R@{k}"] *= 100.0
    out["queries"] = int(len(sims))
    return out


def retrieval_both_directions(a: np.ndarray, b: np.ndarray, relevant_b_for_a: Relevance, name_a: str, name_b: str,
                              ks: Sequence[int] = (1, 5, 10)) -> dict[str, dict[str, float]]:
    """Retrieval a->b and b->a from L2-normalised embeddings (cosine = dot product).

    Cross-modal retrieval is asymmetric, so both directions are reported; the reverse direction
    uses the transposed relevance (None: the diagonal both ways).
    """
    sims = np.asarray(a) @ np.asarray(b).T
    mask = _relevance_mask(relevant_b_for_a, sims.shape)
    return {f"{name_a}->{name_b}": retrieval_metrics(sims, mask, ks),
            f"{name_b}->{name_a}": retrieval_metrics(sims.T, mask.T, ks)}


# -- classification ---------------------------------------------------------------------------------


def _true_class_rank(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """0-based rank of the true class, ties broken by class index like `argmax`, so rank 0 == top-1."""
    own = scores[np.arange(len(labels)), labels][:, None]
    cls = np.arange(scores.shape[1])
    return (scores > own).sum(axis=1) + ((scores == own) & (cls < labels[:, None])).sum(axis=1)


def classification_metrics(scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, per-class accuracy, confusion matrix and top-5 from class scores.

    Prediction is the row-wise argmax (ties: lowest class index). Balanced accuracy averages the
    recall of the classes present in `labels`, like sklearn's `balanced_accuracy_score`, so it
    is not inflated by a majority class; per-class accuracy is None for a class without samples.
    The confusion matrix has true classes as rows and predictions as columns. Top-5 only when
    there are at least 5 classes.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    n_cls = len(class_names)
    if scores.ndim != 2 or scores.shape[1] != n_cls or len(scores) != len(labels) or len(labels) == 0:
        raise ValueError(f"need scores (n x {n_cls}) and n labels, n > 0; got {scores.shape} and {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= n_cls:
        raise ValueError(f"labels must be integers in 0..{n_cls - 1}")
    labels = labels.astype(np.int64)  # uint8 labels would overflow in labels * n_cls
    pred = scores.argmax(axis=1)
    cm = np.bincount(labels * n_cls + pred, minlength=n_cls * n_cls).reshape(n_cls, n_cls)
    support = cm.sum(axis=1)
    recall = np.diag(cm)[support > 0] / support[support > 0]
    out: dict[str, Any] = {
        "accuracy": float(100.0 * (pred == labels).mean()),
        "balanced_accuracy": float(100.0 * recall.mean()),
        "per_class_accuracy": {name: (float(100.0 * cm[c, c] / support[c]) if support[c] else None)
                               for c, name in enumerate(class_names)},
        "confusion_matrix": cm.tolist(),
    }
    if n_cls >= 5:
        out["top5_accuracy"] = float(100.0 * (_true_class_rank(scores, labels) < 5).mean())
    out["n"] = int(len(labels))
    return out


# -- semantic textual similarity --------------------------------------------------------------------


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; zero rows stay zero (cosine 0) instead of becoming NaN."""
    x = np.asarray(x)
    x = x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def sts_metrics(a: np.ndarray, b: np.ndarray, gold: np.ndarray) -> dict[str, Any]:
    """Spearman and Pearson (x100) between row-wise cosine(a, b) and gold similarity scores.

    Rows are normalised here so unnormalised embeddings give cosine, not dot product. Spearman is
    the MTEB headline (only the order matters); Pearson shows whether cosine is linear in gold.
    """
    a, b, gold = np.asarray(a), np.asarray(b), np.asarray(gold, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or len(gold) != len(a) or len(a) < 2:
        raise ValueError(f"need two (n x d) matrices and n gold scores, n >= 2; got {a.shape}, {b.shape}, {gold.shape}")
    cos = (_unit_rows(a) * _unit_rows(b)).sum(axis=1)
    return {"spearman": float(100.0 * stats.spearmanr(cos, gold)[0]),
            "pearson": float(100.0 * stats.pearsonr(cos, gold)[0]),
            "n": int(len(gold))}


# -- Matryoshka -------------------------------------------------------------------------------------


def truncate(x: np.ndarray, dim: int) -> np.ndarray:
    """First `dim` coordinates of each row, renormalised: how a Matryoshka embedding is shortened."""
    x = np.asarray(x)
    if not 1 <= dim <= x.shape[-1]:
        raise ValueError(f"dim must be in 1..{x.shape[-1]}, got {dim}")
    return _unit_rows(x[..., :dim])


def matryoshka_curve(metric_fn: Callable[[int], float], dims: Sequence[int]) -> list[tuple[int, float]]:
    """(dim, metric) at each truncation dim, in the order given: how quality degrades when shortened."""
    return [(int(d), float(metric_fn(int(d)))) for d in dims]
