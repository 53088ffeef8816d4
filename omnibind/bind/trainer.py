"""Binder: train one tower's head against the locked text anchor from paired examples (LiT).

Backbone features come from the on-disk cache, so training is head-only and takes seconds.
The held-out split is by pair group (no group on both sides), early stopping watches held-out
Recall@1, and the result is a new space whose `space.json` records the manifest hash, losses,
hyper-parameters and held-out metrics.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from omnibind.bind import losses as L
from omnibind.bind.cache import FeatureCache, ItemFeatures, content_key
from omnibind.bind.cache import StackedFeatures as _Stacked
from omnibind.bind.cache import project_items as _embed_items
from omnibind.bind.pairs import BadRow, Pair
from omnibind.errors import OmnibindError
from omnibind.heads import Head, LinearHead, MLPHead, ResidualHead
from omnibind.scale import ddp
from omnibind.space import Space, load_space
from omnibind.tower import Tower


class BindError(OmnibindError):
    """Binding cannot run: no usable pairs, an unknown option, a tower the space lacks."""


@dataclass
class BindConfig:
    tower: str = "image"
    head: str = "residual"  # residual | linear | mlp
    loss: str = "infonce"  # infonce | siglip
    teacher: str | None = "bridge"  # "bridge" (the tower's current head), a space folder/name, or None
    distill: str = "cosine"  # cosine | mse | contrastive
    distill_weight: float = 0.5
    matryoshka: tuple[int, ...] = ()
    hard_negatives: int = 0  # per query, mined in the target modality each epoch
    intra_weight: float = 0.0  # IntraModalStructure regulariser
    geometric_weight: float = 0.0  # GeometricConsistency regulariser
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hidden: int = 512
    temperature: float = 0.07
    val_fraction: float = 0.2
    patience: int = 6
    seed: int = 0


@dataclass
class BindResult:
    space: Space
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    skipped: list[BadRow] = field(default_factory=list)


@dataclass
class _Data:
    feats: _Stacked
    text_ids: np.ndarray
    weights: np.ndarray
    groups: list[str]
    anchors: torch.Tensor  # unique texts' anchor vectors
    teacher: torch.Tensor | None
    replay: np.ndarray  # bool per item: a replay pair (train only)


def bind(space: Space, pairs: Sequence[Pair], config: BindConfig, cache_root: Path | None = None,
         on_epoch: Callable[[dict[str, float]], None] | None = None,
         on_features: Callable[[int], None] | None = None, manifest_hash: str | None = None,
         replay: Sequence[Pair] = (), nproc: int = 1) -> BindResult:
    """Train `config.tower`'s head on `pairs`; return a new space (the input space is untouched).

    `replay` pairs are always trained on and never held out: general-domain pairs mixed into a
    narrow bind so the space keeps what it knew, or extra training data that must not pollute
    the held-out measure of `pairs`. `nproc > 1` trains in that many processes on one global
    batch (omnibind/scale/ddp.py): the same result, up to float summation order."""
    if config.tower not in space.towers or config.tower == space.anchor:
        raise BindError(f"cannot bind tower {config.tower!r}: the space has {list(space.towers)}, anchor {space.anchor!r} is locked")
    if nproc > 1 and not ddp.active():
        return _bind_in_processes(space, pairs, replay, config, cache_root, manifest_hash, nproc)
    torch.manual_seed(config.seed)
    tower = space.towers[config.tower]
    if ddp.rank() > 0:
        ddp.barrier()  # rank 0 fills the feature cache first; the others then read it
    data, skipped = _prepare(space, tower, list(pairs) + list(replay), config, cache_root, on_features,
                             n_main=len(pairs))  # backbones: all threads
    if ddp.rank() == 0:
        ddp.barrier()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # head steps are tiny: 2 threads spend them at barriers (9x slower, benchmarks/bind_speed.py)
    try:
        return _train(space, tower, data, skipped, list(pairs) + list(replay), config, on_epoch, manifest_hash)
    finally:
        torch.set_num_threads(threads)


def _bind_in_processes(space: Space, pairs: Sequence[Pair], replay: Sequence[Pair], config: BindConfig,
                       cache_root: Path | None, manifest_hash: str | None, nproc: int) -> BindResult:
    """`bind` in `nproc` processes that scale/ddp.py launches: the base space goes to them as a
    folder, rank 0 saves the new space and its record, and this process reads them back."""
    with tempfile.TemporaryDirectory(prefix="omnibind-ddp-") as tmp:
        base = Path(tmp) / "base"
        space.save(base)
        args = (str(base), list(pairs), list(replay), config, str(cache_root) if cache_root else None, manifest_hash, tmp)
        ddp.launch(_bind_worker, args, nproc)
        record = json.loads((Path(tmp) / "result.json").read_text("utf-8"))
        new = load_space(Path(tmp) / "space")  # heads are read into memory; backbones load by reference
    skipped = [BadRow(line, reason, manifest) for line, reason, manifest in record["skipped"]]
    return BindResult(new, record["metrics"], record["history"], skipped)


def _bind_worker(space_dir: str, pairs: Sequence[Pair], replay: Sequence[Pair], config: BindConfig,
                 cache_root: str | None, manifest_hash: str | None, out_dir: str) -> None:
    """One process of `_bind_in_processes` (module level: the launcher pickles it by reference)."""
    space = load_space(space_dir)
    result = bind(space, pairs, config, Path(cache_root) if cache_root else None, manifest_hash=manifest_hash,
                  replay=replay)
    if ddp.rank() == 0:
        out = Path(out_dir)
        result.space.save(out / "space")
        skipped = [[b.line, b.reason, b.manifest] for b in result.skipped]
        record = {"metrics": result.metrics, "history": result.history, "skipped": skipped}
        (out / "result.json").write_text(json.dumps(record, default=float), "utf-8")


def _train(space: Space, tower: Tower, data: "_Data", skipped: list[BadRow], pairs: Sequence[Pair],
           config: BindConfig, on_epoch: Callable[[dict[str, float]], None] | None,
           manifest_hash: str | None) -> BindResult:
    train_idx, val_idx = _split(data.groups, config.val_fraction, config.seed, data.replay)
    torch.manual_seed(config.seed)  # here, not before _prepare: loading a backbone draws from torch's RNG
    head = _new_head(tower, config)
    objective = _Objective(config, space.dim)
    params = [p for p in list(head.parameters()) + list(objective.parameters()) if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    before = _evaluate(tower.head, data, val_idx) if len(val_idx) else {}
    history: list[dict[str, float]] = []
    best_state, best_score, best_epoch, stale = copy.deepcopy(head.state_dict()), -1.0, 0, 0
    rng = np.random.default_rng(config.seed)
    for epoch in range(1, config.epochs + 1):
        head.train()
        loss = _train_epoch(head, objective, optimiser, data, train_idx, config, rng)
        row = {"epoch": epoch, "loss": loss}
        if len(val_idx):
            row.update(_evaluate(head, data, val_idx))
            score = row["val_R@1"]
            if score > best_score + 1e-9:
                best_state, best_score, best_epoch, stale = copy.deepcopy(head.state_dict()), score, epoch, 0
            else:
                stale += 1
        history.append(row)
        if on_epoch:
            on_epoch(row)
        if len(val_idx) and stale >= config.patience:
            break
    if len(val_idx):
        head.load_state_dict(best_state)
    else:
        best_epoch = len(history)
    head.eval()
    after = _evaluate(head, data, val_idx) if len(val_idx) else {}
    metrics = {"pairs": len(data.text_ids), "replay": int(data.replay.sum()), "train": len(train_idx), "held_out": len(val_idx), "best_epoch": best_epoch,
               "held_out_bridge": before, "held_out_trained": after, "skipped": len(skipped)}
    new = _with_head(space, config.tower, head, config, metrics, manifest_hash, pairs)
    return BindResult(new, metrics, history, skipped)


# -- data -------------------------------------------------------------------------------------


def _prepare(space: Space, tower: Tower, pairs: Sequence[Pair], config: BindConfig, cache_root: Path | None,
             on_features: Callable[[int], None] | None, n_main: int) -> tuple[_Data, list[BadRow]]:
    skipped: list[BadRow] = []
    oriented = []
    for n, p in enumerate(pairs):
        if isinstance(p.a, str) and not isinstance(p.b, str):
            oriented.append((p.a, p.b, p, n >= n_main))
        elif isinstance(p.b, str) and not isinstance(p.a, str):
            oriented.append((p.b, p.a, p, n >= n_main))
        else:
            skipped.append(BadRow(p.line, "a pair needs one text cell and one media cell (the anchor is text)"))
    if not oriented:
        raise BindError("no usable pairs" + (f"; first problem: {skipped[0]}" if skipped else ""))
    cache = FeatureCache(tower.backbone, cache_root)
    feats, errors = cache.features([o[1] for o in oriented], progress=on_features)
    for i, exc in sorted(errors.items()):
        where = "(replay manifest) " if oriented[i][3] else ""
        skipped.append(BadRow(oriented[i][2].line, f"{where}{exc.source}: {exc.reason}"))
    keep = [i for i in range(len(oriented)) if feats[i] is not None]
    if len(keep) < 2:
        raise BindError(f"fewer than 2 usable pairs ({len(skipped)} skipped; first: {skipped[0] if skipped else '-'})")
    texts = sorted({oriented[i][0] for i in keep})
    text_index = {t: j for j, t in enumerate(texts)}
    anchors = torch.from_numpy(space.embed(texts, batch_size=64))
    data = _Data(
        feats=_Stacked([feats[i] for i in keep]),
        text_ids=np.array([text_index[oriented[i][0]] for i in keep]),
        weights=np.array([oriented[i][2].weight for i in keep], dtype=np.float32),
        groups=[oriented[i][2].group_key for i in keep],
        anchors=anchors,
        teacher=None,
        replay=np.array([oriented[i][3] for i in keep], dtype=bool),
    )
    data.teacher = _teacher_vectors(space, tower, config, data)
    return data, skipped


def _teacher_vectors(space: Space, tower: Tower, config: BindConfig, data: _Data) -> torch.Tensor | None:
    if not config.teacher or config.distill_weight <= 0:
        return None
    if config.teacher == "bridge":
        teacher_head = tower.head
    else:
        other = load_space(config.teacher)
        if config.tower not in other.towers or other.towers[config.tower].backbone_ref != tower.backbone_ref:
            raise BindError(f"teacher space {config.teacher} needs a {config.tower} tower on {tower.backbone_ref}")
        teacher_head = other.towers[config.tower].head
    with torch.no_grad():
        return _embed_items(teacher_head.eval(), data.feats, range(len(data.feats)))


def _split(groups: list[str], fraction: float, seed: int,
           replay: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Held-out pairs by group: a group is entirely train or entirely held out. Replay pairs
    are never held out, and a group that has a replay pair is never held out either."""
    replay = np.zeros(len(groups), dtype=bool) if replay is None else replay
    pinned = {g for g, r in zip(groups, replay) if r}
    unique = sorted(set(groups) - pinned)
    if fraction <= 0 or len(unique) < 5:
        return np.arange(len(groups)), np.array([], dtype=int)
    order = np.random.default_rng(seed).permutation(len(unique))
    held = {unique[i] for i in order[: max(1, math.ceil(fraction * len(unique)))]}
    is_val = np.array([g in held for g in groups])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _weighted_epoch(idx: np.ndarray, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each pair `weight` times per epoch in expectation (stochastic rounding): weight 3 trains a
    pair three times as often, 0.5 every other epoch. Repeats land in different batches."""
    w = weights[idx]
    if np.all(w == 1.0):
        return idx
    counts = np.floor(w).astype(int) + (rng.random(len(w)) < w - np.floor(w))
    return np.repeat(idx, counts)


def _batches(text_ids: np.ndarray, idx: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches in which no caption appears twice (a repeated caption is a false negative).

    Captions are drawn round-robin from per-caption queues, so with few distinct captions
    (keyword captions) a batch holds one pair per caption and there are more batches.
    """
    by_text: dict[int, list[int]] = {}
    for i in rng.permutation(idx):
        by_text.setdefault(int(text_ids[i]), []).append(int(i))
    queues = [q for _, q in sorted(by_text.items())]
    rng.shuffle(queues)
    batches, current, seen = [], [], set()
    while queues:
        next_round = []
        for q in queues:
            caption = int(text_ids[q[-1]])
            if caption in seen or len(current) == size:
                batches.append(np.array(current))
                current, seen = [], set()
            current.append(q.pop())
            seen.add(caption)
            if q:
                next_round.append(q)
        queues = next_round
    if len(current) >= 2:
        batches.append(np.array(current))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order if len(batches[i]) >= 2]


