"""Reranking's gain and cost (issue 19): prints a table, writes benchmarks/results/rerank.json.

--choose   training data only (how `hubness` and its constants were picked): Tux Paint TRAIN
           captions -> images with the bridge space (the default's image head was trained on these
           pairs, so its train numbers are shown but say little) and the default's Tux train
           sounds; Fashion-MNIST TRAIN (1,000 images, the 10 class prompts as queries, nDCG@10).
           Candidates: hub correction (neighbours x weight), image flip views (TTA), prompt
           expansion of the query with the modality's templates.
--heldout  the chosen reranker once on Tux Paint TEST (images, sounds) and the out-of-domain
           sets (ood-wallpapers, ood-opencv-photos, ood-scratch-backdrops, ood-sounds), then
           latency: `search(k=10)` with and without it over a collection of the Tux test stamps.

Quality is measured as search ranks one modality (calibration is monotone in cosine there): the
top DEPTH by cosine are re-scored, the rest keep their places.
    PYTHONPATH=. python benchmarks/rerank.py --choose
    PYTHONPATH=. python benchmarks/rerank.py --heldout
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from omnibind import modalities
from omnibind.evaluate import datasets as ds
from omnibind.evaluate import metrics as M
from omnibind.evaluate.suite import CachedEmbedder
from omnibind.rerank import HUB_NEIGHBOURS, HUB_WEIGHT, MIN_DEPTH, class_bank, hub_scores
from omnibind.space import load_space

DEPTH = MIN_DEPTH
OUT = Path(__file__).parent / "results" / "rerank.json"


def reranked(sims: np.ndarray, rescore) -> np.ndarray:
    """sims with each query's top DEPTH replaced by `rescore(i, idx)` (placed above the rest)."""
    out = sims.copy()
    for i in range(len(sims)):
        idx = np.argsort(-sims[i], kind="stable")[:DEPTH]
        out[i, idx] = 10.0 + rescore(i, idx)
    return out


def metrics(sims: np.ndarray, rel=None) -> dict[str, float]:
    m = M.retrieval_metrics(sims, rel)
    return {k: round(m[k], 4) for k in ("R@1", "R@10", "MRR", "nDCG@10")}


def hub(space, modality: str, q: np.ndarray, v: np.ndarray, neighbours: int, weight: float) -> np.ndarray:
    s = q @ v.T
    bank = class_bank(space, modality)
    return reranked(s, lambda i, idx: hub_scores(s[i, idx], v[idx], bank, neighbours, weight))


def candidates(space, embed, modality: str, q, v, texts, flipped=None) -> dict[str, np.ndarray]:
    """Every candidate's similarity matrix on one task."""
    s = q @ v.T
    out = {"none": s}
    for n in (10, 50):
        for w in (0.25, 0.5):
            out[f"hubness n{n} w{w}"] = hub(space, modality, q, v, n, w)
    tm = modalities.templates(modality)
    label = [t.strip().rstrip(".").lower().removeprefix("a ").removeprefix("an ") for t in texts]
    p = embed([t.format(x) for x in label for t in tm], "text").reshape(len(q), len(tm), -1).mean(1)
    q2 = q + p / np.linalg.norm(p, axis=1, keepdims=True)
    s2 = (q2 / np.linalg.norm(q2, axis=1, keepdims=True)) @ v.T
    out["prompts"] = reranked(s, lambda i, idx: s2[i, idx])
    if flipped is not None:
        v2 = v + flipped
        s3 = q @ (v2 / np.linalg.norm(v2, axis=1, keepdims=True)).T
        out["tta flip"] = reranked(s, lambda i, idx: s3[i, idx])
    return out


def choose() -> dict[str, dict[str, dict[str, float]]]:
    from PIL import Image, ImageOps

    table = {}
    for name in ("bridge", "default"):
        space = load_space(name)
        embed = CachedEmbedder(space)
        st = ds.tuxpaint_images("train")
        q, v = embed([s.caption for s in st], "text"), embed([s.image for s in st], "image")
        flip = embed([ImageOps.mirror(Image.open(s.image).convert("RGB")) for s in st], "image")
        table[f"tux-train images ({name})"] = {c: metrics(m) for c, m in
                                               candidates(space, embed, "image", q, v, [s.caption for s in st], flip).items()}
        x, y = ds.fashion_mnist("train")
        ims = [Image.fromarray(255 - a).convert("RGB") for a in x[:1000]]
        v, flip = embed(ims, "image"), embed([ImageOps.mirror(i) for i in ims], "image")
        q = embed([f"a photo of a {n}." for n in ds.FASHION_MNIST_CLASSES], "text")
        rel = np.stack([y[:1000] == c for c in range(10)])
        table[f"fmnist-train 1000 ({name})"] = {c: metrics(m, rel) for c, m in candidates(
            space, embed, "image", q, v, ds.FASHION_MNIST_CLASSES, flip).items()}
    space = load_space("default")
    embed = CachedEmbedder(space)
    st = ds.tuxpaint_sounds("train")
    q, v = embed([s.caption for s in st], "text"), embed([s.sound for s in st], "audio")
    table["tux-train sounds (default)"] = {c: metrics(m) for c, m in
                                           candidates(space, embed, "audio", q, v, [s.caption for s in st]).items()}
    return table


