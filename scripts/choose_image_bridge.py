"""Choose the image bridge (backbone, class texts, top_k, temperature) on TRAINING data only, and
print the table.

Validation: Tux Paint *train* stamps (caption<->image R@1/5/10; the bridge is training-free, so
the whole train split is a fair validation set) and a fixed sample of Fashion-MNIST *train*
(zero-shot accuracy with the eval suite's FMNIST_TEMPLATES, images inverted as the suite does).
No test stamp and no out-of-domain image is read here. The vectors are the image tower's alone
(ConSE on the backbone's logits, fused as a Tower does); views (OCR) are left out of the choice.

Each backbone's logits are computed once per image set and kept as .npy under --cache, so the
text-side sweep costs only matrix products.

Run: python scripts/choose_image_bridge.py [--cache /tmp/omnibind-image-bridge] [--fmnist 3000]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from omnibind.backbones import load_backbone
from omnibind.class_texts import STYLES, class_embeddings, imagenet_class_texts
from omnibind.evaluate import datasets as ds
from omnibind.evaluate import metrics as M
from omnibind.evaluate.suite import FMNIST_TEMPLATES
from omnibind.inputs import to_input

BACKBONES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
ENSEMBLES = {"lite0+1": BACKBONES[:2], "lite1+2": BACKBONES[1:], "lite0+1+2": BACKBONES}
TOP_KS = (3, 5, 10, 20, 50)
# Embedding cost vs Lite0 (decode + preprocess + network, ONNX, 1 thread), measured by
# benchmarks/image_backbones.py; an ensemble costs the sum of its members.
COST = {"lite0": 1.0, "lite1": 1.47, "lite2": 1.86}
MAX_COST = 1.5  # issue 15: within 1.5x of today's (Lite0) embedding speed


def cost(backbone: str) -> float:
    return sum(COST[f"lite{m}"] for m in backbone.removeprefix("lite").split("+"))
TEMPERATURES = (0.5, 1.0, 2.0)


def validation_images(fmnist_n: int) -> dict[str, list]:
    """The two training-split image sets, in a fixed order."""
    stamps = ds.tuxpaint_images("train")
    assert all(s.split == "train" for s in stamps)
    x, _ = ds.fashion_mnist("train")
    idx = np.sort(np.random.default_rng(0).choice(len(x), fmnist_n, replace=False))
    from PIL import Image

    return {"tux-train": [s.image for s in stamps],
            "fmnist-train": [Image.fromarray(255 - x[i]).convert("RGB") for i in idx]}


def logits(ref: str, name: str, images: Sequence, cache: Path, batch: int = 32) -> np.ndarray:
    """The backbone's ImageNet logits of each image (one segment per image), cached as .npy."""
    path = cache / f"{ref}-{name}-{len(images)}.npy"
    if path.exists():
        return np.load(path)
    backbone = load_backbone(ref)
    out = []
    for i in range(0, len(images), batch):
        segs = [next(iter(backbone.segments(to_input(im)))) for im in images[i : i + batch]]
        out.append(backbone.features(backbone.collate(segs))["logits"].numpy())
    arr = np.concatenate(out).astype(np.float32)
    np.save(path, arr)
    print(f"  {ref} {name}: {arr.shape}", file=sys.stderr)
    return arr


def encode_texts(texts: list[str]) -> torch.Tensor:
    minilm = load_backbone("minilm")
    return torch.cat([minilm.features(texts[i : i + 256])["embedding"] for i in range(0, len(texts), 256)])


def conse(probs: torch.Tensor, classes: torch.Tensor, top_k: int) -> np.ndarray:
    """ConSEHead's map on class probabilities: top-k kept, renormalised, then unit-normalised (fuse)."""
    top = torch.topk(probs, top_k, dim=-1)
    kept = torch.zeros_like(probs).scatter_(-1, top.indices, top.values)
    out = (kept / kept.sum(-1, keepdim=True)) @ classes
    return torch.nn.functional.normalize(out, dim=-1).numpy()


