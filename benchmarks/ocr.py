#!/usr/bin/env python
"""OCR view cost on photos without text: embedding with the OCR view on against off, same files, same run.

    python benchmarks/ocr.py                   # 31 real text-free photos + 60 Tux Paint stamps, 3 rounds
    python benchmarks/ocr.py --rounds 2 --tux 0
    python benchmarks/ocr.py --check-side 256  # another presence-check size
    python benchmarks/ocr.py --json out.json

Photos: the text-free photographs of omnibind.evaluate.text_images (opencv-doc samples, 512-1280 px;
lomiri-wallpapers-16.04 camera photos, 1.4-13 MP) and Tux Paint photo-like stamps (<= 300 px), each
set timed on its own. In interleaved rounds after a warm-up:

* base - decode (`load_file`) + `space.embed(items)`;
* ocr  - the same + `OcrView.segments(item)` for every item, + `space.embed` of any text found.

The figure is base time / ocr time (= ingest speed kept with OCR on; the bar is >= 0.75, i.e. a
drop < 25%). Also printed: embed-only times (without decoding) and how many photos yielded text.
Absolute times are noise on a shared 2-core machine; ratios compare measurements of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def photo_sets(tux: int) -> dict[str, list[Path]]:
    from omnibind.evaluate.datasets import tuxpaint_images
    from omnibind.evaluate.text_images import BACKGROUNDS, photo_paths

    photos = photo_paths()
    sets = {"small photos (opencv-doc)": [p for p in photos if BACKGROUNDS not in p.parents],
            "camera photos (wallpapers)": [p for p in photos if BACKGROUNDS in p.parents]}
    if tux:
        sets["Tux Paint stamps"] = [s.image for s in tuxpaint_images("test")[:tux]]
    return {k: v for k, v in sets.items() if v}


def run_once(space, view, files: list[Path], ocr: bool) -> dict[str, float]:
    from omnibind.inputs import load_file

    t0 = time.perf_counter()
    items = [load_file(f) for f in files]
    t1 = time.perf_counter()
    space.embed(items, batch_size=32)
    t2 = time.perf_counter()
    found = 0
    if ocr:
        for item in items:
            texts = [s.text for s in view.segments(item, space)]
            if texts:
                found += 1
                space.embed(texts)
    t3 = time.perf_counter()
    return {"decode": t1 - t0, "embed": t2 - t1, "ocr": t3 - t2, "total": t3 - t0, "with_text": found}


def bench(space, view, files: list[Path], rounds: int) -> dict:
    run_once(space, view, files, True)  # warm-up: models loaded, caches filled
    base, ocr = [], []
    for r in range(rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        for flag in order:
            (ocr if flag else base).append(run_once(space, view, files, flag))
    med = lambda rows, k: statistics.median(x[k] for x in rows)  # noqa: E731
    paired = statistics.median(b["total"] / o["total"] for b, o in zip(base, ocr))
    return {
        "files": len(files),
        "base_s": med(base, "total"), "ocr_s": med(ocr, "total"),
        "speed_kept": med(base, "total") / med(ocr, "total"), "speed_kept_paired": paired,
        "embed_only_speed_kept": med(base, "embed") / (med(ocr, "embed") + med(ocr, "ocr")),
        "ocr_ms_per_file": 1000 * med(ocr, "ocr") / len(files),
        "base_ms_per_file": 1000 * med(base, "total") / len(files),
        "with_text": ocr[-1]["with_text"],
        "rounds": {"base": base, "ocr": ocr},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tux", type=int, default=60, help="Tux Paint stamps to add (0: none)")
    parser.add_argument("--check-side", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import omnibind
    from omnibind.views.ocr import CHECK_SIDE, OcrView

    space = omnibind.load_space("default")
    view = OcrView(check_side=args.check_side or CHECK_SIDE)
    results = {name: bench(space, view, files, args.rounds) for name, files in photo_sets(args.tux).items()}
    print(f"OCR view on text-free photos, check side {view.check_side}, {args.rounds} rounds, "
          f"ONNX Runtime threads {view.threads or 'default'}")
    for name, r in results.items():
        print(f"  {name:28s} n={r['files']:3d}  base {r['base_ms_per_file']:6.1f} ms/file  "
              f"+ocr {r['ocr_ms_per_file']:6.1f} ms/file  speed kept {r['speed_kept']:.2f} "
              f"(paired {r['speed_kept_paired']:.2f}; embed-only {r['embed_only_speed_kept']:.2f})  "
              f"photos with text found: {r['with_text']}")
    if args.json:
        args.json.write_text(json.dumps({"check_side": view.check_side, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
