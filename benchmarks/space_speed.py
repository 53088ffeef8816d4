#!/usr/bin/env python
"""Embedding time of one space against another, per modality, on the same real inputs.

    git archive 5c33ca2 omnibind/data/spaces | tar -x -C /tmp/before    # the spaces before issue 15
    python benchmarks/space_speed.py /tmp/before/omnibind/data/spaces/default default

Issue 15 asks that a new default embed within 1.5x of the old one's time per modality (or that the
slower choice be justified). Both spaces embed the same inputs -- STS-B test sentences, Tux Paint
photo-like stamps, Tux Paint natural sounds -- warmed up once, then timed in interleaved rounds
(A B, B A, ...); the figure is the median per-round ratio B / A (above 1: B is slower). Absolute
times on a shared machine are noise; the ratio is the figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from embed_throughput import interleaved  # noqa: E402  (benchmarks/, beside this script)
from omnibind.evaluate import datasets as ds  # noqa: E402
from omnibind.space import Space, load_space  # noqa: E402


def inputs(n_text: int, n_images: int, n_sounds: int) -> dict[str, list[Any]]:
    a, b, _ = ds.sts_b("test")
    return {"text": (a + b)[:n_text],
            "image": [s.image for s in ds.tuxpaint_images("test")[:n_images]],
            "audio": [s.sound for s in ds.tuxpaint_sounds("test")[:n_sounds]]}


def race(spaces: Sequence[Space], items: list[Any], rounds: int) -> tuple[float, float, float]:
    """(median seconds of A, of B, median per-round ratio B/A), each warmed up once; features are
    recomputed every time (no cache: `space.embed`, views off)."""
    times = interleaved({"a": lambda: spaces[0].embed(items, views=()),
                         "b": lambda: spaces[1].embed(items, views=())}, rounds)
    ratios = [b / a for a, b in zip(times["a"], times["b"])]  # round r of each: the same rounds
    return statistics.median(times["a"]), statistics.median(times["b"]), statistics.median(ratios)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="the reference space (folder or name)")
    ap.add_argument("b", help="the space to compare (folder or name)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--text", type=int, default=512)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--sounds", type=int, default=24)
    args = ap.parse_args()
    spaces = [load_space(args.a), load_space(args.b)]
    data = inputs(args.text, args.images, args.sounds)
    print(f"A = {args.a}\nB = {args.b}\n{'modality':8} {'n':>5} {'A s':>8} {'B s':>8} {'B/A':>6}")
    for modality, items in data.items():
        ta, tb, ratio = race(spaces, items, args.rounds)
        print(f"{modality:8} {len(items):5d} {ta:8.3f} {tb:8.3f} {ratio:6.2f}", flush=True)
    print("B/A: median of per-round ratios; 1.50 is issue 15's limit", file=sys.stderr)


if __name__ == "__main__":
    main()
