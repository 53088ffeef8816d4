"""Choose the hybrid fusion on TRAIN data, then measure the chosen candidates on held-out data once.

    python benchmarks/hybrid.py --split train      # the grid: every fusion variant, Tux/STS-B train
    python benchmarks/hybrid.py --split test --variants vector,text-and,rrf-and-1 ...   # held-out

Variants: `vector`; `text-and` / `text-or` (BM25, all words / any word); `rrf-<op>-<w>` (weighted
RRF, k=60, text list by AND or OR, text weight w for every word); `mix-<a>` (a calibrated mix: the
vector hit's match log-odds + a * BM25 / best BM25 of the query, OR text list); `seen-<w>-<s>-<c>`
(the shipped rule, AND: words the vector never saw weigh w, words it embedded weigh s and nothing
when the vector top's strength >= c; `seen-2-1-0.75` is the default, `seen-2-0-1` drops embedded
words). Prints one JSON line per (set, variant) and a table to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

from omnibind import fulltext
from omnibind.evaluate import keywords as K
from omnibind.evaluate.suite import CachedEmbedder
from omnibind import search as search_module
from omnibind.search import search
from omnibind.space import load_space

GRID = ["vector", "text-and", "text-or", "rrf-and-0.5", "rrf-and-1", "rrf-and-2", "rrf-or-0.25", "rrf-or-0.5",
        "rrf-or-1", "mix-1", "mix-3", "seen-2-0-1", "seen-2-0.5-2", "seen-2-1-2", "seen-2-1-0.75", "seen-2-1-0.85",
        "seen-2-1-0.9", "seen-2-2-0.75", "seen-2-2-0.85", "seen-2-2-0.9"]
NEVER = 2.0  # a strength no hit reaches: the vector list is never confident


def _mix(collection: Any, text: str, k: int, alpha: float) -> list[str]:
    """Calibrated mix: log-odds (z without a fit) of the vector hit + alpha * relative BM25."""
    vec = search(collection, text, k=fulltext.TEXT_DEPTH, mode="vector")
    wanted = sorted(collection.modality_counts())
    texts = fulltext.text_ranking(collection, text, wanted, None, fulltext.TEXT_DEPTH, "OR")
    logit = {h.id: (math.log(max(h.probability, 1e-12) / max(1 - h.probability, 1e-12)) if h.probability is not None
                    else (h.z or 0.0)) for h in vec}
    floor = min(logit.values()) if logit else 0.0
    top = max((s for _, _, s in texts), default=1.0) or 1.0
    bonus = {i: alpha * s / top for i, _, s in texts}
    ids = set(logit) | set(bonus)
    return sorted(ids, key=lambda i: -(logit.get(i, floor) + bonus.get(i, 0.0)))[:k]


def ranked(collection: Any, text: str, variant: str, k: int = 10) -> list[str]:
    """The top-k item ids of one variant."""
    if variant == "vector":
        return [h.id for h in search(collection, text, k=k, mode="vector")]
    if variant.startswith("text-"):
        op = variant.split("-")[1].upper()
        wanted = sorted(collection.modality_counts())
        return [i for i, _, _ in fulltext.text_ranking(collection, text, wanted, None, k, op)]
    if variant.startswith("mix-"):
        return _mix(collection, text, k, float(variant.split("-")[1]))
    if variant.startswith("seen-"):
        w, s, c = (float(x) for x in variant.split("-")[1:])
        return [h.id for h in search_module.hybrid_search(collection, text, k, weight=w, seen_weight=s, confident=c)]
    _, op, w = variant.split("-")
    return [h.id for h in search_module.hybrid_search(collection, text, k, weight=float(w), operator=op.upper(),
                                                      seen_weight=float(w), confident=NEVER)]


def measure(embed: Any, data: K.KeywordSet, variants: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    with tempfile.TemporaryDirectory(prefix="omnibind-hybrid-") as tmp:
        collection = K.build_collection(embed, data, Path(tmp) / "c")
        for v in variants:
            found = []
            for text, j in data.queries:
                ids = ranked(collection, text, v)
                found.append(ids.index(f"item-{j}") + 1 if f"item-{j}" in ids else None)
            out[v] = K.rank_metrics(found)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="train", choices=("train", "test"))
    ap.add_argument("--variants", default=",".join(GRID))
    ap.add_argument("--sets", default=",".join(K.BUILDERS))
    ap.add_argument("--space", default="default")
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    embed = CachedEmbedder(load_space(args.space))
    variants = args.variants.split(",")
    for name in args.sets.split(","):
        data = K.BUILDERS[name](args.split, args.limit)
        result = measure(embed, data, variants)
        for v, m in result.items():
            print(json.dumps({"split": args.split, "set": name, "variant": v, **m}))
            print(f"{args.split:5} {name:20} {v:12} R@1 {m['R@1']:5.1f} R@5 {m['R@5']:5.1f} R@10 {m['R@10']:5.1f} "
                  f"MRR {m['MRR']:.3f} (n={m['queries']})", file=sys.stderr)


if __name__ == "__main__":
    main()
