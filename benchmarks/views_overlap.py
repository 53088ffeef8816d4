"""Space.embed with views found in a second thread while the tower embeds, against the same
work in sequence (tower, then views), on real images. Same process, interleaved rounds.

    python benchmarks/views_overlap.py --n 64 --rounds 3

Prints the median seconds of each order, their ratio (sequential / overlapped) and the largest
difference between the vectors (must be 0: the order changes nothing but time).
"""

from __future__ import annotations

import argparse
import glob
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np

import omnibind
import omnibind.space as space_mod
from omnibind.device import machine


class InOrder:
    """A ThreadPoolExecutor stand-in that runs each task at once: the sequential order."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __enter__(self) -> "InOrder":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def submit(self, fn, *args):  # noqa: ANN001, ANN201
        done: Future = Future()
        done.set_result(fn(*args))
        return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64, help="Tux Paint stamps (PNG) to embed")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    paths = [Path(p) for p in sorted(glob.glob("/usr/share/tuxpaint/stamps/**/*.png", recursive=True))[: args.n]]
    if not paths:
        raise SystemExit("needs Debian tuxpaint-stamps-default (scripts/get-eval-data.sh)")
    space, threaded = omnibind.load_space(), space_mod.ThreadPoolExecutor
    space.embed(paths[:8])  # warm-up: sessions, OCR engine
    times: dict[str, list[float]] = {"sequential": [], "overlapped": []}
    vectors: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        for name in (("sequential", "overlapped") if r % 2 == 0 else ("overlapped", "sequential")):
            space_mod.ThreadPoolExecutor = InOrder if name == "sequential" else threaded
            start = time.perf_counter()
            vectors[name] = np.asarray(space.embed(paths))
            times[name].append(time.perf_counter() - start)
    space_mod.ThreadPoolExecutor = threaded
    med = {k: float(np.median(v)) for k, v in times.items()}
    diff = float(np.abs(vectors["sequential"] - vectors["overlapped"]).max())
    print(f"machine {machine()}  {len(paths)} images, {args.rounds} rounds")
    print(f"sequential {med['sequential']:.2f} s  overlapped {med['overlapped']:.2f} s  "
          f"ratio {med['sequential'] / med['overlapped']:.2f}x  max abs diff {diff:.1e}")


if __name__ == "__main__":
    main()
