"""Documents benchmark: PDF reading speed, chunking throughput, and the long-document eval.

    python benchmarks/documents.py [--skip-eval] [--json out.json]

1. pages/s reading the eval set's PDFs (pypdf through omnibind's reader);
2. chunking throughput: `chunk_spans` (bounded pieces) vs. the obvious alternative, one tokenizer
   call over the whole text, printed as a ratio, on a 5 MB text made of the rendered pages;
3. the eval (omnibind/evaluate/documents.py): right-document R@1/R@5 by max, mean-of-top-2 and
   item vector, page accuracy; with the default 128-token chunks and with full 256-token windows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def read_pdfs(paths: dict) -> tuple[dict, float]:
    from omnibind.inputs import load_file

    start = time.perf_counter()
    docs = {name: load_file(path).payload for name, path in paths.items()}
    seconds = time.perf_counter() - start
    pages = sum(len(d.pages) for d in docs.values())
    print(f"read {len(docs)} PDFs, {pages} pages in {seconds:.2f} s: {pages / seconds:.0f} pages/s")
    return docs, pages / seconds


def chunking(space, docs: dict, target_chars: int = 5_000_000) -> dict:
    from omnibind.views.chunks import chunker, token_offsets

    c = chunker(space)
    base = "\n\n".join(d.text for d in docs.values())
    text = (base * (target_chars // len(base) + 1))[:target_chars]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    spans = c.spans(text)
    ours = time.perf_counter() - start
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    n_tokens = len(token_offsets(c.tokenizer, text))
    whole = time.perf_counter() - start
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"chunking {len(text) / 1e6:.1f} MB ({n_tokens} tokens): chunk_spans {ours:.2f} s -> {len(spans)} chunks "
          f"({len(text) / 1e6 / ours:.2f} MB/s); one tokenizer call over the whole text {whole:.2f} s "
          f"(offsets only, no chunks); ratio whole/ours = {whole / ours:.2f}x; peak RSS grew {(rss0 - rss_before) / 1024:.0f} MB "
          f"in chunk_spans, {(rss1 - rss0) / 1024:.0f} MB in the whole-text call")
    return {"mb": len(text) / 1e6, "chunk_spans_s": ours, "rss_growth_mb": (rss0 - rss_before) / 1024,
            "whole_rss_growth_mb": (rss1 - rss0) / 1024, "whole_tokenize_s": whole, "ratio": whole / ours,
            "chunks": len(spans), "tokens": n_tokens}


def evaluation(space, docs: dict) -> dict:
    from omnibind.evaluate.documents import score
    from omnibind.views.chunks import Chunker, chunker

    c = chunker(space)
    out = {}
    for label, cutter in (("chunks of 128 tokens (default)", None),
                          ("windows of 256 tokens", Chunker(c.tokenizer, c.window, c.window))):
        start = time.perf_counter()
        result = score(space, docs, cutter=cutter)
        result["seconds"] = time.perf_counter() - start
        out[label] = result
        print(f"\n{label}: {result['segments']} segments over {result['pages']} pages, "
              f"{result['queries']} queries, {result['seconds']:.0f} s")
        for subset in ("all", "middle", "end"):
            m = result[subset]
            print(f"  {subset:6s} (n={m['queries']}): " + "; ".join(
                f"{how} R@1 {m[how]['doc_r1']:.0f} R@5 {m[how]['doc_r5']:.0f}" for how in ("max", "top2", "item"))
                + f"; page of best chunk {m['max']['page']:.0f}; page within right doc {m['page_within_right_doc']:.0f}")
        print(f"  bars: {result['bars']} -> {'PASS' if result['pass'] else 'FAIL'}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    import omnibind
    from omnibind.evaluate.documents import build

    paths = build()
    docs, pages_per_s = read_pdfs(paths)
    space = omnibind.load_space()
    results = {"pages_per_s": pages_per_s, "chunking": chunking(space, docs)}
    if not args.skip_eval:
        results["eval"] = evaluation(space, docs)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