def heldout_sets() -> dict[str, tuple[str, list[str], list]]:
    """name -> (item modality, captions, files): evaluation only, never used to choose."""
    from omnibind.evaluate import ood_images, ood_sounds

    img, snd = ds.tuxpaint_images("test"), ds.tuxpaint_sounds("test")
    out = {"tux-test images": ("image", [s.caption for s in img], [s.image for s in img]),
           "tux-test sounds": ("audio", [s.caption for s in snd], [s.sound for s in snd])}
    for name in ood_images.SETS:
        items = ood_images.load(name)
        out[f"ood-{name}"] = ("image", [i.caption for i in items], [i.path for i in items])
    sounds = ood_sounds.load()
    out["ood-sounds"] = ("audio", [s.caption for s in sounds], [s.path for s in sounds])
    return out


def heldout() -> dict[str, dict[str, dict[str, float]]]:
    space = load_space("default")
    embed = CachedEmbedder(space)
    table = {}
    for name, (modality, captions, files) in heldout_sets().items():
        q, v = embed(captions, "text"), embed(files, modality)
        table[name] = {"none": metrics(q @ v.T),
                       "hubness": metrics(hub(space, modality, q, v, HUB_NEIGHBOURS, HUB_WEIGHT))}
    return table


def latency(queries: int = 40, repeats: int = 3) -> dict[str, float]:
    """Median ms per `search(k=10)` over a collection of the Tux test images and sounds."""
    from omnibind.collection import Collection
    from omnibind.ingest import ingest
    from omnibind.search import search

    img, snd = ds.tuxpaint_images("test"), ds.tuxpaint_sounds("test")
    with tempfile.TemporaryDirectory(prefix="omnibind-rerank-") as tmp:
        folder = Path(tmp) / "stamps"
        folder.mkdir()
        for n, f in enumerate([s.image for s in img] + [s.sound for s in snd]):
            (folder / f"{n:04d}-{f.name}").symlink_to(f)
        c = Collection.open(Path(tmp) / "c", load_space("default"))
        ingest(c, folder, views="none", links="all")
        captions = [s.caption for s in img][:queries]
        out = {}
        for name, rerank in (("none", None), ("hubness", "hubness")):
            search(c, captions[0], k=10, rerank=rerank)  # warm: models, snapshot, banks
            times = []
            for _ in range(repeats):
                for text in captions:
                    t = time.perf_counter()
                    search(c, text, k=10, rerank=rerank)
                    times.append(time.perf_counter() - t)
            out[f"{name} ms/query"] = round(1000 * float(np.median(times)), 2)
        out["ratio"] = round(out["hubness ms/query"] / out["none ms/query"], 3)
        out["items"] = len(c)
        return out


def show(table: dict[str, dict[str, dict[str, float]]]) -> None:
    for task, rows in table.items():
        base = rows["none"]
        for cand, m in rows.items():
            delta = " ".join(f"{k} {m[k] - base[k]:+.3f}" if k in ("MRR", "nDCG@10") else f"{k} {m[k] - base[k]:+.1f}"
                             for k in m) if cand != "none" else ""
            print(f"{task:30} {cand:20} " + " ".join(f"{k} {v:.3f}" if k in ("MRR", "nDCG@10") else f"{k} {v:5.1f}"
                                                      for k, v in m.items()) + (f"   ({delta})" if delta else ""),
                  file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--choose", action="store_true", help="training data: compare the candidates")
    ap.add_argument("--heldout", action="store_true", help="the chosen reranker on held-out sets, and latency")
    args = ap.parse_args()
    result = json.loads(OUT.read_text()) if OUT.exists() else {}
    result.update({"depth": DEPTH, "hubness": {"neighbours": HUB_NEIGHBOURS, "weight": HUB_WEIGHT}})
    if args.choose:
        result["choose (training data)"] = choose()
        show(result["choose (training data)"])
    if args.heldout:
        result["held-out"] = heldout()
        show(result["held-out"])
        result["latency (search k=10, default space, Tux test stamps)"] = latency()
        print(json.dumps(result["latency (search k=10, default space, Tux test stamps)"]), file=sys.stderr)
    OUT.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
