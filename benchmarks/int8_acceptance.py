#!/usr/bin/env python
"""Acceptance of the int8 towers on real data: cosine of int8 to fp32 space vectors.

    python benchmarks/int8_acceptance.py --json benchmarks/results/int8-acceptance.json

`load_space().embed(..., views=())` (the towers alone: the views' text segments do not depend on
the image/audio precision and would only dilute a difference) with the image and audio backbones
at fp32 and at int8 (forced), on the Tux Paint TEST split (photo-like stamps, natural sounds) and
the out-of-domain sets (omnibind/data/ood_images.tsv, ood_sounds.tsv). The bar (issue 18): mean
>= 0.99 and min >= 0.97 per set. This reads test and OOD data: run it once per candidate recipe,
never to choose one (scripts/quantize_towers.py chooses on train data only).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any


def sets() -> dict[str, tuple[str, list[Path]]]:
    from omnibind.evaluate import ood_images, ood_sounds
    from omnibind.evaluate.datasets import tuxpaint_images, tuxpaint_sounds

    return {"tuxpaint-test images": ("image", [s.image for s in tuxpaint_images("test")]),
            "ood images": ("image", [x.path for x in ood_images.load()]),
            "tuxpaint-test sounds": ("audio", [s.sound for s in tuxpaint_sounds("test")]),
            "ood sounds": ("audio", [x.path for x in ood_sounds.load()])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    import omnibind
    from omnibind.backbones.aisfx import AisfxBackbone
    from omnibind.backbones.efficientnet import EfficientNetLite

    space = omnibind.load_space()
    make = {"image": lambda p: EfficientNetLite(space.towers["image"].backbone_ref, precision=p),
            "audio": lambda p: AisfxBackbone(precision=p)}
    out: dict[str, Any] = {"space": "default"}
    for name, (modality, paths) in sets().items():
        vectors = {}
        for precision in ("fp32", "int8"):
            backbone = make[modality](precision)
            if backbone.precision != precision:
                raise SystemExit(f"{modality}: could not load the {precision} graph")
            space.towers[modality]._backbone = backbone
            vectors[precision] = space.embed(paths, views=())
        cos = (vectors["fp32"] * vectors["int8"]).sum(axis=1)
        out[name] = {"n": len(paths), "cos_mean": round(float(cos.mean()), 5), "cos_min": round(float(cos.min()), 5),
                     "below_0.97": int((cos < 0.97).sum()),
                     "pass": bool(cos.mean() >= 0.99 and cos.min() >= 0.97)}
        print(name, out[name], file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