# -- model and objective ----------------------------------------------------------------------


def _feature_key(tower: Tower) -> str:
    outputs = tower.backbone.outputs
    return "pooled" if "pooled" in outputs else "embedding"


def _new_head(tower: Tower, config: BindConfig) -> Head:
    key = _feature_key(tower)
    width = tower.backbone.outputs[key]
    if config.head == "residual":
        if isinstance(tower.head, ResidualHead):  # fine-tune the correction it has (WiSE-FT merges need this)
            head = copy.deepcopy(tower.head)
            head.bridge.requires_grad_(False)
            return head
        return ResidualHead.around(tower.head, key, width, "mlp", config.hidden)
    if config.head == "linear":
        return LinearHead(key, width, tower.dim)
    if config.head == "mlp":
        return MLPHead(key, width, tower.dim, hidden=config.hidden)
    raise BindError(f"unknown head {config.head!r}: residual, linear or mlp")


class _Objective(nn.Module):
    def __init__(self, config: BindConfig, dim: int) -> None:
        super().__init__()
        if config.loss == "infonce":
            base: nn.Module = L.InfoNCE(init_temperature=config.temperature)
        elif config.loss == "siglip":
            base = L.SigLIP()
        else:
            raise BindError(f"unknown loss {config.loss!r}: infonce or siglip")
        dims = [d for d in config.matryoshka if d < dim]
        self.contrastive = L.Matryoshka(base, dims + [dim]) if dims else base
        self.distill = L.Distillation(config.distill) if config.teacher and config.distill_weight > 0 else None
        self.intra = L.IntraModalStructure() if config.intra_weight > 0 else None
        self.geometric = L.GeometricConsistency() if config.geometric_weight > 0 else None
        self.config = config

    def forward(self, media: torch.Tensor, texts: torch.Tensor, teacher: torch.Tensor | None,
                inputs: torch.Tensor | None, negatives: torch.Tensor | None) -> torch.Tensor:
        c = self.config
        if negatives is not None:
            loss = self.contrastive(texts, media, extra_negatives_b=negatives)
        else:
            loss = self.contrastive(texts, media)
        if self.distill is not None and teacher is not None:
            loss = loss + c.distill_weight * self.distill(media, teacher)
        if self.intra is not None:
            loss = loss + c.intra_weight * self.intra(media, inputs)
        if self.geometric is not None:
            loss = loss + c.geometric_weight * self.geometric(media, texts)
        return loss


