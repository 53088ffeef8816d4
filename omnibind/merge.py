"""Weight-interpolation merging of spaces that share one structure, and the alpha sweep.

Two spaces with the same towers (modalities, backbone references and head configs) can be
merged head by head: every floating-point head tensor becomes `(1 - alpha) * A + alpha * B`
(WiSE-FT, Wortsman et al. 2022; model soups; UnIVAL's weight interpolation across tasks).
Backbones are shared references, so only the heads move. A sweep over alpha, scored on a
general task and a domain task, shows the trade-off between what A keeps and what B gains.

    merged = merge_spaces(zero_shot, finetuned, alpha=0.5)
    result = sweep(zero_shot, finetuned, [0, 0.25, 0.5, 0.75, 1], "tux-images", "fashion-mnist", "out/")

The sweep's tasks are `omnibind eval`'s tasks (`omnibind.evaluate.suite`), scored by the same code:
a task name means one number, whichever command reports it. Evaluation never imports this module.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnibind.errors import InputError, SpaceError
from omnibind.evaluate.suite import FeatureCaches, score, task_names
from omnibind.heads import build_head
from omnibind.space import Space, heads_sha256
from omnibind.tower import Tower
from omnibind.version import __version__

MERGED_BY = "omnibind.merge"
Row = dict[str, float]  # {"alpha": a, "<task>/<metric>": value, ...}


# -- merging ------------------------------------------------------------------------------------


def merge_spaces(a: Space, b: Space, alpha: float, name: str | None = None, pairs: str | Path | None = None) -> Space:
    """The space whose head tensors are `(1 - alpha) * a + alpha * b`.

    `a` and `b` must share their structure: the same modalities, anchor and video fusion, and
    per tower the same backbone reference and head config (kind, dims, input key, ...);
    otherwise `SpaceError` names the first difference. Non-float buffers are copied and must be
    equal. `alpha=0` returns a's weights exactly, `alpha=1` b's. The space temperature is
    interpolated the same way. The provenance records both parents (name, a sha256 of their
    heads' state, their own provenance) and alpha. Calibration: the parents' fits that still hold
    are kept; with `pairs` (a held-out bind manifest) the moved towers' fits are refit on them.
    """
    alpha = _check_alpha(alpha)
    _check_structure(a, b)
    towers = {}
    for modality, ta in a.towers.items():
        tb = b.towers[modality]
        state = _merge_state(modality, ta.head.state_dict(), tb.head.state_dict(), alpha)
        head = build_head(ta.head.config())
        try:
            head.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise SpaceError(f"merged {modality} head weights do not fit its config: {exc}") from exc
        # Share a's loaded backbone, if any: same reference, same frozen weights.
        towers[modality] = Tower(modality, ta.backbone_ref, head.eval(), _backbone=ta._backbone)
    temperature = a.temperature if a.temperature == b.temperature else _lerp_float(a.temperature, b.temperature, alpha)
    calibration, dropped = _merged_calibration(a, b, alpha)
    provenance = {
        "built_by": MERGED_BY,
        "training": f"none (merged by {MERGED_BY}: every float head tensor = (1 - alpha) * A + alpha * B)",
        "alpha": alpha,
        "parents": [_parent(a, "A"), _parent(b, "B")],
        "calibration": ("kept the parents' fits of pairs whose towers the merge leaves unchanged"
                        + (f"; dropped (the towers moved, no held-out pairs here to refit): {', '.join(dropped)}"
                           if dropped else "")),
    }
    merged = Space(
        towers,
        name=name or f"{a.name}+{b.name}@{alpha:g}",
        anchor=a.anchor,
        video=a.video,
        temperature=temperature,
        provenance=provenance,
        limits=a.limits,
        calibration=calibration,
        views=a.views_config(),
    )
    if pairs is not None:
        refit = refit_calibration(merged, pairs)
        merged.provenance["calibration"] += f"; refit on {Path(pairs).name}: {', '.join(refit) or 'nothing (too few pairs)'}"
    return merged


def refit_calibration(space: Space, pairs_path: str | Path) -> list[str]:
    """Refit `space`'s 'text-><m>' and '<m>-><text>' match-probability fits on held-out pairs (a
    bind manifest: caption + medium per row) with the space's own vectors, in place; the refit
    keys, sorted. A merge moves its towers, so the parents' fits no longer describe them: this is
    how a merged space gets calibrated search back (pairs the heads never trained on, please)."""
    from omnibind.bind.pairs import read_manifest
    from omnibind.calibration_fit import refit_pairs
    from omnibind.inputs import to_input

    pairs, _ = read_manifest(pairs_path)
    by_modality: dict[str, list[tuple[str, Any]]] = {}
    for p in pairs:
        text, medium = (p.a, p.b) if isinstance(p.a, str) else (p.b, p.a)
        if isinstance(text, str) and not isinstance(medium, str):
            try:
                item = to_input(medium)
            except InputError:
                continue  # a bad file is left out of the fit, as bind leaves it out of training
            by_modality.setdefault(item.modality, []).append((text, item))
    refit: dict[str, list[float]] = {}
    for modality, rows in sorted(by_modality.items()):
        if modality not in space.towers or modality == space.anchor:
            continue
        captions = sorted({t for t, _ in rows})
        match = np.array([[t == c for t, _ in rows] for c in captions])
        refit.update(refit_pairs(modality, space.embed(captions), space.embed([m for _, m in rows]), match))
    space.calibration = {**space.calibration, **refit}
    return sorted(refit)


def _merged_calibration(a: Space, b: Space, alpha: float) -> tuple[dict[str, list[float]], list[str]]:
    """(fits kept, pairs dropped): a pair keeps its fit when the merged space gives its towers the
    vectors that fit was made for: alpha 0 (a's), alpha 1 (b's), or towers equal in both parents
    with the same fit. A stale fit would rank a mixed result list on wrong probabilities."""
    if alpha in (0.0, 1.0):
        source = a if alpha == 0.0 else b
        return dict(source.calibration), []
    same = {m for m in a.towers if _same_head(a.towers[m].head.state_dict(), b.towers[m].head.state_dict())}
    kept, dropped = {}, []
    for pair, fit in sorted(a.calibration.items()):
        if set(pair.split("->")) <= same and b.calibration.get(pair) == fit:
            kept[pair] = fit
        else:
            dropped.append(pair)
    return kept, dropped


def _same_head(sa: dict[str, torch.Tensor], sb: dict[str, torch.Tensor]) -> bool:
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _parent(space: Space, role: str) -> dict[str, Any]:
    return {"role": role, "name": space.name, "heads_sha256": heads_sha256(space), "provenance": space.provenance}


def _check_alpha(alpha: float) -> float:
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}") from None
    if not 0.0 <= alpha <= 1.0:  # also rejects NaN
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return alpha


def _check_structure(a: Space, b: Space) -> None:
    if not isinstance(a, Space) or not isinstance(b, Space):
        raise TypeError("merge_spaces takes two Space objects")
    if set(a.towers) != set(b.towers):
        only_a, only_b = sorted(set(a.towers) - set(b.towers)), sorted(set(b.towers) - set(a.towers))
        parts = [f"only A has {', '.join(only_a)}" if only_a else "", f"only B has {', '.join(only_b)}" if only_b else ""]
        raise SpaceError(f"cannot merge: the spaces have different modalities ({'; '.join(p for p in parts if p)})")
    if a.anchor != b.anchor:
        raise SpaceError(f"cannot merge: anchor differs: A {a.anchor!r}, B {b.anchor!r}")
    for modality, ta in a.towers.items():
        diff = _first_difference(ta.config(), b.towers[modality].config())
        if diff:
            path, va, vb = diff
            raise SpaceError(f"cannot merge: {modality} tower {path} differs: A {va!r}, B {vb!r}")
    diff = _first_difference(a.video.config(), b.video.config())
    if diff:
        path, va, vb = diff
        raise SpaceError(f"cannot merge: video fusion {path} differs: A {va!r}, B {vb!r}")


_MISSING = object()


def _first_difference(x: Any, y: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """(dotted path, value in x, value in y) of the first place two configs differ, else None."""
    if isinstance(x, dict) and isinstance(y, dict):
        for key in list(x) + [k for k in y if k not in x]:
            sub = f"{path}.{key}" if path else str(key)
            vx, vy = x.get(key, _MISSING), y.get(key, _MISSING)
            if vx is _MISSING or vy is _MISSING:
                return sub, None if vx is _MISSING else vx, None if vy is _MISSING else vy
            found = _first_difference(vx, vy, sub)
            if found:
                return found
        return None
    if type(x) is not type(y) and not (isinstance(x, (int, float)) and isinstance(y, (int, float))):
        return path, x, y
    return None if x == y else (path, x, y)


def _merge_state(modality: str, sa: dict[str, torch.Tensor], sb: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    if list(sa) != list(sb):
        missing = sorted(set(sa) ^ set(sb))
        raise SpaceError(f"cannot merge: {modality} head tensors differ in names ({', '.join(missing) or 'order'})")
    out = {}
    for key, ta in sa.items():
        tb = sb[key]
        where = f"{modality} head tensor {key!r}"
        if ta.shape != tb.shape:
            raise SpaceError(f"cannot merge: {where} has shape {tuple(ta.shape)} in A, {tuple(tb.shape)} in B")
        if ta.dtype != tb.dtype:
            raise SpaceError(f"cannot merge: {where} has dtype {ta.dtype} in A, {tb.dtype} in B")
        if ta.is_floating_point():
            out[key] = _lerp(ta, tb, alpha)
        else:
            if not torch.equal(ta, tb):
                raise SpaceError(f"cannot merge: {where} is not floating point and differs between A and B")
            out[key] = ta.detach().clone()
    return out


def _lerp(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 - alpha) * a + alpha * b, computed in float64; the endpoints are exact copies."""
    if alpha == 0.0:
        return a.detach().clone()
    if alpha == 1.0:
        return b.detach().clone()
    mixed = (1.0 - alpha) * a.detach().double() + alpha * b.detach().to(a.device).double()
    return mixed.to(a.dtype)


