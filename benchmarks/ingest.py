#!/usr/bin/env python
"""Ingest throughput: `omnibind.ingest` end to end against the embedding alone, same files, same run.

    python benchmarks/ingest.py                 # 200 Tux Paint images + 60 sounds + 100 notes, 3 rounds
    python benchmarks/ingest.py --quick         # 40 images + 10 sounds + 20 notes, 2 rounds
    python benchmarks/ingest.py --json out.json

A folder of real files is assembled once (Tux Paint photo-like stamps and natural sounds from
Debian `tuxpaint-stamps-default`, and STS-B test sentences as text notes). Then, in interleaved
rounds after a warm-up of each:

* embed  - `space.embed([Path...], batch_size=32)`: decoding + backbones + heads, nothing stored
  (the "backbone-only embedding rate": what any embedding pipeline must pay);
* ingest - `ingest(Collection.open(<fresh folder>), folder)`: walk, sha256, decode, embed, thumbnails,
  one LanceDB merge-insert per batch, calibration sample, failure log.

The figure is ingest files/s / embed files/s (goal >= 0.80). Absolute times are noise on a shared
2-core machine; the ratio compares two measurements of the same run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

FULL = {"images": 200, "sounds": 60, "notes": 100, "rounds": 3}
QUICK = {"images": 40, "sounds": 10, "notes": 20, "rounds": 2}


def build_folder(root: Path, cfg: dict) -> list[Path]:
    from omnibind.evaluate.datasets import sts_b, tuxpaint_images, tuxpaint_sounds

    (root / "images").mkdir(parents=True)
    (root / "sounds").mkdir()
    (root / "notes").mkdir()
    for s in tuxpaint_images()[: cfg["images"]]:
        shutil.copy(s.image, root / "images" / (s.key.replace("/", "_") + ".png"))
    for s in tuxpaint_sounds()[: cfg["sounds"]]:
        shutil.copy(s.sound, root / "sounds" / (s.key.replace("/", "_") + s.sound.suffix))
    a, _, _ = sts_b("test")
    for i, sentence in enumerate(sorted(set(a))[: cfg["notes"]]):
        (root / "notes" / f"note-{i:03d}.txt").write_text(sentence)
    return sorted(p for p in root.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    warnings.filterwarnings("ignore")
    from omnibind import load_space
    from omnibind.collection import Collection
    from omnibind.ingest import ingest

    work = Path(tempfile.mkdtemp(prefix="omnibind-ingest-bench-"))
    try:
        files = build_folder(work / "files", cfg)
        space = load_space()
        print(f"{len(files)} files ({cfg['images']} images, {cfg['sounds']} sounds, {cfg['notes']} notes)", file=sys.stderr)
        counter = iter(range(10**6))

        def run_embed() -> None:
            space.embed(files, batch_size=32)

        def run_ingest() -> None:
            coll = Collection.open(work / f"coll-{next(counter)}", space=space)
            report = ingest(coll, work / "files", batch_size=32)
            assert report.embedded == len(files) and not report.failed, report.summary()

        times: dict[str, list[float]] = {"embed": [], "ingest": []}
        for fn in (run_embed, run_ingest):  # warm-up: backbones loaded, ONNX sessions built
            fn()
        for r in range(cfg["rounds"]):
            order = [("embed", run_embed), ("ingest", run_ingest)][:: 1 if r % 2 == 0 else -1]
            for name, fn in order:
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
                print(f"  round {r + 1} {name}: {times[name][-1]:.2f} s", file=sys.stderr)
        med = {k: statistics.median(v) for k, v in times.items()}
        paired = statistics.median(e / i for e, i in zip(times["embed"], times["ingest"]))
        result = {
            "files": len(files), "rounds": cfg["rounds"],
            "embed_files_per_s": len(files) / med["embed"], "ingest_files_per_s": len(files) / med["ingest"],
            "ratio_ingest_over_embed": med["embed"] / med["ingest"], "paired_ratio": paired,
            "seconds": times,
        }
        print(f"\n| what | files/s (median of {cfg['rounds']}) |\n|---|---|")
        print(f"| space.embed (embedding only) | {result['embed_files_per_s']:.1f} |")
        print(f"| ingest (end to end) | {result['ingest_files_per_s']:.1f} |")
        print(f"\ningest / embed = {result['ratio_ingest_over_embed']:.2f} (paired {paired:.2f}; goal >= 0.80)")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
