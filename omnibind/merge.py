"""Weight-interpolation merging of spaces that share one structure.

Two spaces with the same towers (modalities, backbone references and head configs) can be
merged head by head: every floating-point head tensor becomes `(1 - alpha) * A + alpha * B`
(WiSE-FT, Wortsman et al. 2022; model soups; UnIVAL's weight interpolation across tasks).
Backbones are shared references, so only the heads move. A sweep over alpha, evaluated on a
general set and a domain set, shows the trade-off between what A keeps and what B gains.

    merged = merge_spaces(zero_shot, finetuned, alpha=0.5)
    rows = sweep(zero_shot, finetuned, [0, 0.25, 0.5, 0.75, 1], evaluate)
    plot_tradeoff(rows, "fashion-mnist-test/accuracy", "tux-test/R@10", "tradeoff.png", "A vs B")

`EVALS` names ready-made evaluators on the real evaluation data (`omnibind.evaluate.datasets`).
They embed each set's inputs through the backbones once per process and reuse those features
for every space with the same backbone, so a sweep costs one backbone pass plus cheap heads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnibind.errors import SpaceError
from omnibind.heads import build_head
from omnibind.space import Space, heads_sha256  # noqa: F401 (heads_sha256 re-exported)
from omnibind.tower import Tower

MERGED_BY = "omnibind.merge"
Evaluator = Callable[..., dict[str, float]]


# -- merging ------------------------------------------------------------------------------------


def merge_spaces(a: Space, b: Space, alpha: float, name: str | None = None) -> Space:
    """The space whose head tensors are `(1 - alpha) * a + alpha * b`.

    `a` and `b` must share their structure: the same modalities, anchor and video fusion, and
    per tower the same backbone reference and head config (kind, dims, input key, ...);
    otherwise `SpaceError` names the first difference. Non-float buffers are copied and must be
    equal. `alpha=0` returns a's weights exactly, `alpha=1` b's. The space temperature is
    interpolated the same way. The provenance records both parents (name, a sha256 of their
    heads' state, their own provenance) and alpha.
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
    provenance = {
        "built_by": MERGED_BY,
        "training": f"none (merged by {MERGED_BY}: every float head tensor = (1 - alpha) * A + alpha * B)",
        "alpha": alpha,
        "parents": [_parent(a, "A"), _parent(b, "B")],
    }
    return Space(
        towers,
        name=name or f"{a.name}+{b.name}@{alpha:g}",
        anchor=a.anchor,
        video=a.video,
        temperature=temperature,
        provenance=provenance,
        limits=a.limits,
    )


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


# -- sweeping and plotting ------------------------------------------------------------------------


def sweep(
    a: Space,
    b: Space,
    alphas: Iterable[float],
    evaluate: Callable[[Space], dict[str, float]],
    progress: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Merge at each alpha (in the order given) and evaluate: one row `{"alpha", **metrics}` each.

    Every alpha is checked before any work; `progress`, if given, receives each row when done.
    """
    alphas = [_check_alpha(x) for x in alphas]
    if not alphas:
        raise ValueError("sweep needs at least one alpha")
    _check_structure(a, b)
    rows = []
    for alpha in alphas:
        metrics = evaluate(merge_spaces(a, b, alpha))
        if "alpha" in metrics:
            raise ValueError("evaluate() returned a metric named 'alpha', which the sweep rows use for alpha")
        row = {"alpha": alpha, **{k: float(v) for k, v in metrics.items()}}
        rows.append(row)
        if progress:
            progress(row)
    return rows


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


# -- evaluation sets ------------------------------------------------------------------------------

# (set key, modality) -> (backbone object, features of every segment, owner input of each segment)
_FEATURES: dict[tuple[Any, str], tuple[Any, dict[str, torch.Tensor], np.ndarray]] = {}


def clear_feature_cache() -> None:
    """Forget the backbone features the evaluators keep between spaces."""
    _FEATURES.clear()


def embed_cached(space: Space, modality: str, key: Any, load: Callable[[], list[Any]], batch_size: int = 64) -> np.ndarray:
    """What `space.embed(load())` gives for one modality, reusing backbone features across spaces.

    `key` names the input list (`load` is called only when no features are cached for it and
    this tower's backbone). Each segment is projected by the space's head, normalised, averaged
    per input and normalised again, as `Tower.embed` does. Inputs must all be valid.
    """
    from omnibind.inputs import to_input

    tower = space.towers[modality]
    backbone = tower.backbone
    cached = _FEATURES.get((key, modality))
    if cached is None or cached[0] is not backbone:
        items = [to_input(x, space.limits) for x in load()]
        segments, owners = [], []
        for i, item in enumerate(items):
            for seg in backbone.segments(item):
                segments.append(seg)
                owners.append(i)
        order = list(range(len(segments)))
        if segments and backbone.sort_key(segments[0]) is not None:
            order.sort(key=lambda j: backbone.sort_key(segments[j]))
        parts: dict[str, list[torch.Tensor]] = {}
        with torch.inference_mode():
            for k in range(0, len(order), batch_size):
                rows = order[k : k + batch_size]
                for name, value in backbone.features(backbone.collate([segments[j] for j in rows])).items():
                    parts.setdefault(name, []).append(value.detach().cpu())
        features = {name: torch.cat(v) for name, v in parts.items()}
        cached = (backbone, features, np.asarray([owners[j] for j in order], dtype=np.int64))
        _FEATURES[(key, modality)] = cached
    _, features, owners = cached
    n = int(owners.max()) + 1 if owners.size else 0
    sums = np.zeros((n, tower.dim), dtype=np.float64)
    for k in range(0, owners.size, 1024):
        vectors = tower.project({name: v[k : k + 1024] for name, v in features.items()})
        np.add.at(sums, owners[k : k + 1024], vectors)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def eval_tux_test(space: Space, limit: int | None = None) -> dict[str, float]:
    """Tux Paint photo-like stamps, test split: caption->image retrieval, R@10 first (percent)."""
    from omnibind.evaluate import datasets as ds
    from omnibind.evaluate.metrics import retrieval_metrics

    stamps = ds.tuxpaint_images("test")[:limit]
    key = ("tux-test", limit)
    caps = embed_cached(space, "text", key, lambda: [s.caption for s in stamps])
    imgs = embed_cached(space, "image", key, lambda: [s.image for s in stamps])
    r = retrieval_metrics(caps @ imgs.T, ks=(1, 5, 10))
    return {"R@10": r["R@10"], "R@1": r["R@1"], "R@5": r["R@5"], "MRR": r["MRR"]}


def eval_fashion_mnist_test(space: Space, limit: int | None = 2000) -> dict[str, float]:
    """Fashion-MNIST test, first `limit` images: zero-shot accuracy (percent) with
    "a photo of a {label}." prompts. Images are inverted to dark-on-white, as in
    the evaluation suite (omnibind/evaluate/suite.py), so they look like product photos rather than negatives."""
    from PIL import Image

    from omnibind.evaluate import datasets as ds
    from omnibind.evaluate.metrics import classification_metrics

    x, y = ds.fashion_mnist("test")
    x, y = x[:limit], y[:limit]
    labels = embed_cached(space, "text", "fashion-mnist-prompts",
                          lambda: [f"a photo of a {c}." for c in ds.FASHION_MNIST_CLASSES])
    images = embed_cached(space, "image", ("fashion-mnist-test", limit),
                          lambda: [Image.fromarray(255 - a).convert("RGB") for a in x])
    return {"accuracy": classification_metrics(images @ labels.T, y, ds.FASHION_MNIST_CLASSES)["accuracy"]}


# name -> evaluator(space, limit=...) -> metrics; the first metric is the headline one.
EVALS: dict[str, Evaluator] = {
    "tux-test": eval_tux_test,
    "fashion-mnist-test": eval_fashion_mnist_test,
}