def _lerp_float(a: float, b: float, alpha: float) -> float:
    return a if alpha == 0.0 else b if alpha == 1.0 else (1.0 - alpha) * a + alpha * b


# -- sweeping ------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What a sweep measured: one row per alpha, its two headline columns, the record it wrote."""

    rows: list[Row]
    x_metric: str  # the domain task's headline column, e.g. "fashion-mnist/accuracy"
    y_metric: str  # the general task's headline column, e.g. "tux-images/caption->image/R@10"
    record: dict[str, Any]  # what merge_sweep.json holds
    files: dict[str, Path] = field(default_factory=dict)  # "json", "png" when written


def sweep(
    a: Space,
    b: Space,
    alphas: Iterable[float],
    general: str,
    domain: str,
    out: str | Path | None = None,
    *,
    limit: int | None = None,
    cache_root: Path | None = None,
    refs: tuple[str, str] | None = None,
    progress: Callable[[Row], None] | None = None,
) -> SweepResult:
    """Merge A and B at each alpha (in the order given) and score each merged space on two tasks.

    `general` is a task A is good at, `domain` one B was tuned for: any task `omnibind eval` runs
    (`tux-images`, `fashion-mnist`, `pairs:MANIFEST`, ...), scored exactly as there, so a column at
    alpha=0 equals A's number in A's eval report for the same `limit`. Rows hold alpha and every
    scalar metric as "<task>/<metric>"; the domain's headline is x, the general's y (as WiSE-FT
    plots it). Backbone features come from the bind feature cache (`cache_root`), read once and
    shared by all alphas, so an alpha costs only its heads. Alphas, structure and task names are
    checked before any work; `progress` gets each row when done (each task's headline is its first
    column). With `out`, writes
    merge_sweep.json and merge_tradeoff.png there; `refs` names A and B in the record (default:
    their space names).
    """
    alphas = [_check_alpha(x) for x in alphas]
    if not alphas:
        raise ValueError("sweep needs at least one alpha")
    if not (general.strip() and domain.strip()):
        raise ValueError("sweep needs a general and a domain task")
    _check_structure(a, b)
    general, domain = task_names([general, domain])
    caches = FeatureCaches(cache_root)  # this sweep's state: released when it returns
    start = time.perf_counter()
    rows: list[Row] = []
    for alpha in alphas:
        scores = score(merge_spaces(a, b, alpha), [general, domain], limit, caches)
        row = {"alpha": alpha, **{f"{t}/{k}": v for t, metrics in scores.items() for k, v in metrics.items()}}
        rows.append(row)
        if progress:
            progress(row)
    x_metric, y_metric = (f"{t}/{next(iter(scores[t]))}" for t in (domain, general))
    label_a, label_b = refs or (a.name, b.name)
    record = {
        "a": {"space": label_a, "name": a.name, "heads_sha256": heads_sha256(a)},
        "b": {"space": label_b, "name": b.name, "heads_sha256": heads_sha256(b)},
        "general": general, "domain": domain, "limit": limit, "x_metric": x_metric, "y_metric": y_metric,
        "rows": rows, "seconds": round(time.perf_counter() - start, 1), "omnibind_version": __version__,
    }
    result = SweepResult(rows, x_metric, y_metric, record)
    if out is not None:
        result.files = _write_sweep(result, a, b, Path(out))
    return result


