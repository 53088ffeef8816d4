"""Losses for binding a modality tower to the locked text anchor.

Small `nn.Module`s that compose (a trainer sums them with weights). Conventions shared by all:

- `a`, `b` are batches of embeddings of shape [n, d]; row i of `a` is paired with row i of `b`.
- Every loss L2-normalises its inputs itself, so callers pass raw head outputs.
- Every loss returns a scalar tensor.
- Learnable temperatures and biases are `nn.Parameter`s, so the trainer's optimiser picks them up
  when it is given `loss.parameters()` alongside the head's.

Contents: `InfoNCE` (CLIP, LiT, ImageBind), `SigLIP` (Zhai et al., 2023), `Matryoshka` nesting
(Kusupati et al., 2022), `Distillation` toward a teacher embedding (Three Towers, ConSE teacher,
relational distillation), the latent-structure regularisers `IntraModalStructure` and
`GeometricConsistency` (after Jiang et al., CVPR 2023), and `mine_hard_negatives` (MM-Embed style
modality-aware hard negatives).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "InfoNCE",
    "SigLIP",
    "Matryoshka",
    "Distillation",
    "IntraModalStructure",
    "GeometricConsistency",
    "mine_hard_negatives",
]


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


def _check_pair(a: torch.Tensor, b: torch.Tensor, what: str = "a and b") -> None:
    if a.dim() != 2 or b.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"{what} must both be [n, d] with the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def _check_extra(extra: torch.Tensor | None, d: int) -> None:
    if extra is not None and (extra.dim() != 2 or extra.shape[1] != d):
        raise ValueError(f"extra_negatives_b must be [m, {d}], got {tuple(extra.shape)}")


def _cosine_matrix(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    x = _normalise(x)
    return x @ (x if y is None else _normalise(y)).T


class InfoNCE(nn.Module):
    """Symmetric InfoNCE over a·bᵀ / T, as in CLIP.

    The scale 1/T is stored as log(1/T) (so it stays positive and the optimiser moves it on a log
    scale) and clamped at `max_logit_scale` in the forward pass, as CLIP does, so training cannot
    collapse the temperature to zero. With `learnable=False` the scale is a buffer (LiT-style
    fixed temperature) and `parameters()` is empty.
    """

    def __init__(self, init_temperature: float = 0.07, learnable: bool = True, max_logit_scale: float = 100.0) -> None:
        super().__init__()
        if init_temperature <= 0 or max_logit_scale <= 0:
            raise ValueError("init_temperature and max_logit_scale must be positive")
        self.max_logit_scale = float(max_logit_scale)
        value = torch.tensor(math.log(1.0 / init_temperature), dtype=torch.float32)
        if learnable:
            self.logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("logit_scale", value)

    def scale(self) -> torch.Tensor:
        """1/T, clamped; differentiable below the clamp."""
        return self.logit_scale.clamp(max=math.log(self.max_logit_scale)).exp()

    @property
    def temperature(self) -> float:
        """Current T, for logging."""
        return float(1.0 / self.scale().detach())

    def forward(self, a: torch.Tensor, b: torch.Tensor, extra_negatives_b: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of the a->b and b->a cross-entropies.

        `extra_negatives_b` ([m, d], in b's modality) are appended as further candidates for the
        a->b direction only: they are hard negatives for a query from a, and have no paired row in
        a to serve as candidates for b->a.
        """
        _check_pair(a, b)
        _check_extra(extra_negatives_b, a.shape[1])
        a, b = _normalise(a), _normalise(b)
        scale = self.scale()
        candidates = b if extra_negatives_b is None else torch.cat([b, _normalise(extra_negatives_b)], dim=0)
        logits_ab = scale * a @ candidates.T
        logits_ba = scale * b @ a.T
        target = torch.arange(a.shape[0], device=a.device)
        return 0.5 * (F.cross_entropy(logits_ab, target) + F.cross_entropy(logits_ba, target))


