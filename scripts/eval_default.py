"""First real-data numbers for a space on sets it never saw (README table).

    python scripts/eval_default.py [--space default] [--json docs/results/default.json] [--quick]

- Tux Paint photo-like stamps: caption->image and image->caption R@1/5/10, over the test split
  (the half no omnibind space is ever built or trained from) and over the full 430-stamp gallery.
- Tux Paint natural sounds, test split only (the default's audio bridge uses train-split
  exemplars): caption->sound and sound->caption R@1/5/10.
- Fashion-MNIST test (10,000): zero-shot accuracy with "a photo of a {label}." prompts.
- STS-B test (1,379 pairs): Spearman of cosine vs gold.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.stats import spearmanr

from omnibind import load_space
from omnibind.evaluate import datasets as ds
from omnibind.evaluate.metrics import accuracy, recall_at_k

warnings.filterwarnings("ignore")
MATRYOSHKA_DIMS = (64, 128)
FMNIST_TEMPLATES = ["a photo of a {}.", "a black and white photo of a {}.", "a low resolution photo of a {}."]


def tux_images(space, split, limit):
    stamps = ds.tuxpaint_images(split)[:limit]
    caps = space.embed([s.caption for s in stamps])
    imgs = space.embed([s.image for s in stamps])
    sims = caps @ imgs.T
    out = {"caption->image": recall_at_k(sims), "image->caption": recall_at_k(sims.T)}
    for dim in MATRYOSHKA_DIMS:  # Matryoshka: the first `dim` coordinates alone, renormalised
        c, i = (x[:, :dim] / np.linalg.norm(x[:, :dim], axis=1, keepdims=True) for x in (caps, imgs))
        out[f"caption->image@{dim}d"] = recall_at_k(c @ i.T)
    return len(stamps), out


def tux_sounds(space, limit):
    stamps = ds.tuxpaint_sounds("test")[:limit]
    caps = space.embed([s.caption for s in stamps])
    snds = space.embed([s.sound for s in stamps])
    sims = caps @ snds.T
    return len(stamps), {"caption->sound": recall_at_k(sims), "sound->caption": recall_at_k(sims.T)}


def fashion(space, limit):
    x, y = ds.fashion_mnist("test")
    x, y = x[:limit], y[:limit]
    labels = []
    for name in ds.FASHION_MNIST_CLASSES:
        v = space.embed([t.format(name) for t in FMNIST_TEMPLATES]).mean(0)
        labels.append(v / np.linalg.norm(v))
    images = space.embed([Image.fromarray(255 - a).convert("RGB") for a in x], batch_size=64)
    return len(y), accuracy(images @ np.stack(labels).T, y)


def sts(space, limit):
    a, b, gold = ds.sts_b("test")
    a, b, gold = a[:limit], b[:limit], gold[:limit]
    va, vb = space.embed(a, batch_size=64), space.embed(b, batch_size=64)
    return len(gold), float(spearmanr((va * vb).sum(1), gold).statistic)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--space", default="default")
    p.add_argument("--json", type=Path)
    p.add_argument("--quick", action="store_true", help="small subsets, a smoke run")
    args = p.parse_args()
    n = 40 if args.quick else None
    space = load_space(args.space)
    t0 = time.perf_counter()
    results = {"space": args.space, "omnibind_space_name": space.name}
    results["tux_images_test"] = dict(zip(("n", "metrics"), tux_images(space, "test", n)))
    results["tux_images_all"] = dict(zip(("n", "metrics"), tux_images(space, None, n)))
    results["tux_sounds_test"] = dict(zip(("n", "metrics"), tux_sounds(space, n)))
    results["fashion_mnist_test"] = dict(zip(("n", "accuracy"), fashion(space, 500 if args.quick else None)))
    results["sts_b_test"] = dict(zip(("n", "spearman"), sts(space, 200 if args.quick else None)))
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["command"] = "python scripts/eval_default.py " + " ".join(sys.argv[1:])
    print(markdown(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def markdown(r) -> str:
    def rk(m):
        return " / ".join(f"{m[k]:.1f}" for k in ("R@1", "R@5", "R@10"))

    rows = [
        ("Tux Paint caption→image, test split", r["tux_images_test"]["n"], "R@1/5/10", rk(r["tux_images_test"]["metrics"]["caption->image"])),
        ("Tux Paint image→caption, test split", r["tux_images_test"]["n"], "R@1/5/10", rk(r["tux_images_test"]["metrics"]["image->caption"])),
        ("Tux Paint caption→image, all photo-like", r["tux_images_all"]["n"], "R@1/5/10", rk(r["tux_images_all"]["metrics"]["caption->image"])),
        ("Tux Paint caption→sound, test split", r["tux_sounds_test"]["n"], "R@1/5/10", rk(r["tux_sounds_test"]["metrics"]["caption->sound"])),
        ("Tux Paint sound→caption, test split", r["tux_sounds_test"]["n"], "R@1/5/10", rk(r["tux_sounds_test"]["metrics"]["sound->caption"])),
        *[(f"Tux Paint caption→image, test split, first {d} dims", r["tux_images_test"]["n"], "R@1/5/10",
           rk(r["tux_images_test"]["metrics"][f"caption->image@{d}d"])) for d in MATRYOSHKA_DIMS],
        ("Fashion-MNIST zero-shot, test", r["fashion_mnist_test"]["n"], "accuracy %", f"{r['fashion_mnist_test']['accuracy']:.1f}"),
        ("STS-B test", r["sts_b_test"]["n"], "Spearman ×100", f"{100 * r['sts_b_test']['spearman']:.1f}"),
    ]
    out = ["| task | n | metric | value |", "|---|---:|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(out)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
