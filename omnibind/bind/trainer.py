"""Binder: train one tower's head against the locked text anchor from paired examples (LiT).

Backbone features come from the on-disk cache, so training is head-only and takes seconds.
The objective is a list of loss objects (omnibind/bind/losses.py) that the trainer sums;
`BindConfig` builds the default list from its fields and `bind(..., losses=[...])` replaces it.
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
from omnibind.bind.cache import FeatureCache, content_key
from omnibind.bind.cache import StackedFeatures as _Stacked
from omnibind.bind.cache import project_items as _embed_items
from omnibind.bind.pairs import BadRow, Pair, manifest_path, manifest_sha256_of, read_manifest
from omnibind.errors import OmnibindError
from omnibind.calibration_fit import refit_pairs
from omnibind.evaluate.metrics import retrieval_metrics
from omnibind.heads import Head, LinearHead, MLPHead, ResidualHead
from omnibind.scale import ddp
from omnibind.space import Space, load_space
from omnibind.tower import Tower

EpochCallback = Callable[[dict[str, float]], None]
CountCallback = Callable[[int], None]


class BindError(OmnibindError):
    """Binding cannot run: no usable pairs, an unknown option, a tower the space lacks."""


@dataclass
class BindConfig:
    """Hyper-parameters of a bind, recorded in the new space's provenance. The loss fields describe
    the default loss terms (`default_losses`); `bind(..., losses=[...])` replaces those terms."""

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
    unlabelled_weight: float = 0.5  # distillation toward the teacher on `bind(..., unlabelled=...)` media

    def default_losses(self, dim: int) -> list[L.BindLoss]:
        """The loss terms the fields `loss`, `temperature`, `matryoshka`, `teacher`, `distill`,
        `distill_weight`, `intra_weight` and `geometric_weight` describe, for a space of `dim`
        dimensions: what `bind` trains with unless it is given `losses`."""
        if self.loss == "infonce":
            base: L.BindLoss = L.InfoNCE(init_temperature=self.temperature)
        elif self.loss == "siglip":
            base = L.SigLIP()
        else:
            raise BindError(f"unknown loss {self.loss!r}: infonce or siglip")
        dims = [d for d in self.matryoshka if d < dim]
        terms: list[L.BindLoss] = [L.Matryoshka(base, dims + [dim]) if dims else base]
        if self.teacher and self.distill_weight > 0:
            terms.append(L.Distillation(self.distill, weight=self.distill_weight))
        if self.intra_weight > 0:
            terms.append(L.IntraModalStructure(weight=self.intra_weight))
        if self.geometric_weight > 0:
            terms.append(L.GeometricConsistency(weight=self.geometric_weight))
        return terms


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
    unlabelled: _Stacked | None = None  # media without captions, only distilled toward the teacher
    unlabelled_teacher: torch.Tensor | None = None


def bind(space: Space, pairs: Sequence[Pair], config: BindConfig, cache_root: Path | None = None,
         on_epoch: EpochCallback | None = None, on_features: CountCallback | None = None,
         manifest_hash: str | None = None, replay: Sequence[Pair] = (), nproc: int = 1,
         losses: Sequence[nn.Module] | None = None, unlabelled: Sequence[Any] = ()) -> BindResult:
    """Train `config.tower`'s head on `pairs`; return a new space (the input space is untouched).

    `replay` pairs are always trained on and never held out: general-domain pairs mixed into a
    narrow bind so the space keeps what it knew, or extra training data that must not pollute
    the held-out measure of `pairs`. `unlabelled` media (paths, images, clips: no captions) are
    plentiful where pairs are not: every batch also pulls the head's vectors of a sample of them
    toward the teacher's (cosine, `config.unlabelled_weight`), so the head keeps the bridge's
    behaviour on data unlike the pairs instead of drifting there (issue 15). `nproc > 1` trains in that many processes on one global
    batch (omnibind/scale/ddp.py): the same result, up to float summation order.

    `losses` replaces the loss terms the config describes (`BindConfig.default_losses`); copies
    are trained, so the same list gives the same result twice. `manifest_hash` defaults to
    `manifest_sha256_of(pairs, replay)`: the manifest files' sha256 when the pairs were read with
    `read_manifest`, the same digest `bind_manifest` and the CLI record."""
    if config.tower not in space.towers or config.tower == space.anchor:
        raise BindError(f"cannot bind tower {config.tower!r}: the space has {list(space.towers)}, "
                        f"anchor {space.anchor!r} is locked")
    terms = _loss_terms(config, space.dim, losses)
    manifest_hash = manifest_hash or manifest_sha256_of(pairs, replay)
    if unlabelled and not config.teacher:
        raise BindError("unlabelled media are distilled toward a teacher: set BindConfig.teacher")
    if nproc > 1 and not ddp.active():
        if unlabelled:
            raise BindError("unlabelled media are not supported with nproc > 1 yet")
        return _bind_in_processes(space, pairs, replay, config, losses, cache_root, manifest_hash, nproc)
    sources = (manifest_path(pairs), manifest_path(replay))
    everything = list(pairs) + list(replay)
    torch.manual_seed(config.seed)
    tower = space.towers[config.tower]
    if ddp.rank() > 0:
        ddp.barrier()  # rank 0 fills the feature cache first; the others then read it
    needs_teacher = any(getattr(t, "uses_teacher", False) for t in terms)
    data, skipped = _prepare(space, tower, everything, config, cache_root, on_features, len(pairs), needs_teacher,
                             sources)  # backbones: all threads
    if unlabelled:
        _add_unlabelled(space, tower, config, data, unlabelled, cache_root)
    if ddp.rank() == 0:
        ddp.barrier()
    threads = torch.get_num_threads()
    # head steps are tiny: 2 threads spend them at barriers (9x slower, benchmarks/bind_speed.py)
    torch.set_num_threads(1)
    try:
        return _train(space, tower, data, skipped, everything, config, terms, on_epoch, manifest_hash)
    finally:
        torch.set_num_threads(threads)


def bind_manifest(space: Space, pairs_path: str | Path, config: BindConfig, replay_path: str | Path | None = None,
                  cache_root: Path | None = None, nproc: int = 1, on_read: CountCallback | None = None,
                  on_features: CountCallback | None = None, on_epoch: EpochCallback | None = None,
                  losses: Sequence[nn.Module] | None = None) -> BindResult:
    """`omnibind bind`: read the manifest (and the replay manifest), bind, return the result.

    The one job behind the CLI, so that it only parses options and prints. `on_read(n)` is called
    once the manifests are read, with their number of pairs (the size of a feature progress bar);
    `on_features` and `on_epoch` are `bind`'s. The space records `manifest_sha256(pairs_path,
    replay_path)`. `result.skipped` holds every row left out, each naming its manifest
    (`BadRow.manifest`): rows that did not parse, then pairs that failed to load;
    `metrics["skipped"]` counts only the latter, as `bind` does."""
    pairs, bad = read_manifest(pairs_path)
    replay, replay_bad = read_manifest(replay_path) if replay_path is not None else ([], [])
    if on_read:
        on_read(len(pairs) + len(replay))
    result = bind(space, pairs, config, cache_root, on_epoch=on_epoch, on_features=on_features, replay=replay,
                  nproc=nproc, losses=losses)
    result.skipped = [*bad, *replay_bad, *result.skipped]
    return result


def _loss_terms(config: BindConfig, dim: int, losses: Sequence[nn.Module] | None) -> list[nn.Module]:
    """The terms to train with: copies of the given ones (a bind never trains the caller's
    objects), or the config's defaults. Each needs a distinct name (its history key)."""
    terms = config.default_losses(dim) if losses is None else [copy.deepcopy(t) for t in losses]
    if not terms:
        raise BindError("losses is empty: give at least one loss term")
    names = [_term_name(t) for t in terms]
    if len(set(names)) != len(names):
        raise BindError(f"loss terms need distinct names (name=...), got {names}")
    if any(getattr(t, "uses_teacher", False) for t in terms) and not config.teacher:
        raise BindError("a loss term uses a teacher: set BindConfig.teacher ('bridge' or a space)")
    return terms


def _term_name(term: nn.Module) -> str:
    return str(getattr(term, "name", type(term).__name__.lower()))


def _bind_in_processes(space: Space, pairs: Sequence[Pair], replay: Sequence[Pair], config: BindConfig,
                       losses: Sequence[nn.Module] | None, cache_root: Path | None, manifest_hash: str | None,
                       nproc: int) -> BindResult:
    """`bind` in `nproc` processes that scale/ddp.py launches: the base space goes to them as a
    folder, rank 0 saves the new space and its record, and this process reads them back."""
    with tempfile.TemporaryDirectory(prefix="omnibind-ddp-") as tmp:
        base = Path(tmp) / "base"
        space.save(base)
        # the pair lists travel as they are: pairs read from a manifest keep naming it in skipped rows
        args = (str(base), pairs, replay, config, losses, str(cache_root) if cache_root else None, manifest_hash, tmp)
        ddp.launch(_bind_worker, args, nproc)
        record = json.loads((Path(tmp) / "result.json").read_text("utf-8"))
        new = load_space(Path(tmp) / "space")  # heads are read into memory; backbones load by reference
    skipped = [BadRow(line, reason, manifest) for line, reason, manifest in record["skipped"]]
    return BindResult(new, record["metrics"], record["history"], skipped)


def _bind_worker(space_dir: str, pairs: Sequence[Pair], replay: Sequence[Pair], config: BindConfig,
                 losses: Sequence[nn.Module] | None, cache_root: str | None, manifest_hash: str | None,
                 out_dir: str) -> None:
    """One process of `_bind_in_processes` (module level: the launcher pickles it by reference)."""
    space = load_space(space_dir)
    result = bind(space, pairs, config, Path(cache_root) if cache_root else None, manifest_hash=manifest_hash,
                  replay=replay, losses=losses)
    if ddp.rank() == 0:
        out = Path(out_dir)
        result.space.save(out / "space")
        skipped = [[b.line, b.reason, b.manifest] for b in result.skipped]
        record = {"metrics": result.metrics, "history": result.history, "skipped": skipped}
        (out / "result.json").write_text(json.dumps(record, default=float), "utf-8")


def _train(space: Space, tower: Tower, data: _Data, skipped: list[BadRow], pairs: Sequence[Pair],
           config: BindConfig, terms: list[nn.Module], on_epoch: EpochCallback | None,
           manifest_hash: str | None) -> BindResult:
    train_idx, val_idx = _split(data.groups, config.val_fraction, config.seed, data.replay)
    torch.manual_seed(config.seed)  # here, not before _prepare: loading a backbone draws from torch's RNG
    head = _new_head(tower, config)
    objective = _Objective(terms)
    params = [p for p in list(head.parameters()) + list(objective.parameters()) if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    before = _evaluate(tower.head, data, val_idx) if len(val_idx) else {}
    history: list[dict[str, float]] = []
    best_state, best_score, best_epoch, stale = copy.deepcopy(head.state_dict()), -1.0, 0, 0
    rng = np.random.default_rng(config.seed)
    for epoch in range(1, config.epochs + 1):
        head.train()
        loss, parts = _train_epoch(head, objective, optimiser, data, train_idx, config, rng)
        row = {"epoch": epoch, "loss": loss, **parts}
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
    calibration = _refit_calibration(config, head, data, val_idx)
    metrics = {"pairs": len(data.text_ids), "replay": int(data.replay.sum()), "train": len(train_idx),
               "unlabelled": len(data.unlabelled) if data.unlabelled is not None else 0,
               "held_out": len(val_idx), "best_epoch": best_epoch, "held_out_bridge": before,
               "held_out_trained": after, "skipped": len(skipped), "calibration_refit": calibration}
    new = _with_head(space, config, head, metrics, manifest_hash or _cells_sha256(pairs), objective.describe())
    new.calibration = _calibration_after_bind(space.calibration, config.tower, calibration)
    return BindResult(new, metrics, history, skipped)


@torch.no_grad()
def _refit_calibration(config: BindConfig, head: Head, data: _Data, idx: np.ndarray) -> dict[str, list[float]]:
    """The bound tower's match-probability fits ('text->m', 'm->text'), refit on the held-out pairs
    with the trained head (omnibind/calibration_fit.py); empty when too few are held out."""
    if not len(idx):
        return {}
    media = _embed_items(head, data.feats, idx).numpy()
    ids = data.text_ids[idx]
    unique = np.unique(ids)
    return refit_pairs(config.tower, data.anchors[unique].numpy(), media, unique[:, None] == ids[None, :], config.seed)


def _calibration_after_bind(old: dict[str, list[float]], modality: str, refit: dict[str, list[float]]) -> dict[str, list[float]]:
    """The old space's fits, less every pair that involves the re-bound tower (its vectors moved),
    plus the refit ones: a stale fit is never carried into the new space."""
    kept = {k: v for k, v in old.items() if modality not in k.split("->")}
    return {**kept, **refit}


# -- data -------------------------------------------------------------------------------------


def _prepare(space: Space, tower: Tower, pairs: Sequence[Pair], config: BindConfig, cache_root: Path | None,
             on_features: CountCallback | None, n_main: int, needs_teacher: bool,
             sources: tuple[str | None, str | None]) -> tuple[_Data, list[BadRow]]:
    """Features, anchor vectors (and teacher vectors) of the usable pairs; the others as bad rows
    naming their manifest (`sources`: of the first `n_main` pairs, of the rest)."""
    skipped: list[BadRow] = []
    oriented = []
    for n, p in enumerate(pairs):
        if isinstance(p.a, str) and not isinstance(p.b, str):
            oriented.append((p.a, p.b, p, n >= n_main))
        elif isinstance(p.b, str) and not isinstance(p.a, str):
            oriented.append((p.b, p.a, p, n >= n_main))
        else:
            reason = "a pair needs one text cell and one media cell (the anchor is text)"
            skipped.append(BadRow(p.line, reason, sources[n >= n_main]))
    if not oriented:
        raise BindError("no usable pairs" + (f"; first problem: {skipped[0]}" if skipped else ""))
    cache = FeatureCache(tower.backbone, cache_root)
    feats, errors = cache.features([o[1] for o in oriented], progress=on_features)
    for i, exc in sorted(errors.items()):
        where = "(replay manifest) " if oriented[i][3] else ""
        skipped.append(BadRow(oriented[i][2].line, f"{where}{exc.source}: {exc.reason}", sources[oriented[i][3]]))
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
    data.teacher = _teacher_vectors(space, tower, config, data.feats) if needs_teacher else None
    return data, skipped


def _add_unlabelled(space: Space, tower: Tower, config: BindConfig, data: _Data, media: Sequence[Any],
                    cache_root: Path | None) -> None:
    """Cached features and teacher vectors of the unlabelled media; one that fails to load is left
    out (it has no pair to report), and none loading at all is an error."""
    feats, _ = FeatureCache(tower.backbone, cache_root).features(list(media))
    kept = [f for f in feats if f is not None]
    if not kept:
        raise BindError(f"none of the {len(media)} unlabelled media could be read")
    data.unlabelled = _Stacked(kept)
    data.unlabelled_teacher = _teacher_vectors(space, tower, config, data.unlabelled)


def _unlabelled_loss(head: Head, data: _Data, n: int, weight: float, rng: np.random.Generator) -> torch.Tensor | None:
    """Cosine distillation of a random sample of `n` unlabelled media toward the teacher."""
    if data.unlabelled is None or weight <= 0:
        return None
    idx = np.sort(rng.choice(len(data.unlabelled), size=min(n, len(data.unlabelled)), replace=False))
    return weight * L.Distillation("cosine").compute(_embed_items(head, data.unlabelled, idx), data.unlabelled_teacher[idx])


def _teacher_vectors(space: Space, tower: Tower, config: BindConfig, feats: _Stacked) -> torch.Tensor | None:
    """The teacher's vectors of every item, once (the teacher is frozen)."""
    if not config.teacher:
        return None
    if config.teacher == "bridge":
        teacher_head = tower.head
    else:
        other = load_space(config.teacher)
        if config.tower not in other.towers or other.towers[config.tower].backbone_ref != tower.backbone_ref:
            raise BindError(f"teacher space {config.teacher} needs a {config.tower} tower on {tower.backbone_ref}")
        teacher_head = other.towers[config.tower].head
    with torch.no_grad():
        return _embed_items(teacher_head.eval(), feats, range(len(feats)))


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
    """The sum of the loss terms, each times its `weight`; also each term's unweighted value (the
    history's `loss_<name>`). A module, so the terms' temperatures reach the optimiser."""

    def __init__(self, terms: Sequence[nn.Module]) -> None:
        super().__init__()
        self.terms = nn.ModuleList(terms)

    def forward(self, batch: L.BatchOutputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total: torch.Tensor | None = None
        parts: dict[str, torch.Tensor] = {}
        for term in self.terms:
            value = term(batch)
            parts[_term_name(term)] = value
            weighted = float(getattr(term, "weight", 1.0)) * value
            total = weighted if total is None else total + weighted
        assert total is not None  # _loss_terms refuses an empty list
        return total, parts

    def describe(self) -> list[dict[str, Any]]:
        """What the space's provenance records of the objective."""
        return [{"name": _term_name(t), "class": f"{type(t).__module__}.{type(t).__qualname__}",
                 "weight": float(getattr(t, "weight", 1.0))} for t in self.terms]


def _train_epoch(head: Head, objective: _Objective, optimiser: torch.optim.Optimizer, data: _Data,
                 train_idx: np.ndarray, config: BindConfig,
                 rng: np.random.Generator) -> tuple[float, dict[str, float]]:
    """One epoch; the mean loss per pair and each term's mean (`loss_<name>`)."""
    hard = _hard_negative_table(head, data, train_idx, config.hard_negatives) if config.hard_negatives else None
    total, count, part_totals = 0.0, 0, {}
    batches = _batches(data.text_ids, _weighted_epoch(train_idx, data.weights, rng), config.batch_size, rng)
    step_loss, step_pairs = None, 0
    params = [p for g in optimiser.param_groups for p in g["params"]]
    for b, batch_idx in enumerate(batches):
        loss, parts = objective(_batch_outputs(head, data, batch_idx, train_idx, hard))
        extra = _unlabelled_loss(head, data, len(batch_idx), config.unlabelled_weight, rng)
        if extra is not None:
            loss, parts = loss + extra, {**parts, "unlabelled": extra}
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
        for name, value in parts.items():
            part_totals[name] = part_totals.get(name, 0.0) + float(value.detach()) * len(batch_idx)
        count += len(batch_idx)
    return total / max(1, count), {f"loss_{k}": v / max(1, count) for k, v in part_totals.items()}


def _batch_outputs(head: Head, data: _Data, batch_idx: np.ndarray, train_idx: np.ndarray,
                   hard: np.ndarray | None) -> L.BatchOutputs:
    """What the loss terms see of one batch. Hard negatives are other train media mined for the
    batch's captions, minus the batch itself and any media of the batch's captions (hidden positives)."""
    negatives = None
    media = _embed_batch(head, data.feats, batch_idx)
    if hard is not None:
        neg_idx = np.unique(hard[np.searchsorted(train_idx, batch_idx)].reshape(-1))
        neg_idx = np.setdiff1d(neg_idx, batch_idx)
        neg_idx = neg_idx[~np.isin(data.text_ids[neg_idx], data.text_ids[batch_idx])]
        negatives = _embed_items(head, data.feats, neg_idx) if len(neg_idx) else None
    return L.BatchOutputs(
        media=media,
        texts=data.anchors[data.text_ids[batch_idx]],
        teacher=data.teacher[batch_idx] if data.teacher is not None else None,
        negatives=negatives,
        features=lambda: data.feats.mean(head.input_key, batch_idx),
    )


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
    """Held-out retrieval (evaluate.metrics, ties against the query): media->caption R@1 over the
    held-out captions, and caption->media R@K (a caption's relevant items: all media paired with it)."""
    head.eval()
    with torch.no_grad():
        media = _embed_items(head, data.feats, idx)
    ids = data.text_ids[idx]
    unique = np.unique(ids)
    target = np.searchsorted(unique, ids)
    sims = (media @ data.anchors[unique].T).numpy()
    out = {"val_R@1": retrieval_metrics(sims, target, ks=(1,))["R@1"]}
    caption = retrieval_metrics(sims.T, target[None, :] == np.arange(len(unique))[:, None])
    out.update({f"val_caption_R@{k}": caption[f"R@{k}"] for k in (1, 5, 10)})
    return out


def _with_head(space: Space, config: BindConfig, head: Head, metrics: dict[str, Any], manifest_hash: str,
               losses: list[dict[str, Any]]) -> Space:
    """The new space: `space` with the trained head on `config.tower`, and a provenance record."""
    modality = config.tower
    towers = dict(space.towers)
    old = towers[modality]
    towers[modality] = Tower(modality, old.backbone_ref, head.eval(), old._backbone)
    record = {"base_space": space.name, "manifest_sha256": manifest_hash, "config": asdict(config),
              "losses": losses, "metrics": metrics}
    provenance = {**space.provenance, f"bind_{modality}": record}
    return Space(towers, name=f"{space.name}+bind-{modality}", anchor=space.anchor, video=space.video,
                 temperature=space.temperature, provenance=provenance, limits=space.limits,
                 views=space.views_config())


def _cells_sha256(pairs: Sequence[Pair]) -> str:
    """The manifest digest of pairs built in code (no file to hash): a sha256 over their cells,
    media cells by content."""
    h = hashlib.sha256()
    for p in pairs:
        cells = [c if isinstance(c, str) else content_key(c) for c in (p.a, p.b)]
        h.update(f"{cells[0]}\t{cells[1]}\t{p.weight}\t{p.group}\n".encode())
    return h.hexdigest()