def probabilities(all_logits: dict[str, np.ndarray], members: Sequence[str], temperature: float) -> torch.Tensor:
    """Softmax(logits / T), averaged over the members (an ensemble of one is the backbone itself)."""
    return torch.stack([torch.softmax(torch.from_numpy(all_logits[m]) / temperature, -1) for m in members]).mean(0)


def style_embeddings(cache: Path) -> dict[str, torch.Tensor]:
    """Every style's class embeddings; each distinct prompt is embedded once (cached as .npy)."""
    classes = imagenet_class_texts()
    prompts = sorted({p for style in STYLES for c in classes for p in STYLES[style](c)})
    table = _prompt_vectors(prompts, cache / "prompts")

    def lookup(texts: list[str]) -> torch.Tensor:
        return torch.stack([table[t] for t in texts])

    return {style: class_embeddings(classes, style, lookup) for style in STYLES}


def _prompt_vectors(prompts: list[str], stem: Path) -> dict[str, torch.Tensor]:
    """MiniLM embeddings of the prompts, kept in stem.npy / stem.txt; only new prompts are embedded."""
    known: list[str] = stem.with_suffix(".txt").read_text("utf-8").split("\n") if stem.with_suffix(".txt").exists() else []
    vectors = np.load(stem.with_suffix(".npy")) if known else np.zeros((0, 384), np.float32)
    new = sorted(set(prompts) - set(known))
    if new:
        known, vectors = known + new, np.concatenate([vectors, encode_texts(new).numpy()])
        np.save(stem.with_suffix(".npy"), vectors)
        stem.with_suffix(".txt").write_text("\n".join(known), "utf-8")
    return dict(zip(known, torch.from_numpy(vectors)))


