"""Connecting two embedding spaces through their shared text modality, with no media pairs.

A joint model (CLIP/SigLIP: image+text, CLAP: audio+text) places its media where its own text
encoder places their captions. Learn, from texts alone, a map f from that model's text space into
an anchor space's text space, and f applied to the model's media vectors puts them in the anchor
space: C-MCR (Wang et al., NeurIPS 2023, arXiv:2305.14381) and Ex-MCR (arXiv:2310.08884)
connect CLIP and CLAP this way; FreeBind (arXiv:2405.04883) mixes expert spaces into one.

The catch is the modality gap: a model's media vectors do not sit where its text vectors do
(in CLIP-like models mostly a constant offset between the modality means). A map fitted on text
only has never seen the region the media live in. Methods (measured in benchmarks/compose_gap.py,
docs/composition.md):

- `ridge`: plain affine least squares on the (normalised) text vectors: the baseline.
- `gap`: C-MCR's remedy. Training with Gaussian noise on the inputs (a linear map's expected
  loss under input noise of variance s²/d is ridge regression with lambda = n·s²/d, so it is
  solved in closed form), which shrinks the map in directions the texts do not vary in, where
  the gap mostly lies; and re-centring: the media are centred on their own mean (from unpaired
  media when there are any) instead of the text mean, which removes the constant offset.
- `pseudo`: `gap` plus semantic pseudo-pairs from a memory of the model's own unpaired media
  (C-MCR's semantically consistent pairs): each medium's nearest corpus texts in the model's
  space, softmax-weighted, give it an anchor-space target; the map is fitted on both.

The fitted map is affine on the model's features after a LayerNorm (scale-free, so a vector's
norm does not matter), and is stored as a `LinearHead` with `layer_norm` (`to_head`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omnibind.errors import OmnibindError

METHODS = ("ridge", "gap", "pseudo")
DEFAULT_METHOD = "gap"
DEFAULT_NOISE = 0.1  # norm of the input noise relative to a unit vector (C-MCR's Gaussian noise); >= 0.5 hurt
# (benchmarks/compose_gap.py); below ~0.2 the ridge floor dominates (LayerNorm leaves one dimension empty)
RIDGE_FLOOR = 1e-4  # relative ridge of the plain fit: numerical only
MIN_TEXTS = 50
PSEUDO_TOP_K, PSEUDO_TEMPERATURE = 5, 0.05


class ConnectError(OmnibindError):
    """A map cannot be learned: too few texts, mismatched rows, unknown method."""


@dataclass
class Connection:
    """An affine map `y = W · norm(x) + b` from a model's features to an anchor space.

    `norm` is a LayerNorm without affine parameters (what `LinearHead(layer_norm=True)` applies first). `bias` is
    the bias for the media (`media_bias`) the map will serve; `text_bias` maps the model's text."""

    weight: np.ndarray  # [out, in]
    bias: np.ndarray  # [out]: for the media (gap-centred where the method says so)
    text_bias: np.ndarray  # [out]: for the model's own text vectors
    method: str
    details: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)

    @property
    def in_dim(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_dim(self) -> int:
        return int(self.weight.shape[0])

    def apply(self, features: np.ndarray, text: bool = False) -> np.ndarray:
        """Unit vectors in the anchor space for raw features [n, in] (media unless `text`)."""
        y = layer_norm(features) @ self.weight.T + (self.text_bias if text else self.bias)
        return _unit(y)

    def to_head(self, input_key: str = "embedding") -> Any:
        """A `LinearHead` (with `layer_norm`) that computes `apply` exactly."""
        return affine_head(self.weight, self.bias, input_key)


def layer_norm(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """`torch.nn.LayerNorm(d, elementwise_affine=False)` in float64: scale-free input of the map."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def fit_connection(source_text: np.ndarray, anchor_text: np.ndarray, method: str = DEFAULT_METHOD,
                   media: np.ndarray | None = None, noise: float = DEFAULT_NOISE, held_out: float = 0.1,
                   seed: int = 0) -> Connection:
    """Learn the map from a model's text features `source_text` [n, d] to the anchor's vectors of
    the same texts `anchor_text` [n, D]. `media` [m, d]: the model's features of unpaired media of
    the modality the map will serve (optional for `gap`, needed for `pseudo`). `quality` holds the
    map's held-out text->text scores (fitted without the held-out texts); the returned map is then
    refitted on every text."""
    source_text, anchor_text = np.asarray(source_text, np.float64), _unit(np.asarray(anchor_text, np.float64))
    if method not in METHODS:
        raise ConnectError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if len(source_text) != len(anchor_text):
        raise ConnectError(f"{len(source_text)} source text vectors but {len(anchor_text)} anchor vectors")
    if len(source_text) < MIN_TEXTS:
        raise ConnectError(f"{len(source_text)} texts are too few to learn a map from (need {MIN_TEXTS}; "
                           f"a few thousand are better)")
    if method == "pseudo" and (media is None or len(media) < 2):
        raise ConnectError("method 'pseudo' needs unpaired media of the tower's modality (a memory to retrieve from)")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(source_text))
    cut = max(1, int(round(held_out * len(order)))) if held_out > 0 else 0
    quality: dict[str, float] = {}
    if cut:
        test, train = order[:cut], order[cut:]
        trial = _fit(source_text[train], anchor_text[train], method, media, noise)
        quality = text_quality(trial.apply(source_text[test], text=True), anchor_text[test])
    final = _fit(source_text, anchor_text, method, media, noise)
    final.quality = quality
    return final


def _fit(source_text: np.ndarray, anchor_text: np.ndarray, method: str, media: np.ndarray | None,
         noise: float) -> Connection:
    u_text = layer_norm(source_text) / np.sqrt(source_text.shape[1])  # unit-norm rows (up to eps)
    u_media = None if media is None or len(media) == 0 else layer_norm(media) / np.sqrt(media.shape[1])
    d = u_text.shape[1]
    text_mean, target_mean = u_text.mean(0), anchor_text.mean(0)
    media_mean = text_mean if method == "ridge" or u_media is None else u_media.mean(0)
    x, y = u_text - text_mean, anchor_text - target_mean
    details: dict[str, Any] = {"texts": len(u_text), "media": 0 if u_media is None else len(u_media)}
    if method == "pseudo":
        targets = pseudo_targets(u_media - media_mean + text_mean, u_text, anchor_text)
        x, y = np.concatenate([x, u_media - media_mean]), np.concatenate([y, targets - target_mean])
        details["pseudo_pairs"] = len(u_media)
    relative = RIDGE_FLOOR if method == "ridge" else max(noise ** 2 / d, RIDGE_FLOOR)
    lam = relative * len(x)
    w = np.linalg.solve(x.T @ x + lam * np.eye(d), x.T @ y).T  # [D, d] on unit-scale inputs
    details.update(ridge_lambda=lam, noise=0.0 if method == "ridge" else noise,
                   centre="media mean" if media_mean is not text_mean else "text mean",
                   gap_norm=float(np.linalg.norm(media_mean - text_mean)) if media_mean is not text_mean else None)
    scale = 1.0 / np.sqrt(d)  # the head sees layer_norm(x) = sqrt(d) * unit-scale input
    return Connection(weight=w * scale, bias=target_mean - w @ media_mean, text_bias=target_mean - w @ text_mean,
                      method=method, details=details)


def pseudo_targets(queries: np.ndarray, u_text: np.ndarray, anchor_text: np.ndarray,
                   k: int = PSEUDO_TOP_K, temperature: float = PSEUDO_TEMPERATURE) -> np.ndarray:
    """Anchor-space targets for media (gap-shifted unit-scale vectors `queries`): the softmax-
    weighted anchor vectors of each medium's k nearest corpus texts in the model's own space."""
    sims = _unit(queries) @ _unit(u_text).T
    k = min(k, sims.shape[1])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    s = np.take_along_axis(sims, top, axis=1) / temperature
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return _unit(np.einsum("mk,mkd->md", p, anchor_text[top]))


def text_quality(mapped: np.ndarray, anchor: np.ndarray) -> dict[str, float]:
    """Held-out fit of a map: mean cosine of mapped vs anchor vectors of the same texts, and
    Recall@1 (in %) of finding a text's anchor vector from its mapped one among the held-out."""
    mapped, anchor = _unit(mapped), _unit(anchor)
    sims = mapped @ anchor.T
    hits = sims.argmax(axis=1) == np.arange(len(sims))
    return {"texts": int(len(sims)), "cosine": round(float(np.diag(sims).mean()), 4),
            "R@1": round(100.0 * float(hits.mean()), 2), "chance_R@1": round(100.0 / len(sims), 2)}


def affine_head(weight: np.ndarray, bias: np.ndarray, input_key: str = "embedding") -> Any:
    """A `LinearHead` with `layer_norm` computing `W · LayerNorm(x) + b` (loads like any saved head)."""
    import torch

    from omnibind.heads import LinearHead

    w, b = np.asarray(weight, np.float64), np.asarray(bias, np.float64)
    head = LinearHead(input_key, w.shape[1], w.shape[0], layer_norm=True)
    with torch.no_grad():
        head.proj.weight.copy_(torch.from_numpy(w))
        head.proj.bias.copy_(torch.from_numpy(b))
    return head.eval()


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)
