#!/usr/bin/env python
"""Binding speed: the image tower of the offline default space on cached Fashion-MNIST pairs.

    python benchmarks/bind_speed.py                 # full run: 10,000 pairs, 10 epochs (about 25 min on a busy 2-core box)
    python benchmarks/bind_speed.py --quick         # smoke run: 1,000 pairs, 3 epochs, 1-3 minutes
    python benchmarks/bind_speed.py --json results.json --pairs 5000 --epochs 5 --cache /tmp/featcache

What it measures, in one process:

* run 1, cold cache - `omnibind.bind.trainer.bind(load_space(), pairs, BindConfig(epochs=...),
  cache_root=<fresh dir>)` on the first N Fashion-MNIST train images (inverted, RGB PIL images)
  paired with "a photo of a {label}.": total time, the time inside `FeatureCache.features` (the
  cache computing EfficientNet-Lite0 features) and the rest (training).
* run 2, warm cache - the same call on the same data and cache folder: total, features (now
  reads), training. Goals: run-2 features / run-1 total <= 5%, training on 10,000 pairs <= 60 s.
  When torch runs more than one intra-op thread, run 2 is repeated at 1 thread (alternating
  with the default, `--warm-runs N` rounds) for a same-run comparison of the training time.
* the alternative - `space.embed(images)` over the same N images, i.e. what binding without a
  feature cache would redo on every run, against the warm run's cached-features read.

Nothing in omnibind is edited: the split is measured by wrapping `FeatureCache` methods and the
trainer's module-level steps with timers for the duration of the run. Absolute times on a shared
2-core machine are noise; read the ratios, which compare figures measured in the same run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

FULL = {"pairs": 10_000, "epochs": 10, "warm_runs": 1}
QUICK = {"pairs": 1_000, "epochs": 3, "warm_runs": 1}
GOAL_WARM_FEATURES_SHARE = 0.05  # run-2 features time / run-1 total
GOAL_TRAINING_S_PER_10K = 60.0  # training-only time on 10,000 pairs
EMBED_BATCH = 32  # what FeatureCache.features uses by default, and space.embed's default


# -- timing ---------------------------------------------------------------------------------------


class Timers:
    """Accumulated seconds and call counts of wrapped functions, restored on exit."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.batch_sizes: list[int] = []
        self.batch_unique_captions: list[int] = []

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()
        self.batch_sizes.clear()
        self.batch_unique_captions.clear()

    def snapshot(self) -> dict[str, Any]:
        return {"seconds": {k: round(v, 4) for k, v in self.seconds.items()}, "calls": dict(self.calls)}

    @contextmanager
    def wrapped(self, targets: list[tuple[Any, str, str]]) -> Iterator[None]:
        originals = []
        for owner, attr, name in targets:
            original = getattr(owner, attr)
            originals.append((owner, attr, original))
            setattr(owner, attr, self._timed(original, name))
        try:
            yield
        finally:
            for owner, attr, original in reversed(originals):
                setattr(owner, attr, original)

    def _timed(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start
                self.calls[name] += 1
        return wrapper


def instrument(timers: Timers) -> Any:
    """Timers around the feature cache and the trainer's steps (module attributes, so bind() sees them)."""
    from omnibind.bind import cache as cache_mod
    from omnibind.bind import trainer as trainer_mod

    FeatureCache = cache_mod.FeatureCache
    original_batches = trainer_mod._batches

    def counting_batches(text_ids: np.ndarray, *args: Any, **kwargs: Any) -> list[np.ndarray]:
        out = original_batches(text_ids, *args, **kwargs)
        timers.batch_sizes.extend(len(b) for b in out)
        timers.batch_unique_captions.extend(len(np.unique(text_ids[b])) for b in out)
        return out

    targets = [
        (FeatureCache, "__init__", "cache_open"),  # reads every shard's key list
        (FeatureCache, "features", "features"),
        (cache_mod, "content_key", "features/hash"),
        (FeatureCache, "_read", "features/read"),
        (FeatureCache, "_compute", "features/compute"),
        (FeatureCache, "_write", "features/write"),
        (trainer_mod, "_prepare", "prepare"),  # cache open + features + anchors + teacher
        (trainer_mod, "_teacher_vectors", "prepare/teacher"),
        (trainer_mod, "_train_epoch", "train_epochs"),
        (trainer_mod, "_evaluate", "evaluate"),
        (trainer_mod, "_with_head", "new_space"),
    ]

    @contextmanager
    def both() -> Iterator[None]:
        trainer_mod._batches = counting_batches
        try:
            with timers.wrapped(targets):
                yield
        finally:
            trainer_mod._batches = original_batches
    return both()


# -- data -----------------------------------------------------------------------------------------


def fashion_pairs(n: int) -> tuple[list[Any], list[Any]]:
    """The first n Fashion-MNIST train images (inverted: dark garment on white, RGB) and their pairs."""
    from PIL import Image

    from omnibind.bind.pairs import pairs_from_labels
    from omnibind.evaluate.datasets import FASHION_MNIST_CLASSES, fashion_mnist

    x, y = fashion_mnist("train")
    n = min(n, len(x))
    images = [Image.fromarray(255 - x[i]).convert("RGB") for i in range(n)]
    labels = [FASHION_MNIST_CLASSES[int(y[i])] for i in range(n)]
    pairs = pairs_from_labels(list(zip(images, labels)), "image", templates=("a photo of a {}.",))
    return images, pairs


def cache_size(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len([p for p in files if p.name.startswith("shard-")]), sum(p.stat().st_size for p in files)


# -- one bind run ---------------------------------------------------------------------------------


def bind_run(label: str, space: Any, pairs: list[Any], config: Any, cache_root: Path, timers: Timers) -> dict[str, Any]:
    from omnibind.bind.trainer import bind

    done = [0]
    last = [time.perf_counter()]
    total_items = len(pairs)

    def on_features(k: int) -> None:
        done[0] += k
        now = time.perf_counter()
        if now - last[0] > 30 or done[0] == total_items:
            print(f"  [{label}] features {done[0]}/{total_items}", file=sys.stderr, flush=True)
            last[0] = now

    def on_epoch(row: dict[str, float]) -> None:
        r_at_1 = row.get("val_R@1", float("nan"))
        print(f"  [{label}] epoch {int(row['epoch'])}: loss {row['loss']:.4f}, val_R@1 {r_at_1:.1f}",
              file=sys.stderr, flush=True)

    timers.reset()
    print(f"{label}: binding {len(pairs)} pairs, cache {cache_root}", file=sys.stderr, flush=True)
    with instrument(timers):
        start = time.perf_counter()
        result = bind(space, pairs, config, cache_root=cache_root, on_epoch=on_epoch, on_features=on_features)
        total = time.perf_counter() - start
    s = timers.seconds
    features = s["features"]
    cache_open = s["cache_open"]
    sizes = timers.batch_sizes
    epochs_run = len(result.history)
    return {
        "label": label,
        "total_s": round(total, 3),
        "features_s": round(features, 3),
        "cache_open_s": round(cache_open, 3),
        "training_s": round(total - features - cache_open, 3),  # everything bind() does besides the cache
        "train_epochs_s": round(s["train_epochs"], 3),
        "evaluate_s": round(s["evaluate"], 3),
        "teacher_s": round(s["prepare/teacher"], 3),
        "prepare_other_s": round(s["prepare"] - features - cache_open - s["prepare/teacher"], 3),  # anchors, collation
        "epochs_run": epochs_run,
        "steps": len(sizes),
        "steps_per_epoch": len(sizes) / max(1, epochs_run),
        "mean_batch": float(np.mean(sizes)) if sizes else 0.0,
        "max_batch": int(max(sizes)) if sizes else 0,
        "mean_unique_captions_per_batch": float(np.mean(timers.batch_unique_captions)) if sizes else 0.0,
        "timers": timers.snapshot(),
        "metrics": result.metrics,
        "history": result.history,
        "skipped": len(result.skipped),
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The warm runs as one: every timing is the median over the runs (the box is shared)."""
    if len(runs) == 1:
        return runs[0]
    out = dict(runs[0])
    for key, value in runs[0].items():
        if key.endswith("_s") and isinstance(value, float):
            out[key] = round(float(np.median([r[key] for r in runs])), 3)
    out["label"] = f"run 2 (warm, median of {len(runs)})"
    out["timers"] = {"per_run": [r["timers"] for r in runs]}
    out["history"] = runs[0]["history"]
    return out


# -- output ---------------------------------------------------------------------------------------


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def print_tables(report: dict[str, Any], title: str) -> None:
    r1, r2 = report["runs"]
    ratios = report["ratios"]
    alt = report["alternative"]
    rows = [
        ["run 1 (cold): bind total", f"{r1['total_s']:.1f}", "", ""],
        ["  features (FeatureCache.features: compute + write)", f"{r1['features_s']:.1f}",
         pct(r1["features_s"] / r1["total_s"]), "of run-1 total"],
        ["  training (bind - features - cache open)", f"{r1['training_s']:.1f}", pct(r1["training_s"] / r1["total_s"]),
         "of run-1 total"],
        [f"{r2['label']}: bind total", f"{r2['total_s']:.1f}", f"{ratios['speedup_run1_over_run2']:.1f}x faster",
         "run 1 (cold)"],
        ["  features (FeatureCache.features: hash + read)", f"{r2['features_s']:.2f}",
         f"{pct(ratios['run2_features_over_run1_total'])} (goal <= {pct(GOAL_WARM_FEATURES_SHARE)}: "
         f"{'met' if ratios['goal_warm_features_met'] else 'MISSED'})", "run-1 total"],
        ["  cache open (FeatureCache.__init__: shard key lists)", f"{r2['cache_open_s']:.2f}",
         pct(r2["cache_open_s"] / r1["total_s"]), "run-1 total"],
        ["  training (bind - features - cache open)", f"{r2['training_s']:.1f}",
         f"{ratios['training_s_per_10k']:.1f} s per 10k pairs (goal <= {GOAL_TRAINING_S_PER_10K:.0f}: "
         f"{'met' if ratios['goal_training_met'] else 'MISSED'})", ""],
        ["    of which epochs (_train_epoch)", f"{r2['train_epochs_s']:.1f}",
         f"{r2['epochs_run']} epochs x {r2['steps_per_epoch']:.0f} steps, mean batch {r2['mean_batch']:.1f}",
         f"BindConfig.batch_size {report['config']['batch_size']}"],
        ["    held-out evaluation (_evaluate)", f"{r2['evaluate_s']:.2f}", "", ""],
        ["    teacher vectors + anchors + rest", f"{r2['training_s'] - r2['train_epochs_s'] - r2['evaluate_s']:.2f}",
         "", ""],
        [f"alternative: space.embed({report['sizes']['pairs']} images)", f"{alt['embed_s']:.1f}",
         f"{alt['embed_s'] / report['sizes']['pairs'] * 1000:.1f} ms/image", "what a bind without cache redoes"],
        ["  cached-features read (run-2 features)", f"{r2['features_s']:.2f}",
         f"{ratios['embed_over_cached_read']:.0f}x faster", "space.embed"],
        ["  cold features (run-1, compute + hash + write)", f"{r1['features_s']:.1f}",
         f"{ratios['cold_features_over_embed']:.2f}x the time", "space.embed"],
        ["  warm bind total", f"{r2['total_s']:.1f}", f"{ratios['embed_plus_training_over_run2']:.1f}x faster",
         "space.embed + run-2 training"],
    ]
    t1 = report.get("run2_1_thread")
    if t1:
        rows += [
            ["run 2 (warm) at 1 torch thread: training", f"{t1['training_s']:.1f}",
             f"{ratios['training_threads_over_1_thread']:.2f}x faster "
             f"({ratios['training_s_per_10k_1_thread']:.1f} s per 10k pairs)",
             f"run 2 at {report['machine']['torch_threads']} threads"],
            ["    of which epochs (_train_epoch)", f"{t1['train_epochs_s']:.1f}", "", ""],
        ]
    metric_rows = []
    before, after = r2["metrics"].get("held_out_bridge", {}), r2["metrics"].get("held_out_trained", {})
    for key in sorted(set(before) | set(after)):
        b, a = before.get(key), after.get(key)
        metric_rows.append([key, f"{b:.1f}" if b is not None else "", f"{a:.1f}" if a is not None else "",
                            f"{a - b:+.1f}" if a is not None and b is not None else ""])
    try:
        from rich.console import Console
        from rich.table import Table

        console = Console(width=200)
        table = Table(title=title)
        for h in ("what", "seconds", "ratio", "vs (same run)"):
            table.add_column(h, justify="right" if h == "seconds" else "left")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        m = Table(title=f"held-out metrics (BindResult.metrics, {r2['metrics']['held_out']} held-out pairs, "
                        f"best epoch {r2['metrics']['best_epoch']})")
        for h in ("metric", "before (the space's image head)", "trained", "change"):
            m.add_column(h, justify="left" if h == "metric" else "right")
        for row in metric_rows:
            m.add_row(*row)
        console.print(m)
    except ImportError:
        print(title)
        for row in rows:
            print("  ".join(row))
        for row in metric_rows:
            print("  ".join(row))
    print("checks:")
    for key, value in report["checks"].items():
        print(f"  {key}: {value:.3g}" if isinstance(value, float) else f"  {key}: {value}")
    for note in report["notes"]:
        print(f"note: {note}")


def machine() -> dict[str, Any]:
    import torch

    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    try:
        info["loadavg_1m_at_start"] = os.getloadavg()[0]
    except OSError:
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 pairs, 3 epochs: a smoke run")
    parser.add_argument("--pairs", type=int, help="pairs (Fashion-MNIST train images) to bind on (default 10,000)")
    parser.add_argument("--epochs", type=int, help="BindConfig.epochs (default 10, quick 3)")
    parser.add_argument("--warm-runs", type=int, help="warm runs (run 2) to take the median of (default 1)")
    parser.add_argument("--cache", metavar="DIR", type=Path,
                        help="feature cache folder (default: a fresh temporary folder, removed afterwards); "
                             "run 1 is only cold if DIR holds no features of these images")
    parser.add_argument("--json", metavar="OUT", type=Path, help="also write the results as JSON to OUT")
    parser.add_argument("--threads", type=int, help="torch (and ONNX Runtime) intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    if args.pairs:
        sizes["pairs"] = args.pairs
    if args.epochs:
        sizes["epochs"] = args.epochs
    if args.warm_runs:
        sizes["warm_runs"] = max(1, args.warm_runs)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
    import torch

    import omnibind
    from omnibind.bind.cache import FeatureCache
    from omnibind.bind.trainer import BindConfig

    if args.threads:
        torch.set_num_threads(args.threads)  # before load_space: the ONNX session copies it
    info = machine()
    started = time.perf_counter()
    checks: dict[str, Any] = {}
    notes: list[str] = []

    space = omnibind.load_space()
    for modality in ("image", space.anchor):  # load backbones (and the ONNX session) outside the timings
        space.towers[modality].backbone
    space.embed(["warm-up"])
    checks["load_space_and_backbones_s"] = round(time.perf_counter() - started, 2)
    checks["space"] = space.name
    checks["image_head_before"] = space.towers["image"].head.kind

    t0 = time.perf_counter()
    images, pairs = fashion_pairs(sizes["pairs"])
    sizes["pairs"] = len(pairs)
    checks["build_pairs_s"] = round(time.perf_counter() - t0, 2)
    config = BindConfig(tower="image", epochs=sizes["epochs"])

    temporary = args.cache is None
    cache_root = Path(tempfile.mkdtemp(prefix="omnibind-bind-speed-")) if temporary else args.cache
    if not temporary and cache_root.exists() and any(cache_root.rglob("shard-*.npz")):
        notes.append(f"{cache_root} already held feature shards: run 1 may not have been cold")
    timers = Timers()
    try:
        run1 = bind_run("run 1 (cold)", space, pairs, config, cache_root, timers)
        shards, nbytes = cache_size(cache_root)
        checks["cache_shards"] = shards
        checks["cache_mb"] = round(nbytes / 1e6, 1)
        # Warm runs at torch's thread count and, on a multi-thread default, at 1 thread, alternated
        # so that load from other processes hits both alike (2 threads on a busy 2-core box wait at barriers).
        n_warm = sizes["warm_runs"]
        threads = torch.get_num_threads()
        warm, warm_t1 = [], []
        for i in range(n_warm):
            order = [threads, 1] if threads > 1 else [threads]
            for t in order if i % 2 == 0 else order[::-1]:
                tag = f"{t} thread{'s' if t > 1 else ''}" + ("" if n_warm == 1 else f", {i + 1}/{n_warm}")
                torch.set_num_threads(t)
                try:
                    row = bind_run(f"run 2 (warm, {tag})", space, pairs, config, cache_root, timers)
                finally:
                    torch.set_num_threads(threads)
                (warm if t == threads else warm_t1).append(row)
        run2 = median_run(warm)
        run2_t1 = median_run(warm_t1) if warm_t1 else None

        # The alternative: embed the same images through the whole space (backbone + head).
        print(f"alternative: space.embed({len(images)} images)", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        vectors = space.embed(images, batch_size=EMBED_BATCH)
        embed_s = time.perf_counter() - t0

        # The cache serves what the backbone computes: project cached features with the same head.
        k = min(256, len(images))
        cached, _ = FeatureCache(space.towers["image"].backbone, cache_root).features(images[:k])
        tower = space.towers["image"]
        projected = np.stack([tower.project({n: torch.from_numpy(v) for n, v in f.items()})[0] for f in cached])
        checks["max_abs_diff_embed_vs_cached_features_projected"] = float(np.abs(projected - vectors[:k]).max())
    finally:
        if temporary:
            shutil.rmtree(cache_root, ignore_errors=True)

    n = sizes["pairs"]
    checks["warm_runs_reproduce_cold_metrics"] = all(r["metrics"] == run1["metrics"] for r in warm)
    if warm_t1:
        checks["one_thread_runs_reproduce_cold_metrics"] = all(r["metrics"] == run1["metrics"] for r in warm_t1)
    checks["run1_cache_misses_computed"] = run1["timers"]["calls"].get("features/compute", 0) > 0
    checks["run2_compute_calls"] = sum(r["timers"]["calls"].get("features/compute", 0) for r in warm + warm_t1)
    checks["warm_totals_s"] = [r["total_s"] for r in warm]
    checks["mean_batch_size"] = round(run2["mean_batch"], 1)
    checks["mean_unique_captions_per_batch"] = round(run2["mean_unique_captions_per_batch"], 1)
    ratios = {
        "run2_features_over_run1_total": run2["features_s"] / run1["total_s"],
        "speedup_run1_over_run2": run1["total_s"] / run2["total_s"],
        "training_s_per_10k": run2["training_s"] * 10_000 / n,
        "embed_over_cached_read": embed_s / max(run2["features_s"], 1e-9),
        "cold_features_over_embed": run1["features_s"] / embed_s,
        "embed_plus_training_over_run2": (embed_s + run2["training_s"]) / run2["total_s"],
    }
    if run2_t1:
        ratios["training_threads_over_1_thread"] = run2["training_s"] / run2_t1["training_s"]
        ratios["training_s_per_10k_1_thread"] = run2_t1["training_s"] * 10_000 / n
        checks["warm_totals_1_thread_s"] = [r["total_s"] for r in warm_t1]
    ratios["goal_warm_features_met"] = ratios["run2_features_over_run1_total"] <= GOAL_WARM_FEATURES_SHARE
    ratios["goal_training_met"] = ratios["training_s_per_10k"] <= GOAL_TRAINING_S_PER_10K
    total = time.perf_counter() - started
    try:
        info["loadavg_1m_at_end"] = os.getloadavg()[0]
    except OSError:
        pass
    report = {
        "mode": "quick" if args.quick else "full", "sizes": sizes,
        "config": vars(config) | {"matryoshka": list(config.matryoshka)},
        "machine": info, "total_s": round(total, 1), "runs": [run1, run2], "warm_runs": warm,
        "warm_runs_1_thread": warm_t1, "run2_1_thread": run2_t1,
        "alternative": {"what": f"space.embed(images, batch_size={EMBED_BATCH})", "embed_s": round(embed_s, 3)},
        "ratios": ratios, "goals": {"warm_features_share": GOAL_WARM_FEATURES_SHARE,
                                    "training_s_per_10k": GOAL_TRAINING_S_PER_10K},
        "checks": checks, "notes": notes,
    }
    title = (f"omnibind bind speed ({report['mode']}: {n} Fashion-MNIST pairs, {sizes['epochs']} epochs, "
             f"{info['cpus']} CPUs, torch threads {info['torch_threads']}, {total:.0f}s)")
    print_tables(report, title)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
