"""Losses for binding a modality tower to the locked text anchor, as objects the trainer sums.

Every loss term is one `BindLoss` (an `nn.Module`): `forward(batch: BatchOutputs) -> Tensor` reads
what it needs from the batch (media and caption vectors, teacher vectors, backbone features, extra
negatives), and carries a `weight` (its factor in the trainer's sum) and a `name` (its key in the
training history). The trainer sums a list of them (`bind(..., losses=[...])`); `BindConfig`
builds the default list from its fields. A new loss is one subclass of `BindLoss`.

Conventions shared by all:
- Vectors are [n, d]; row i of `media` is paired with row i of `texts`.
- Every loss L2-normalises its inputs itself, so callers pass raw head outputs.
- Every loss returns a scalar tensor, unweighted (the trainer applies `weight`).
- Learnable temperatures and biases are `nn.Parameter`s, so the trainer's optimiser picks them up
  with the head's. Each term's `compute(...)` gives the same loss on explicit tensors.

Contents: `InfoNCE` (CLIP, LiT, ImageBind), `SigLIP` (Zhai et al., 2023), `Matryoshka` nesting
(Kusupati et al., 2022), `Distillation` toward a teacher embedding (Three Towers, ConSE teacher,
relational distillation), the latent-structure regularisers `IntraModalStructure` and
`GeometricConsistency` (after Jiang et al., CVPR 2023), and `mine_hard_negatives` (MM-Embed style
modality-aware hard negatives).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BatchOutputs",
    "BindLoss",
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


class BatchOutputs:
    """What one training batch hands to every loss term.

    `media` [n, d]: the head's outputs for the batch's media (raw, not normalised); `texts` [n, d]:
    the locked anchor's vectors of their captions; `teacher` [n, d]: a frozen teacher's vectors of
    the same media (set when a term has `uses_teacher`); `negatives` [m, d]: extra negatives in the
    media's modality (mined hard negatives), or None. `features` [n, f] are the backbone features
    the head read (mean over an item's segments); they cost a pass over the batch, so they are
    computed on first use: pass a tensor or a zero-argument function.
    """

    def __init__(self, media: torch.Tensor, texts: torch.Tensor, teacher: torch.Tensor | None = None,
                 negatives: torch.Tensor | None = None,
                 features: torch.Tensor | Callable[[], torch.Tensor] | None = None) -> None:
        self.media, self.texts, self.teacher, self.negatives = media, texts, teacher, negatives
        self._features = features

    @property
    def features(self) -> torch.Tensor | None:
        if callable(self._features):
            self._features = self._features()
        return self._features

    def prefix(self, k: int) -> BatchOutputs:
        """The batch with every shared-space vector cut to its first k dimensions (Matryoshka);
        backbone features are another space and stay whole."""
        def cut(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x[:, :k]
        return BatchOutputs(cut(self.media), cut(self.texts), cut(self.teacher), cut(self.negatives),
                            lambda: self.features)


class BindLoss(nn.Module):
    """One term of the binding objective: the trainer adds `weight * term(batch)` for each term.

    Subclass it and implement `forward(batch) -> Tensor` (unweighted, scalar). `name` is the
    term's key in the history (`loss_<name>`); set `uses_teacher = True` when `forward` reads
    `batch.teacher`, so the trainer computes teacher vectors (BindConfig.teacher names the teacher).
    """

    name = "loss"
    uses_teacher = False

    def __init__(self, weight: float = 1.0, name: str | None = None) -> None:
        super().__init__()
        if not weight >= 0:
            raise ValueError(f"weight must be non-negative, got {weight}")
        self.weight = float(weight)
        if name is not None:
            self.name = name

    def forward(self, batch: BatchOutputs) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement forward(batch)")


class InfoNCE(BindLoss):
    """Symmetric InfoNCE over a·bᵀ / T, as in CLIP.

    The scale 1/T is stored as log(1/T) (so it stays positive and the optimiser moves it on a log
    scale) and clamped at `max_logit_scale` in the forward pass, as CLIP does, so training cannot
    collapse the temperature to zero. With `learnable=False` the scale is a buffer (LiT-style
    fixed temperature) and `parameters()` is empty. On a batch: texts are a, media are b (extra
    negatives are media).
    """

    name = "infonce"

    def __init__(self, init_temperature: float = 0.07, learnable: bool = True, max_logit_scale: float = 100.0,
                 weight: float = 1.0, name: str | None = None) -> None:
        super().__init__(weight, name)
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

    def forward(self, batch: BatchOutputs) -> torch.Tensor:
        return self.compute(batch.texts, batch.media, batch.negatives)

    def compute(self, a: torch.Tensor, b: torch.Tensor, extra_negatives_b: torch.Tensor | None = None) -> torch.Tensor:
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


class SigLIP(BindLoss):
    """Pairwise sigmoid loss of Zhai et al. (2023), "Sigmoid Loss for Language Image Pre-Training".

    logits = t·a·bᵀ + bias with t = exp(t'), labels +1 on the diagonal and -1 elsewhere;
    loss = -(1/n) Σ_ij log σ(label_ij · logit_ij), normalised by the batch size n as in the paper
    (not by the n² pairs). Each pair is an independent binary problem, so no softmax over the
    batch is needed; the bias starts at -10 so that the many negatives do not dominate the first
    steps. Extra negatives ([m, d], b's modality) add m columns labelled -1 for each row of a.
    On a batch: texts are a, media are b.
    """

    name = "siglip"

    def __init__(self, init_temperature: float = 10.0, init_bias: float = -10.0, weight: float = 1.0,
                 name: str | None = None) -> None:
        super().__init__(weight, name)
        if init_temperature <= 0:
            raise ValueError("init_temperature must be positive")
        self.t_prime = nn.Parameter(torch.tensor(math.log(init_temperature), dtype=torch.float32))
        self.bias = nn.Parameter(torch.tensor(float(init_bias), dtype=torch.float32))

    def forward(self, batch: BatchOutputs) -> torch.Tensor:
        return self.compute(batch.texts, batch.media, batch.negatives)

    def compute(self, a: torch.Tensor, b: torch.Tensor, extra_negatives_b: torch.Tensor | None = None) -> torch.Tensor:
        _check_pair(a, b)
        _check_extra(extra_negatives_b, a.shape[1])
        a, b = _normalise(a), _normalise(b)
        n = a.shape[0]
        candidates = b if extra_negatives_b is None else torch.cat([b, _normalise(extra_negatives_b)], dim=0)
        logits = self.t_prime.exp() * a @ candidates.T + self.bias
        labels = -torch.ones_like(logits)
        labels[:, :n] += 2.0 * torch.eye(n, device=a.device, dtype=logits.dtype)
        return -F.logsigmoid(labels * logits).sum() / n


class Matryoshka(BindLoss):
    """Matryoshka nesting (Kusupati et al., 2022): a base loss on every prefix [:, :k] of the batch.

    So that a vector truncated to its first k dimensions is still a good embedding (cheaper
    storage and search). The base loss re-normalises each prefix. `dim_weights` are relative: the
    default is equal weights, and any given ones are rescaled to sum to 1, so the total keeps the
    scale of one base loss. The base term (and its temperature) is shared by all prefixes; its
    own `weight` is not applied (this term's is). Every shared-space vector of the batch (media,
    texts, teacher, negatives) is truncated with the same prefix.
    """

    def __init__(self, base: BindLoss, dims: Sequence[int], dim_weights: Sequence[float] | None = None,
                 weight: float = 1.0, name: str | None = None) -> None:
        super().__init__(weight, name or f"matryoshka_{getattr(base, 'name', 'loss')}")
        dims = [int(k) for k in dims]
        if not dims or any(k <= 0 for k in dims):
            raise ValueError(f"dims must be a non-empty list of positive ints, got {dims}")
        if dim_weights is None:
            dim_weights = [1.0] * len(dims)
        if len(dim_weights) != len(dims) or any(w < 0 for w in dim_weights) or sum(dim_weights) <= 0:
            raise ValueError("dim_weights must be non-negative, one per dim, and not all zero")
        total = float(sum(dim_weights))
        self.base = base
        self.dims = dims
        self.dim_weights = [float(w) / total for w in dim_weights]
        self.uses_teacher = bool(getattr(base, "uses_teacher", False))

    def forward(self, batch: BatchOutputs) -> torch.Tensor:
        d = min(batch.texts.shape[-1], batch.media.shape[-1])
        too_big = [k for k in self.dims if k > d]
        if too_big:
            raise ValueError(f"Matryoshka dims {too_big} exceed the embedding dimension {d}")
        total = batch.texts.new_zeros(())
        for k, w in zip(self.dims, self.dim_weights):
            total = total + w * self.base(batch.prefix(k))
        return total


class Distillation(BindLoss):
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

    On a batch: the media vectors are the student, `batch.teacher` the teacher.
    """

    kinds = ("cosine", "mse", "contrastive")
    name = "distillation"
    uses_teacher = True

    def __init__(self, kind: str = "cosine", temperature: float = 0.05, weight: float = 1.0,
                 name: str | None = None) -> None:
        super().__init__(weight, name)
        if kind not in self.kinds:
            raise ValueError(f"kind must be one of {self.kinds}, got {kind!r}")
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.kind, self.temperature = kind, float(temperature)

    def forward(self, batch: BatchOutputs) -> torch.Tensor:
        if batch.teacher is None:
            raise ValueError("Distillation needs teacher vectors (BindConfig.teacher)")
        return self.compute(batch.media, batch.teacher)

    def compute(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        _check_pair(student, teacher, "student and teacher")
        s, t = _normalise(student), _normalise(teacher.detach())
        if self.kind == "cosine":
            return (1.0 - (s * t).sum(dim=-1)).mean()
        if self.kind == "mse":
            return F.mse_loss(s, t)
        log_q = F.log_softmax(s @ t.T / self.temperature, dim=-1)
        log_p = F.log_softmax(t @ t.T / self.temperature, dim=-1)
        return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)


class IntraModalStructure(BindLoss):
    """Keep the head from collapsing what the backbone distinguishes.

    MSE between the cosine-similarity matrix of the head outputs `out` [n, d] and that of the
    backbone features `feats` [n, f] (f may differ from d; `feats` is detached, it is the target).
    A contrastive loss alone only asks the head to match the anchor; this term keeps the
    modality's own neighbourhood structure. It follows the deep-feature-separation idea of Jiang
    et al. (CVPR 2023), "Understanding and Constructing Latent Modality Structures in Multi-modal
    Representation Learning" (preserve modality-specific information), but it is a
    structure-preservation term, not the paper's loss (which adds a separate modality-specific
    projection kept orthogonal to the shared one). On a batch: `out` is the media, `feats` the
    batch's backbone features.
    """

    name = "intra_modal"

    def forward(self, batch: BatchOutputs) -> torch.Tensor:
        features = batch.features
        if features is None:
            raise ValueError("IntraModalStructure needs the batch's backbone features")
        return self.compute(batch.media, features)

    def compute(self, out: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        if out.dim() != 2 or feats.dim() != 2 or out.shape[0] != feats.shape[0]:
            shapes = f"{tuple(out.shape)}, {tuple(feats.shape)}"
            raise ValueError(f"out [n, d] and feats [n, f] must have the same n, got {shapes}")
        return F.mse_loss(_cosine_matrix(out), _cosine_matrix(feats.detach()))


class GeometricConsistency(BindLoss):
    """Geometric consistency loss of Jiang et al. (CVPR 2023).

    mean((S_aa - S_bb)²) + mean((S_ab - S_abᵀ)²), with S the cosine-similarity matrices within
    and across the batch: the two modalities should see the same geometry (a_i is to a_j as b_i
    is to b_j), and cross-modal similarity should be symmetric (a_i·b_j = a_j·b_i), without
    forcing a_i = b_i, which would close the modality gap exactly (the paper argues that is
    sub-optimal). Zero when a == b. On a batch: a is the media, b the texts.
    """

    name = "geometric"

    def forward(self, batch: BatchOutputs) -> torch.Tensor:
        return self.compute(batch.media, batch.texts)

    def compute(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
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