def text_targets(fmnist_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tux train caption vectors, Fashion-MNIST label vectors (suite templates), sample labels."""
    caps = encode_texts([s.caption for s in ds.tuxpaint_images("train")])
    names = ds.FASHION_MNIST_CLASSES
    prompts = torch.nn.functional.normalize(encode_texts([t.format(n) for n in names for t in FMNIST_TEMPLATES]), dim=-1)
    labels = torch.nn.functional.normalize(prompts.reshape(len(names), len(FMNIST_TEMPLATES), -1).mean(1), dim=-1)
    _, y = ds.fashion_mnist("train")
    idx = np.sort(np.random.default_rng(0).choice(len(y), fmnist_n, replace=False))
    return torch.nn.functional.normalize(caps, dim=-1).numpy(), labels.numpy(), y[idx]


def validate(tux: np.ndarray, fm: np.ndarray, targets: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, float]:
    """Train-split metrics and `val`, the one number the choice maximises: the mean of the six Tux
    recalls (both directions, R@1/5/10) and the Fashion-MNIST accuracy, weighted equally."""
    caps, labels, y = targets
    both = M.retrieval_both_directions(caps, tux, None, "caption", "image")
    row = {f"{d.split('->')[0][0]}>{d.split('->')[1][0]} R@{k}": both[d][f"R@{k}"] for d in both for k in (1, 5, 10)}
    row["fmnist"] = 100.0 * float(((fm @ labels.T).argmax(1) == y).mean())
    tux_mean = float(np.mean([v for k, v in row.items() if "R@" in k]))
    return {"val": 0.5 * tux_mean + 0.5 * row["fmnist"], **row}


def sweep(feats: dict[str, dict[str, np.ndarray]], styles: dict[str, torch.Tensor],
          targets: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[dict]:
    members = {b.replace("efficientnet-", ""): (b,) for b in BACKBONES} | ENSEMBLES
    rows = []
    for (name, refs), temperature in itertools.product(members.items(), TEMPERATURES):
        probs = {s: probabilities(feats[s], refs, temperature) for s in ("tux-train", "fmnist-train")}
        for style, top_k in itertools.product(styles, TOP_KS):
            vecs = {s: conse(p, styles[style], top_k) for s, p in probs.items()}
            row = validate(vecs["tux-train"], vecs["fmnist-train"], targets)
            rows.append({"backbone": name, "style": style, "top_k": top_k, "T": temperature, **row})
    return sorted(rows, key=lambda r: -r["val"])


def per_backbone(cache: Path, fmnist_n: int, style: str, top_k: int, temperature: float) -> dict[str, dict[str, float]]:
    """Train-split validation of each single backbone at one setting (benchmarks/image_backbones.py)."""
    images = validation_images(fmnist_n)
    feats = {s: {b: logits(b, s, ims, cache) for b in BACKBONES} for s, ims in images.items()}
    classes, targets = style_embeddings(cache)[style], text_targets(fmnist_n)
    out = {}
    for ref in BACKBONES:
        vecs = {s: conse(probabilities(feats[s], (ref,), temperature), classes, top_k) for s in feats}
        out[ref] = validate(vecs["tux-train"], vecs["fmnist-train"], targets)
    return out


def print_table(rows: list[dict], title: str) -> None:
    print(f"\n### {title}\n")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{v:.1f}" if isinstance(v, float) and k not in ("T",) else str(v) for k, v in r.items()) + " |")


ACCEPTANCE_TASKS = ("tux-images", "fashion-mnist", "ood-wallpapers", "ood-opencv-photos", "ood-scratch-backdrops")


def accept(finalists: list[str], out: Path) -> None:
    """ACCEPTANCE, after the choice: the shipped bridge with its image tower swapped for each finalist
    ('lite1:ensemble:10:1.0' = backbone, style, top_k, T), scored on the test and out-of-domain sets
    with the eval suite. Reads test data: never feed these numbers back into the choice."""
    from omnibind.evaluate.suite import score
    from omnibind.heads import ConSEHead
    from omnibind.space import load_space
    from omnibind.tower import Tower

    styles = style_embeddings(out)
    for spec in finalists:
        backbone, style, top_k, temperature = spec.split(":")
        space = load_space("bridge")
        head = ConSEHead.from_classes("logits", styles[style], int(top_k), float(temperature))
        space.towers["image"] = Tower("image", f"efficientnet-{backbone}", head)
        space.provenance = {**space.provenance, "image": f"acceptance candidate {spec}"}
        space.save(out / "spaces" / spec.replace(":", "-"))
        for task, metrics in score(space, ACCEPTANCE_TASKS).items():
            shown = {k: round(v, 1) for k, v in sorted(metrics.items()) if "R@" in k or k == "accuracy"}
            print(f"{spec}\t{task}\t{shown}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/omnibind-image-bridge"))
    parser.add_argument("--fmnist", type=int, default=3000, help="Fashion-MNIST train images sampled (seed 0)")
    parser.add_argument("--accept", nargs="+", metavar="BACKBONE:STYLE:TOP_K:T",
                        help="after choosing: score these finalists on test and out-of-domain sets (acceptance)")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    if args.accept:
        return accept(args.accept, args.cache)
    images = validation_images(args.fmnist)
    feats = {s: {b: logits(b, s, ims, args.cache) for b in BACKBONES} for s, ims in images.items()}
    rows = sweep(feats, style_embeddings(args.cache), text_targets(args.fmnist))
    today = next(r for r in rows if (r["backbone"], r["style"], r["top_k"], r["T"]) == ("lite0", "photo", 10, 1.0))
    print_table([today], "today's bridge (lite0, 'a photo of a {synonym}.', top_k=10, T=1)")
    print_table(rows[:20], f"best 20 of {len(rows)} by val (train splits only)")
    best_of = lambda key: [next(r for r in rows if r[key] == v) for v in dict.fromkeys(r[key] for r in rows)]  # noqa: E731
    print_table(best_of("backbone"), "best per backbone")
    print_table(best_of("style"), "best per class-text style")
    lite0 = [r for r in rows if r["backbone"] == "lite0"]
    print_table([next(r for r in lite0 if r["style"] == st) for st in dict.fromkeys(r["style"] for r in lite0)],
                "Lite0 alone (today's cost): best per class-text style")
    chosen = next(r for r in rows if cost(r["backbone"]) <= MAX_COST)
    print_table([chosen], f"chosen: best by val within {MAX_COST}x Lite0's cost")
    print_table([rows[0]], f"best at any cost ({cost(rows[0]['backbone']):.2f}x Lite0)")


if __name__ == "__main__":
    main()
