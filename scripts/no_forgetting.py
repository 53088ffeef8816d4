"""No forgetting: bind the default space on a narrow domain, then merge back along alpha.

Binds the image tower on Fashion-MNIST *train* (first N images, captions "a photo of a {label}."),
with and without distillation toward the bridge, and with replay of the Tux Paint *train* pairs
(weight 10: about 17% of each epoch; chosen before looking at any result), scores each on the
`omnibind eval` tasks `fashion-mnist` (test, zero-shot, its three templates) and `tux-images` (test,
caption->image R@10 as headline), exactly as `omnibind eval` does, then sweeps WiSE-FT merges
default -> bound over alpha and plots the trade-off (docs/results/merge_tradeoff.png,
merge_tradeoff_replay.png, merge_sweep.json).

Run: python scripts/no_forgetting.py [--train 10000] [--out docs/results]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from PIL import Image

from omnibind.bind.pairs import Pair, pairs_from_labels
from omnibind.bind.trainer import BindConfig, bind
from omnibind.evaluate.datasets import FASHION_MNIST_CLASSES, fashion_mnist, tuxpaint_images
from omnibind.evaluate.suite import score
from omnibind.merge import plot_tradeoff, sweep
from omnibind.space import Space, load_space

ALPHAS = [0.0, 0.02, 0.05] + [round(0.1 * i, 1) for i in range(1, 11)]
GENERAL, DOMAIN = "tux-images", "fashion-mnist"  # `omnibind eval` tasks: same names, same numbers


def evaluate(space: Space) -> dict[str, float]:
    """The sweep's columns for one space: every scalar metric of both tasks, as '<task>/<metric>'."""
    return {f"{t}/{k}": v for t, metrics in score(space, [GENERAL, DOMAIN]).items() for k, v in metrics.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--train", type=int, default=10000)
    p.add_argument("--out", type=Path, default=Path("docs/results"))
    args = p.parse_args()
    x, y = fashion_mnist("train")
    items = [(Image.fromarray(255 - a).convert("RGB"), FASHION_MNIST_CLASSES[int(c)]) for a, c in zip(x[: args.train], y[: args.train])]
    pairs = pairs_from_labels(items, "image", ("a photo of a {}.",))
    default = load_space("default")
    report = {"default": evaluate(default)}
    print(f"default: {report['default']}", file=sys.stderr)
    replay = [Pair(s.caption, s.image, 10.0, s.key) for s in tuxpaint_images("train")]  # never a test stamp
    bound = {}
    for name, config, extra in [("distilled", BindConfig(loss="siglip", epochs=15), []),
                                ("no-teacher", BindConfig(loss="siglip", teacher=None, epochs=15), []),
                                ("distilled-replay", BindConfig(loss="siglip", epochs=15), replay)]:
        start = time.perf_counter()
        result = bind(default, pairs, config, replay=extra)
        seconds = time.perf_counter() - start  # features come from the on-disk cache after the first run
        bound[name] = result.space
        report[f"bound-{name}"] = {**evaluate(result.space), "held_out": result.metrics["held_out_trained"],
                                   "bind_seconds": round(seconds, 1), "epochs": len(result.history)}
        print(f"bound {name}: {report[f'bound-{name}']}", file=sys.stderr)
    plain = sweep(default, bound["no-teacher"], ALPHAS, GENERAL, DOMAIN)
    report["merge_sweep_default_to_no_teacher"] = plain.rows
    replay_sweep = sweep(default, bound["distilled-replay"], ALPHAS, GENERAL, DOMAIN)
    report["merge_sweep_default_to_distilled_replay"] = replay_sweep.rows
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "merge_sweep.json").write_text(json.dumps(report, indent=2) + "\n")
    for swept, png, what in ((plain, "merge_tradeoff.png", "without teacher"),
                             (replay_sweep, "merge_tradeoff_replay.png", "with Tux train replay")):
        plot_tradeoff(swept.rows, swept.x_metric, swept.y_metric, args.out / png,
                      f"WiSE-FT merge: default (α=0) → Fashion-MNIST bind\n{what} (α=1)",
                      x_label="Fashion-MNIST test zero-shot accuracy (%, 3 templates)",
                      y_label="Tux Paint test caption→image R@10 (%)")
    for row in plain.rows + replay_sweep.rows:
        print(json.dumps(row), file=sys.stderr)


if __name__ == "__main__":
    main()