def _write_sweep(result: SweepResult, a: Space, b: Space, out: Path) -> dict[str, Path]:
    """merge_sweep.json (the record) and merge_tradeoff.png (domain headline vs general headline)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "merge_sweep.json"
    path.write_text(json.dumps(result.record, indent=2) + "\n", encoding="utf-8")
    png = plot_tradeoff(result.rows, result.x_metric, result.y_metric, out / "merge_tradeoff.png",
                        f"Merging {a.name} (α=0) into {b.name} (α=1)",
                        x_label=f"domain: {result.x_metric}", y_label=f"general: {result.y_metric}")
    return {"json": path, "png": png}


# -- plotting -------------------------------------------------------------------------------------


def plot_tradeoff(
    rows: Sequence[dict[str, float]],
    x_metric: str,
    y_metric: str,
    out_png: str | Path,
    title: str,
    x_label: str | None = None,
    y_label: str | None = None,
) -> Path:
    """Scatter of `y_metric` against `x_metric`, one point per alpha, each labelled with its alpha.

    Points are joined in alpha order and coloured by alpha; written as a PNG with the Agg backend
    (no display needed, pyplot's global state untouched).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("plot_tradeoff needs at least one row")
    for metric in (x_metric, y_metric, "alpha"):
        missing = [i for i, r in enumerate(rows) if metric not in r]
        if missing:
            raise ValueError(f"metric {metric!r} missing from row {missing[0]} (it has {', '.join(rows[missing[0]])})")
    ordered = sorted(rows, key=lambda r: r["alpha"])
    alphas = np.array([r["alpha"] for r in ordered], dtype=float)
    xs = np.array([r[x_metric] for r in ordered], dtype=float)
    ys = np.array([r[y_metric] for r in ordered], dtype=float)

    fig = Figure(figsize=(7.0, 5.5), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(xs, ys, "-", color="0.6", linewidth=1.2, zorder=1)
    points = ax.scatter(xs, ys, c=alphas, cmap="viridis", vmin=0.0, vmax=1.0, s=60, edgecolors="black",
                        linewidths=0.6, zorder=2)
    labels: dict[tuple[float, float], list[str]] = {}  # points that coincide share one label
    for alpha, x, y in zip(alphas, xs, ys):
        if math.isfinite(x) and math.isfinite(y):
            labels.setdefault((float(x), float(y)), []).append(f"{alpha:g}")
    for (x, y), names in labels.items():
        ax.annotate("α=" + ", ".join(names), (x, y), textcoords="offset points", xytext=(6, 6), fontsize=9)
    fig.colorbar(points, ax=ax, label="alpha (weight of B)")
    ax.set_xlabel(x_label or x_metric, fontsize=11)
    ax.set_ylabel(y_label or y_metric, fontsize=11)
    ax.set_title(title, fontsize=12)
    ax.grid(True, alpha=0.3)
    ax.margins(0.12)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, format="png")
    return out_png
