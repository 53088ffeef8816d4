"""Moments: what the windows view costs next to embedding whole items, and whether a caption finds
the right moment (omnibind/evaluate/moments.py) in long recordings and slideshow videos.

    python benchmarks/moments.py                       # test split, the view's defaults
    python benchmarks/moments.py --split train --sweep # the W/H choice (tuning split only)
    python benchmarks/moments.py --json out.json

Timing: for each long item, (a) `space.embed(item)` alone, (b) the view's `segments` + embedding its
windows, in alternating rounds; the ratio (a+b)/a is what ingesting with the view costs.
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
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from omnibind import load_space  # noqa: E402
from omnibind.evaluate import moments  # noqa: E402
from omnibind.inputs import load_file  # noqa: E402
from omnibind.views.windows import WindowsView  # noqa: E402

AUDIO_SWEEP = [(2.32, 2.32), (4.64, 2.32), (6.96, 3.48), (10.0, 5.0), (10.0, 10.0), (15.0, 7.5)]
VIDEO_SWEEP = [(3.0, 3.0), (5.0, 5.0), (8.0, 8.0), (6.0, 3.0)]


def timed_cost(space, recordings, view: WindowsView, rounds: int) -> dict:
    """Median seconds of whole-item embedding and of the view's windows (segments + embedding)."""
    whole, windows = [], []
    for r in range(rounds):
        for order in ((0, 1), (1, 0))[r % 2 :: 2] or ((0, 1),):
            for step in order:
                t0 = time.perf_counter()
                if step == 0:
                    space.embed([rec.path for rec in recordings])
                else:
                    for rec in recordings:
                        segs = view.segments(load_file(rec.path), space)
                        space.embed([s.media for s in segs])
                (whole if step == 0 else windows).append(time.perf_counter() - t0)
    a, b = statistics.median(whole), statistics.median(windows)
    return {"whole_s": round(a, 2), "windows_s": round(b, 2), "ratio_with_view": round((a + b) / a, 2)}


def sweep(space, audio, video) -> list[dict]:
    rows = []
    for w, h in AUDIO_SWEEP:
        got = moments.score(space, audio, [], WindowsView(window=w, hop=h), reference=False)
        rows.append({"modality": "audio", "window": w, "hop": h, **got["audio"]})
    for w, h in VIDEO_SWEEP:
        got = moments.score(space, [], video, WindowsView(scene=w, scene_hop=h), reference=False)
        rows.append({"modality": "video", "window": w, "hop": h, **got["video"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--sweep", action="store_true", help="score several window sizes (use --split train)")
    parser.add_argument("--rounds", type=int, default=2, help="timing rounds (0: no timing)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    space = load_space()
    audio, video = moments.build_audio(args.split), moments.build_video(args.split)
    out: dict = {"split": args.split, "space": space.name}
    if args.sweep:
        out["sweep"] = sweep(space, audio, video)
        for row in out["sweep"]:
            print(f"{row['modality']:5} W={row['window']:5} H={row['hop']:5} windows={row['windows']:4} "
                  f"hit={row['hit_rate']:5.1f}% (chance {row['chance']:4.1f}%) "
                  f"right rec={row['right_recording']:5.1f}% (chance {row['right_recording_chance']:4.1f}%) "
                  f"rec+clip={row['right_recording_and_clip']:5.1f}%  {row['embed_seconds']}s")
    else:
        out["scores"] = moments.score(space, audio, video)
        print(json.dumps(out["scores"], indent=1))
        if args.rounds:
            view = WindowsView()
            out["cost"] = {"audio": timed_cost(space, audio, view, args.rounds),
                           "video": timed_cost(space, video, view, args.rounds)}
            print(json.dumps(out["cost"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1), "utf-8")


if __name__ == "__main__":
    sys.exit(main())