def _train_epoch(head: Head, objective: _Objective, optimiser: torch.optim.Optimizer, data: _Data,
                 train_idx: np.ndarray, config: BindConfig, rng: np.random.Generator) -> float:
    hard = _hard_negative_table(head, data, train_idx, config.hard_negatives) if config.hard_negatives else None
    key = head.input_key
    total, count = 0.0, 0
    batches = _batches(data.text_ids, _weighted_epoch(train_idx, data.weights, rng), config.batch_size, rng)
    step_loss, step_pairs = None, 0
    params = [p for g in optimiser.param_groups for p in g["params"]]
    for b, batch_idx in enumerate(batches):
        media = _embed_batch(head, data.feats, batch_idx)
        texts = data.anchors[data.text_ids[batch_idx]]
        teacher = data.teacher[batch_idx] if data.teacher is not None else None
        inputs = data.feats.mean(key, batch_idx) if getattr(objective, "intra", None) is not None else None
        negatives = None
        if hard is not None:
            neg_idx = np.unique(hard[np.searchsorted(train_idx, batch_idx)].reshape(-1))
            neg_idx = np.setdiff1d(neg_idx, batch_idx)
            neg_idx = neg_idx[~np.isin(data.text_ids[neg_idx], data.text_ids[batch_idx])]  # no hidden positives
            negatives = _embed_items(head, data.feats, neg_idx) if len(neg_idx) else None
        loss = objective(media, texts, teacher, inputs, negatives)
        # Caption-disjoint batches can be small (keyword captions: one pair per caption); they are
        # accumulated into one optimiser step of about batch_size pairs, each keeping its own negatives.
        weighted = loss * len(batch_idx)
        step_loss = weighted if step_loss is None else step_loss + weighted
        step_pairs += len(batch_idx)
        if step_pairs >= config.batch_size or b == len(batches) - 1:
            optimiser.zero_grad()
            (step_loss / step_pairs).backward()
            if ddp.active():
                ddp.average_gradients(params)
            optimiser.step()
            step_loss, step_pairs = None, 0
        total += float(loss.detach()) * len(batch_idx)
        count += len(batch_idx)
    return total / max(1, count)