class SigLIP(nn.Module):
    """Pairwise sigmoid loss of Zhai et al. (2023), "Sigmoid Loss for Language Image Pre-Training".

    logits = t·a·bᵀ + bias with t = exp(t'), labels +1 on the diagonal and -1 elsewhere;
    loss = -(1/n) Σ_ij log σ(label_ij · logit_ij), normalised by the batch size n as in the paper
    (not by the n² pairs). Each pair is an independent binary problem, so no softmax over the
    batch is needed; the bias starts at -10 so that the many negatives do not dominate the first
    steps. Extra negatives ([m, d], b's modality) add m columns labelled -1 for each row of a.
    """

    def __init__(self, init_temperature: float = 10.0, init_bias: float = -10.0) -> None:
        super().__init__()
        if init_temperature <= 0:
            raise ValueError("init_temperature must be positive")
        self.t_prime = nn.Parameter(torch.tensor(math.log(init_temperature), dtype=torch.float32))
        self.bias = nn.Parameter(torch.tensor(float(init_bias), dtype=torch.float32))

    def forward(self, a: torch.Tensor, b: torch.Tensor, extra_negatives_b: torch.Tensor | None = None) -> torch.Tensor:
        _check_pair(a, b)
        _check_extra(extra_negatives_b, a.shape[1])
        a, b = _normalise(a), _normalise(b)
        n = a.shape[0]
        candidates = b if extra_negatives_b is None else torch.cat([b, _normalise(extra_negatives_b)], dim=0)
        logits = self.t_prime.exp() * a @ candidates.T + self.bias
        labels = -torch.ones_like(logits)
        labels[:, :n] += 2.0 * torch.eye(n, device=a.device, dtype=logits.dtype)
        return -F.logsigmoid(labels * logits).sum() / n


class Matryoshka(nn.Module):
    """Matryoshka nesting (Kusupati et al., 2022): the base loss on every prefix a[:, :k].

    So that a vector truncated to its first k dimensions is still a good embedding (cheaper
    storage and search). The base loss re-normalises each prefix. Weights are relative: the
    default is equal weights, and any given weights are rescaled to sum to 1, so the total keeps
    the scale of one base loss. The base module (and its temperature) is shared by all prefixes.
    Extra negatives are truncated with the same prefix.
    """

    def __init__(self, base: nn.Module, dims: Sequence[int], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        dims = [int(k) for k in dims]
        if not dims or any(k <= 0 for k in dims):
            raise ValueError(f"dims must be a non-empty list of positive ints, got {dims}")
        if weights is None:
            weights = [1.0] * len(dims)
        if len(weights) != len(dims) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("weights must be non-negative, one per dim, and not all zero")
        total = float(sum(weights))
        self.base = base
        self.dims = dims
        self.weights = [float(w) / total for w in weights]

    def forward(self, a: torch.Tensor, b: torch.Tensor, extra_negatives_b: torch.Tensor | None = None) -> torch.Tensor:
        d = min(a.shape[-1], b.shape[-1])
        too_big = [k for k in self.dims if k > d]
        if too_big:
            raise ValueError(f"Matryoshka dims {too_big} exceed the embedding dimension {d}")
        total = a.new_zeros(())
        for k, w in zip(self.dims, self.weights):
            if extra_negatives_b is None:
                loss = self.base(a[:, :k], b[:, :k])
            else:
                loss = self.base(a[:, :k], b[:, :k], extra_negatives_b[:, :k])
            total = total + w * loss
        return total


class Distillation(nn.Module):
    """Pull a student [n, d] toward a frozen teacher [n, d] (the teacher is detached).

    - "cosine": mean(1 - cos(student_i, teacher_i)); 0 when equal, 1 when orthogonal.
    - "mse": mean squared error of the normalised vectors (elementwise mean). On unit vectors
      this is 2(1 - cos)/d, the cosine loss rescaled; kept because it is the usual Three Towers /
      feature-regression form and its scale matches an MSE elsewhere.
    - "contrastive": relational distillation (DSE-style): KL(target_i || student_i) per row,
      with student_i = softmax(student_i·teacherᵀ/T) and target_i = softmax(teacher_i·teacherᵀ/T).
      The target is what the teacher would give for its own row: near one-hot at small T, but it
      keeps the teacher's similar-item structure, which a hard identity target would discard.
      Zero, its minimum, when student == teacher.
    """

    kinds = ("cosine", "mse", "contrastive")

    def __init__(self, kind: str = "cosine", temperature: float = 0.05) -> None:
        super().__init__()
        if kind not in self.kinds:
            raise ValueError(f"kind must be one of {self.kinds}, got {kind!r}")
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.kind, self.temperature = kind, float(temperature)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        _check_pair(student, teacher, "student and teacher")
        s, t = _normalise(student), _normalise(teacher.detach())
        if self.kind == "cosine":
            return (1.0 - (s * t).sum(dim=-1)).mean()
        if self.kind == "mse":
            return F.mse_loss(s, t)
        log_q = F.log_softmax(s @ t.T / self.temperature, dim=-1)
        log_p = F.log_softmax(t @ t.T / self.temperature, dim=-1)
        return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)


