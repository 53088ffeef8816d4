#!/usr/bin/env python
"""Cost and quality of the packaged ImageNet backbones for the image bridge (issue 15):
EfficientNet-Lite0 / Lite1 / Lite2, each through ONNX Runtime at its native size.

    python benchmarks/image_backbones.py                   # 64 Tux Paint train images, batch 32, 5 rounds
    python benchmarks/image_backbones.py --repeats 9 --threads 1 --json out.json

Timed on the same 64 real images (the first 64 Tux Paint *train* photo-like stamps), same batch
size, in interleaved rounds after a warm-up (A B C, B C A, ...): `embed` = decode + letterbox +
backbone (what the image tower costs; the ConSE head is a 1000x384 product), `backbone` = the
network alone on the preprocessed batches. Ratios are against Lite0 in the same rounds: `ratio`
from the medians, `paired` the median of per-round ratios. Absolute times on a shared box are noise.

Quality columns: train-split validation of each backbone with the bridge's chosen class texts,
top_k and temperature (scripts/choose_image_bridge.py, whose logits cache it reuses).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embed_throughput import interleaved  # noqa: E402  (benchmarks/, beside this script: the one interleaved timer)

ROOT = Path(__file__).resolve().parents[1]
BACKBONES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
BATCH = 32


def runners(images: list[Path]) -> tuple[dict[str, Callable[[], Any]], dict[str, Callable[[], Any]]]:
    """(embed, backbone-only) callables per backbone, on the same images and batches."""
    from omnibind.backbones import load_backbone
    from omnibind.inputs import to_input

    embed, net = {}, {}
    for ref in BACKBONES:
        b = load_backbone(ref)
        assert b.runtime == "onnxruntime", f"{ref}: ONNX Runtime unavailable, timing would compare runtimes"

        def run(b: Any = b) -> list[Any]:
            out = []
            for i in range(0, len(images), BATCH):
                segs = [next(iter(b.segments(to_input(p)))) for p in images[i : i + BATCH]]
                out.append(b.features(b.collate(segs))["logits"])
            return out

        batches = [b.collate([next(iter(b.segments(to_input(p)))) for p in images[i : i + BATCH]])
                   for i in range(0, len(images), BATCH)]
        embed[ref], net[ref] = run, (lambda b=b, batches=batches: [b.features(x) for x in batches])
    return embed, net


def quality(cache: Path) -> dict[str, dict[str, float]]:
    """Train-split validation per backbone at the chosen bridge settings (choose_image_bridge.py)."""
    spec = importlib.util.spec_from_file_location("choose", ROOT / "scripts" / "choose_image_bridge.py")
    choose = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(choose)  # type: ignore[union-attr]
    sys.path.insert(0, str(ROOT / "scripts"))
    from build_bridge_space import IMAGE_STYLE, IMAGE_TEMPERATURE, IMAGE_TOP_K

    return choose.per_backbone(cache, 3000, IMAGE_STYLE, IMAGE_TOP_K, IMAGE_TEMPERATURE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/omnibind-image-bridge"))
    parser.add_argument("--no-quality", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import torch

    from omnibind.evaluate.datasets import tuxpaint_images

    torch.set_num_threads(args.threads)
    images = [s.image for s in tuxpaint_images("train")][:64]
    embed, net = runners(images)
    times = {"embed": interleaved(embed, args.repeats), "backbone": interleaved(net, args.repeats)}
    scores = {} if args.no_quality else quality(args.cache)
    rows = []
    for ref in BACKBONES:
        row: dict[str, Any] = {"backbone": ref}
        for part, t in times.items():
            base = t[BACKBONES[0]]
            row[f"{part} img/s"] = len(images) / statistics.median(t[ref])
            row[f"{part} cost vs lite0"] = statistics.median(t[ref]) / statistics.median(base)
            row[f"{part} paired"] = statistics.median(a / b for a, b in zip(t[ref], base))
        rows.append({**row, **scores.get(ref, {})})
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    if args.json:
        args.json.write_text(json.dumps({"images": len(images), "batch": BATCH, "threads": args.threads,
                                         "times_s": times, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