def _embed_batch(head: Head, feats: _Stacked, batch_idx: np.ndarray) -> torch.Tensor:
    """The batch's media vectors; with several processes, each embeds its slice and the slices
    are gathered with their gradients (the loss then sees the global batch)."""
    if not ddp.active():
        return _embed_items(head, feats, batch_idx)
    local = ddp.local_slice(batch_idx)
    mine = _embed_items(head, feats, local) if len(local) else torch.zeros((0, head.out_dim))
    return ddp.gather_with_grad(mine, len(batch_idx))


def _hard_negative_table(head: Head, data: _Data, train_idx: np.ndarray, k: int) -> np.ndarray:
    """For each train pair, the k train media (target modality) most similar to its caption."""
    with torch.no_grad():
        pool = _embed_items(head, data.feats, train_idx)
        queries = data.anchors[data.text_ids[train_idx]]
        positives = torch.arange(len(train_idx))
        local = L.mine_hard_negatives(queries, pool, positives, k)
    return train_idx[np.asarray(local)]


@torch.no_grad()
def _evaluate(head: Head, data: _Data, idx: np.ndarray) -> dict[str, float]:
    """Held-out retrieval: media->caption R@1 over the held-out captions, and caption->media R@K."""
    head.eval()
    media = _embed_items(head, data.feats, idx)
    ids = data.text_ids[idx]
    unique = np.unique(ids)
    pos = {t: j for j, t in enumerate(unique)}
    sims = media @ data.anchors[unique].T
    target = torch.tensor([pos[t] for t in ids])
    out = {"val_R@1": float(100 * (sims.argmax(1) == target).float().mean())}
    # caption -> media: each caption's relevant items are all media paired with it
    t2m = sims.T  # [captions, media]
    relevant = target[None, :] == torch.arange(len(unique))[:, None]
    order = t2m.argsort(dim=1, descending=True)
    hit_ranks = relevant.gather(1, order).float().argmax(1)  # first relevant position
    for k in (1, 5, 10):
        out[f"val_caption_R@{k}"] = float(100 * (hit_ranks < k).float().mean())
    return out


def _with_head(space: Space, modality: str, head: Head, config: BindConfig, metrics: dict[str, Any],
               manifest_hash: str | None, pairs: Sequence[Pair]) -> Space:
    towers = dict(space.towers)
    old = towers[modality]
    towers[modality] = Tower(modality, old.backbone_ref, head.eval(), old._backbone)
    if manifest_hash is None:
        h = hashlib.sha256()
        for p in pairs:
            cells = [c if isinstance(c, str) else content_key(c) for c in (p.a, p.b)]
            h.update(f"{cells[0]}\t{cells[1]}\t{p.weight}\t{p.group}\n".encode())
        manifest_hash = h.hexdigest()
    provenance = {
        **space.provenance,
        f"bind_{modality}": {"base_space": space.name, "manifest_sha256": manifest_hash, "config": asdict(config),
                             "metrics": metrics},
    }
    return Space(towers, name=f"{space.name}+bind-{modality}", anchor=space.anchor, video=space.video,
                 temperature=space.temperature, provenance=provenance, limits=space.limits)