class IntraModalStructure(nn.Module):
    """Keep the head from collapsing what the backbone distinguishes.

    MSE between the cosine-similarity matrix of the head outputs `out` [n, d] and that of the
    backbone features `feats` [n, f] (f may differ from d; `feats` is detached, it is the target).
    A contrastive loss alone only asks the head to match the anchor; this term keeps the
    modality's own neighbourhood structure. It follows the deep-feature-separation idea of Jiang
    et al. (CVPR 2023), "Understanding and Constructing Latent Modality Structures in Multi-modal
    Representation Learning" (preserve modality-specific information), but it is a
    structure-preservation term, not the paper's loss (which adds a separate modality-specific
    projection kept orthogonal to the shared one).
    """

    def forward(self, out: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        if out.dim() != 2 or feats.dim() != 2 or out.shape[0] != feats.shape[0]:
            shapes = f"{tuple(out.shape)}, {tuple(feats.shape)}"
            raise ValueError(f"out [n, d] and feats [n, f] must have the same n, got {shapes}")
        return F.mse_loss(_cosine_matrix(out), _cosine_matrix(feats.detach()))


class GeometricConsistency(nn.Module):
    """Geometric consistency loss of Jiang et al. (CVPR 2023).

    mean((S_aa - S_bb)²) + mean((S_ab - S_abᵀ)²), with S the cosine-similarity matrices within
    and across the batch: the two modalities should see the same geometry (a_i is to a_j as b_i
    is to b_j), and cross-modal similarity should be symmetric (a_i·b_j = a_j·b_i), without
    forcing a_i = b_i, which would close the modality gap exactly (the paper argues that is
    sub-optimal). Zero when a == b.
    """

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        _check_pair(a, b)
        s_ab = _cosine_matrix(a, b)
        return F.mse_loss(_cosine_matrix(a), _cosine_matrix(b)) + F.mse_loss(s_ab, s_ab.T)


@torch.no_grad()
def mine_hard_negatives(queries: torch.Tensor, pool: torch.Tensor, positives_idx: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [n, k] of the pool items most similar (cosine) to each query, excluding its positive.

    Modality-aware (MM-Embed): `pool` is in the *target* modality (e.g. the locked text anchor's
    embeddings of all captions), so the negatives are ones a retrieval would actually confuse.
    `positives_idx[i]` is the pool index of query i's positive; a negative value means it has none
    in the pool. Deterministic: most similar first, ties broken by the lower pool index.
    """
    if queries.dim() != 2 or pool.dim() != 2 or queries.shape[1] != pool.shape[1]:
        shapes = f"{tuple(queries.shape)}, {tuple(pool.shape)}"
        raise ValueError(f"queries [n, d] and pool [m, d] must share d, got {shapes}")
    positives_idx = torch.as_tensor(positives_idx, device=queries.device).long().reshape(-1)
    n, m = queries.shape[0], pool.shape[0]
    if positives_idx.shape[0] != n:
        raise ValueError(f"positives_idx must have one entry per query ({n}), got {positives_idx.shape[0]}")
    if bool((positives_idx >= m).any()):
        raise ValueError(f"positives_idx out of range for a pool of {m}")
    has_positive = positives_idx >= 0
    if k < 0 or k > m - int(bool(has_positive.any())):
        raise ValueError(f"k={k} is more than the pool of {m} can give after excluding positives")
    sim = _cosine_matrix(queries.float(), pool.float())
    rows = torch.nonzero(has_positive).reshape(-1)
    sim[rows, positives_idx[rows]] = -math.inf
    order = torch.sort(-sim, dim=1, stable=True).indices
    return order[:, :k]
