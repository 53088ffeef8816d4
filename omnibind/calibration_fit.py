"""Fitting a space's match-probability calibration: P(match) = sigmoid(a * z + b) per (query
modality, item modality) pair, z being a cosine standardised against the query's cosines to a
sample of the item modality, exactly as search does (omnibind/search.py `calibrate`).

A space whose vectors change must refit the pairs that changed, or search ranks a mixed result
list on stale probabilities: `bind` refits the bound tower's pairs on its held-out pairs
(omnibind/bind/trainer.py); scripts/fit_calibration.py fits the shipped spaces.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PRIOR = 0.01  # share of matches the probabilities assume: pairs then mean the same thing in a mixed list
SAMPLE = 512  # reference sample per query, as the collection's calibration sample
MIN_MATCHES = 8  # fewer held-out matches than this: no fit (the pair is left uncalibrated)
RIDGE = 1e-3  # refits on held-out pairs (a few dozen): see `fit`


def zscores(queries: np.ndarray, items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each query's z-scores over `items`, standardised against a sample of them as search does."""
    from omnibind.search import calibrate

    ref = items if len(items) <= SAMPLE else items[np.sort(rng.choice(len(items), SAMPLE, replace=False))]
    return np.stack([calibrate(q, items @ q, ref) for q in queries])


def cosine_prior(queries: np.ndarray, items: np.ndarray) -> tuple[float, float]:
    """(mean, std) of a query's cosines to items of a modality, typical over `queries`: the prior
    search shrinks a small collection's per-query statistics toward (omnibind/search.py)."""
    cos = np.asarray(queries, np.float64) @ np.asarray(items, np.float64).T
    return float(cos.mean(axis=1).mean()), float(np.sqrt(cos.var(axis=1).mean()))


def fit(z: np.ndarray, match: np.ndarray, ridge: float = 0.0) -> tuple[float, float, dict[str, Any]]:
    """Weighted one-feature logistic regression (Newton's method; two parameters); negatives
    weighted so that a share PRIOR of all pairs are matches. `ridge` pulls (a, b) toward (1, the
    prior's logit): with a few dozen held-out pairs that separate perfectly, the unpenalised fit
    runs off to a step function (a in the hundreds) that no new pair would follow."""
    x, y = z.reshape(-1).astype(np.float64), match.reshape(-1).astype(np.float64)
    npos, nneg = y.sum(), len(y) - y.sum()
    w = np.where(y > 0, PRIOR / npos, (1 - PRIOR) / nneg)
    centre = np.array([1.0, float(np.log(PRIOR / (1 - PRIOR)))])
    a, b = 1.0, 0.0
    for _ in range(100):
        p = 1 / (1 + np.exp(-(a * x + b)))
        g = np.array([np.sum(w * (p - y) * x), np.sum(w * (p - y))]) + ridge * (np.array([a, b]) - centre)
        h = np.sum(w * p * (1 - p) * np.stack([x * x, x, x, np.ones_like(x)]), axis=1).reshape(2, 2) + (1e-9 + ridge) * np.eye(2)
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    stats = {"positives": int(npos), "negatives": int(nneg), "z_pos_mean": float(x[y > 0].mean()),
             "z_neg_mean": float(x[y == 0].mean()), "z_neg_std": float(x[y == 0].std())}
    return float(a), float(b), stats


def refit_pairs(modality: str, texts: np.ndarray, media: np.ndarray, match: np.ndarray,
                seed: int = 0) -> dict[str, list[float]]:
    """'text-><modality>' and '<modality>->text' fits from held-out pairs: `texts` [t, d] unique
    captions, `media` [m, d], `match` [t, m] True where a caption belongs to a medium. Each fit is
    [a, b, mean, std]: the logistic map of z, then the cosine prior (`cosine_prior`). Empty when
    there are too few matches or no negatives to fit on."""
    match = np.asarray(match, dtype=bool)
    if match.sum() < MIN_MATCHES or match.all():
        return {}
    rng = np.random.default_rng(seed)
    out = {}
    for key, (q, items, m) in {f"text->{modality}": (texts, media, match),
                               f"{modality}->text": (media, texts, match.T)}.items():
        a, b, _ = fit(zscores(q, items, rng), m, ridge=RIDGE)
        if np.isfinite([a, b]).all() and a > 0:  # a fit that does not rise with z says nothing
            out[key] = [round(a, 5), round(b, 5), *(round(x, 5) for x in cosine_prior(q, items))]
    return out
