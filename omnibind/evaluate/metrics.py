"""Retrieval and classification metrics on similarity matrices (numpy only)."""

from __future__ import annotations

import numpy as np


def ranks_of_diagonal(sims: np.ndarray) -> np.ndarray:
    """0-based rank of item i among all items for query i (ties count against the query)."""
    sims = np.asarray(sims)
    own = np.diag(sims)[:, None]
    return (sims > own).sum(axis=1) + (sims == own).sum(axis=1) - 1


def recall_at_k(sims: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K in percent when query i's one relevant item is item i, plus MRR."""
    ranks = ranks_of_diagonal(sims)
    out = {f"R@{k}": float(100.0 * (ranks < k).mean()) for k in ks}
    out["MRR"] = float((1.0 / (ranks + 1)).mean())
    return out


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent of row-wise argmax against integer labels."""
    return float(100.0 * (np.asarray(scores).argmax(axis=1) == np.asarray(labels)).mean())
