"""Multilingual knowledge distillation into the anchor: a student head on a multilingual encoder.

Reimers & Gurevych (EMNLP 2020, arXiv:2004.09813) make a multilingual student imitate an English
teacher: student(english) ≈ teacher(english) and student(translation) ≈ teacher(english). Here the
student is a frozen multilingual encoder (USE multilingual v3) plus a small trainable MLP, and the
teacher is the space's anchor (MiniLM): the anchor's image and audio heads stay untouched, and a
French query lands where its English meaning does.

Measured on Tux Paint *train* stamps (scripts/build_multilingual_space.py, docs/multilingual.md):
a ridge map plateaus; an MLP trained with cosine + in-batch InfoNCE does better, and an ensemble
of a few seeds better still. The ensemble is merged into one `MLPHead` (its hidden layers side by
side, outputs averaged), so it loads and runs like any other head.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from omnibind.heads import MLPHead

Progress = Callable[[int], None]


def train_student(x: np.ndarray, y: np.ndarray, seeds: Sequence[int] = (0, 1, 2), hidden: int = 1024,
                  epochs: int = 10, lr: float = 1e-3, temperature: float = 0.05, batch_size: int = 256,
                  input_key: str = "embedding", progress: Progress | None = None) -> MLPHead:
    """An `MLPHead` mapping student features `x` [n, d] to teacher vectors `y` [n, D] (the mean
    of one MLP per seed, merged). Loss: 1 − cosine plus in-batch InfoNCE at `temperature`."""
    if len(x) != len(y) or len(x) < batch_size:
        raise ValueError(f"need as many targets as inputs and at least {batch_size} rows, got {len(x)}, {len(y)}")
    members = [_train_one(x, y, seed, hidden, epochs, lr, temperature, batch_size, input_key, progress)
               for seed in seeds]
    return merge_mlp_heads(members)


def _train_one(x: np.ndarray, y: np.ndarray, seed: int, hidden: int, epochs: int, lr: float, temperature: float,
               batch_size: int, input_key: str, progress: Progress | None) -> MLPHead:
    torch.manual_seed(seed)
    head = MLPHead(input_key, x.shape[1], y.shape[1], hidden=hidden)
    xt = torch.as_tensor(np.asarray(x, np.float32))
    yt = nn.functional.normalize(torch.as_tensor(np.asarray(y, np.float32)), dim=-1)
    one_cycle_fit(head, len(xt), lambda rows: distill_loss(head({input_key: xt[rows]}), yt[rows], temperature),
                  epochs, lr, batch_size, seed, progress)
    return head.eval()


def one_cycle_fit(module: nn.Module, n: int, loss_of: Callable[[torch.Tensor], torch.Tensor], epochs: int,
                  lr: float, batch_size: int, seed: int, progress: Progress | None = None) -> None:
    """Train `module` with AdamW and a one-cycle schedule over seeded permutations of `n` rows
    (`loss_of(rows)` is a batch's loss); `progress(1)` after each epoch. The loop every
    distillation here shares (text students, layer adapters)."""
    steps = n // batch_size
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * steps)
    order = torch.Generator().manual_seed(seed)
    module.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=order)
        for i in range(steps):
            loss = loss_of(perm[i * batch_size:(i + 1) * batch_size])
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
        if progress:
            progress(1)


def distill_loss(pred: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """1 − cos(pred, target) plus InfoNCE of pred against the batch's targets (targets are unit)."""
    p = nn.functional.normalize(pred, dim=-1)
    logits = p @ target.T / temperature
    return (1 - (p * target).sum(-1)).mean() + nn.functional.cross_entropy(logits, torch.arange(len(p)))


@torch.no_grad()
def merge_mlp_heads(heads: Sequence[MLPHead]) -> MLPHead:
    """One `MLPHead` whose output is the mean of `heads`' outputs (same input and output widths).

    Each head's LayerNorm scale and shift are folded into its first Linear (W·(γ⊙x̂+β)+b =
    (W·diag γ)·x̂ + (Wβ+b)); the hidden layers are stacked and the second Linears averaged."""
    first = heads[0]
    merged = MLPHead(first.input_key, first.in_dim, first.out_dim, hidden=sum(h.hidden for h in heads),
                     dropout=first.dropout)
    norm, lin1, _, _, lin2 = merged.net
    norm.weight.fill_(1.0)
    norm.bias.zero_()
    w1, b1, w2 = [], [], []
    for h in heads:
        ln, a, _, _, b = h.net
        w1.append(a.weight * ln.weight[None, :])
        b1.append(a.weight @ ln.bias + a.bias)
        w2.append(b.weight / len(heads))
    lin1.weight.copy_(torch.cat(w1))
    lin1.bias.copy_(torch.cat(b1))
    lin2.weight.copy_(torch.cat(w2, dim=1))
    lin2.bias.copy_(torch.stack([h.net[4].bias for h in heads]).mean(0))
    return merged.eval()
