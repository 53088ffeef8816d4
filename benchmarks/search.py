"""Search latency and recall: omnibind collections (LanceDB) next to FAISS, same data, same run.

For each data set (random unit vectors, and a clustered set that looks more like real embeddings)
and size, with k=10 and one query at a time (what a search box does):

* exact top-10 by NumPy: the ground truth for recall@10;
* FAISS `IndexFlatIP` (exact) and `IndexHNSWFlat` (M=32) at several efSearch values;
* omnibind `search()` on a collection holding the same vectors: flat scan (exact=True); past
  100k rows its in-memory ANN index (omnibind/ann.py, built by `Collection.ensure_index()`,
  reloaded from disk) at several efSearch values, end to end and the ANN stage alone; then
  (unless --settings '') LanceDB's IVF_HNSW_SQ at several nprobes / refine settings (refine
  re-ranks refine*k candidates with the exact vectors), what collections use without FAISS;
* LanceDB's own `table.search()` on the same index, to show what omnibind's layer adds.

Prints p50/p95 latency, recall@10 and the ratio of each p50 to FAISS HNSW's p50 at its cheapest
setting with recall@10 >= 0.95. Absolute times on a shared 2-core box are noise; ratios are the
figure.

    python benchmarks/search.py --quick                      # 20k vectors, a minute or two
    python benchmarks/search.py --json benchmarks/results/search-2cpu.json            # 100k
    python benchmarks/search.py --sizes 1000000 --data random --json /tmp/s1m.json     # 1M: ~40 min
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LANCE_LOG", "error")
K = 10
GOAL_RECALL = 0.95
GOAL_RATIO = 3.0  # issue 18: omnibind search p50 <= 3x FAISS HNSW's p50


def make_data(kind: str, n: int, nq: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors. `clustered`: 1,000 random centres, points = centre + noise (a spread like
    real embeddings of a varied collection); queries are fresh points of the same mixture."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        x = rng.standard_normal((n + nq, dim), dtype=np.float32)
    elif kind == "clustered":
        centres = rng.standard_normal((1000, dim), dtype=np.float32)
        x = centres[rng.integers(0, 1000, n + nq)]
        x += 0.6 * rng.standard_normal(x.shape, dtype=np.float32)
    else:
        raise SystemExit(f"unknown data kind {kind!r}")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[:n], x[n:]


def exact_top_k(data: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    out = np.empty((len(queries), k), dtype=np.int64)
    for i in range(0, len(queries), 50):
        s = queries[i : i + 50] @ data.T
        part = np.argpartition(-s, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, part, 1), axis=1)
        out[i : i + 50] = np.take_along_axis(part, order, 1)
    return out


def timed(fn, queries: np.ndarray, truth: np.ndarray, warmup: int = 5) -> dict:
    """Per-query latency (ms) and recall@10 of fn(query) -> list of int ids."""
    for q in queries[:warmup]:
        fn(q)
    times, found = [], 0
    for q, t in zip(queries, truth):
        start = time.perf_counter()
        ids = fn(q)
        times.append((time.perf_counter() - start) * 1000)
        found += len(set(ids[:K]) & set(t.tolist()))
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
            "recall@10": found / (K * len(queries))}


def bench_faiss(data: np.ndarray, queries: np.ndarray, truth: np.ndarray, efs: list[int]) -> list[dict]:
    import faiss

    rows = []
    flat = faiss.IndexFlatIP(data.shape[1])
    flat.add(data)
    rows.append({"system": "faiss", "index": "Flat (exact)", "setting": "", "build_s": 0.0,
                 **timed(lambda q: flat.search(q[None], K)[1][0].tolist(), queries, truth)})
    start = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(data.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 80
    hnsw.add(data)
    build = time.perf_counter() - start
    print(f"  faiss HNSW M=32 build {build:.1f} s", flush=True)
    for ef in efs:
        hnsw.hnsw.efSearch = ef
        rows.append({"system": "faiss", "index": "HNSWFlat M=32", "setting": f"efSearch={ef}", "build_s": build,
                     **timed(lambda q: hnsw.search(q[None], K)[1][0].tolist(), queries, truth)})
    return rows


def fill_collection(path: Path, data: np.ndarray):
    """A collection of the default space holding `data` as image items (ids are row numbers)."""
    import pyarrow as pa

    from omnibind.collection import Collection
    from omnibind.search import refresh_calibration

    coll = Collection.open(path, space="default")
    if coll.space.dim != data.shape[1]:
        raise SystemExit(f"the default space has {coll.space.dim} dims; run with --dim {coll.space.dim}")
    schema = coll.table.schema
    for start in range(0, len(data), 100_000):
        part = data[start : start + 100_000]
        n = len(part)
        cols = {f.name: pa.nulls(n, f.type) for f in schema}
        cols["id"] = pa.array([str(i) for i in range(start, start + n)])
        cols["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(part.reshape(-1)), data.shape[1])
        cols["modality"] = pa.array(["image"] * n)
        cols["item"], cols["kind"] = cols["id"], pa.array(["item"] * n)  # item rows (collection format 2)
        cols["source"] = cols["id"]
        cols["space"] = pa.array([coll.meta["space"]["fingerprint"]] * n)
        coll.table.add(pa.table(cols, schema=schema))
    refresh_calibration(coll)
    return coll


def rss_mb() -> float:
    """This process's resident memory now (MB)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


def bench_omnibind(data: np.ndarray, queries: np.ndarray, truth: np.ndarray, settings: list[tuple[int, int]],
                   ann_efs: list[int], workdir: Path) -> list[dict]:
    from omnibind.search import search

    rows = []
    start = time.perf_counter()
    coll = fill_collection(workdir / "coll", data)
    print(f"  collection write {time.perf_counter() - start:.1f} s", flush=True)

    def run(**kw):
        return lambda q: [int(h.id) for h in search(coll, q, k=K, calibrated=True, **kw)]

    flat_queries = 20 if len(data) > 200_000 else 50
    rows.append({"system": "omnibind", "index": "flat scan (exact=True)", "setting": "", "build_s": 0.0,
                 **timed(run(exact=True), queries[:flat_queries], truth[:flat_queries])})
    if coll.snapshot() is None and ann_efs:
        rows += bench_ann(coll, run, queries, truth, ann_efs)
    if settings:
        rows += bench_lancedb_index(coll, run, queries, truth, settings)
    return rows


def bench_ann(coll, run, queries: np.ndarray, truth: np.ndarray, efs: list[int]) -> list[dict]:
    """omnibind's in-memory ANN (omnibind/ann.py): build as ingest does, reload as a restart
    does, then search() end to end and the ANN-candidate stage alone at each efSearch."""
    from omnibind.collection import Collection

    rows, added, rss = [], [0], rss_mb()
    start = time.perf_counter()
    kind = coll.ensure_index(progress=lambda n: added.__setitem__(0, added[0] + n))
    build = time.perf_counter() - start
    folder = coll.path / "ann"
    disk = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
    print(f"  {kind} build {build:.1f} s ({added[0]:,} rows), RSS +{rss_mb() - rss:.0f} MB, saved {disk:.0f} MB", flush=True)
    start = time.perf_counter()
    again = Collection.open(coll.path, space=coll.space)
    again.ann()
    load = time.perf_counter() - start
    del again  # one copy of the graph in memory while timing
    print(f"  reopen + load saved index {load:.1f} s", flush=True)
    index = coll.ann()
    extra = {"build_s": build, "load_s": load, "index_mb_on_disk": disk, "rss_growth_mb": rss_mb() - rss}
    for ef in efs:
        index.ef_search = ef
        rows.append({"system": "omnibind", "index": kind, "setting": f"efSearch={ef}", **extra,
                     **timed(run(), queries, truth)})
        rows.append({"system": "omnibind-ann-stage", "index": kind, "setting": f"efSearch={ef}", **extra,
                     **timed(lambda q: [int(r["id"]) for r in index.rows(index.search(q, "image", K)[0])], queries, truth)})
    return rows


def bench_lancedb_index(coll, run, queries: np.ndarray, truth: np.ndarray, settings: list[tuple[int, int]]) -> list[dict]:
    """LanceDB's own IVF_HNSW_SQ index (what collections use without FAISS): omnibind and raw."""
    from omnibind import ann

    rows = []
    start = time.perf_counter()
    kind = coll.ensure_index(force=True)
    build = time.perf_counter() - start
    print(f"  LanceDB {kind} build {build:.1f} s", flush=True)
    table = coll.table
    real = ann.available
    ann.available = lambda: False  # search through LanceDB's index, as without FAISS
    try:
        for nprobes, refine in settings:
            rows.append({"system": "omnibind", "index": str(kind), "setting": f"nprobes={nprobes} refine={refine}",
                         "build_s": build, **timed(run(nprobes=nprobes, refine=refine), queries, truth)})
            rows.append({"system": "lancedb", "index": str(kind), "setting": f"nprobes={nprobes} refine={refine}",
                         "build_s": build, **timed(lambda q: [int(r["id"]) for r in table.search(q).distance_type("cosine")
                                                              .nprobes(nprobes).refine_factor(refine).select(["id", "_distance"])
                                                              .limit(K).to_list()], queries, truth)})
    finally:
        ann.available = real
    return rows


def reference(rows: list[dict]) -> dict | None:
    """FAISS HNSW's cheapest setting reaching the recall goal (else its best recall)."""
    hnsw = [r for r in rows if r["system"] == "faiss" and r["index"].startswith("HNSW")]
    good = [r for r in hnsw if r["recall@10"] >= GOAL_RECALL]
    return min(good, key=lambda r: r["p50_ms"]) if good else max(hnsw, key=lambda r: r["recall@10"], default=None)


def report(title: str, rows: list[dict]) -> None:
    ref = reference(rows)
    print(f"\n{title}  (ratio = p50 / FAISS HNSW {ref['setting'] if ref else '-'} p50 {ref['p50_ms'] if ref else 0:.3f} ms)")
    print(f"{'system':9} {'index':24} {'setting':22} {'build s':>8} {'p50 ms':>8} {'p95 ms':>8} {'R@10':>6} {'ratio':>8}")
    for r in rows:
        r["ratio_vs_faiss_hnsw"] = r["p50_ms"] / ref["p50_ms"] if ref else None
        print(f"{r['system'][:9]:9} {r['index'][:24]:24} {r['setting']:22} {r['build_s']:8.1f} {r['p50_ms']:8.3f} "
              f"{r['p95_ms']:8.2f} {r['recall@10']:6.3f} {r['ratio_vs_faiss_hnsw']:8.1f}")
    ours = [r for r in rows if r["system"] == "omnibind" and r["recall@10"] >= GOAL_RECALL and "hnsw" in r["index"].lower()]
    best = min(ours, key=lambda r: r["p50_ms"], default=None)
    if best and ref:
        verdict = "met" if best["ratio_vs_faiss_hnsw"] <= GOAL_RATIO else "missed"
        print(f"goal (omnibind search within {GOAL_RATIO:g}x of FAISS HNSW at recall@10 >= {GOAL_RECALL}): "
              f"{best['index']} {best['setting']} {best['ratio_vs_faiss_hnsw']:.1f}x -> {verdict}")
    else:
        print(f"goal: no omnibind ANN setting reached recall@10 >= {GOAL_RECALL} -> missed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000", help="comma-separated collection sizes")
    ap.add_argument("--data", default="random,clustered", help="random, clustered or both")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--efs", default="16,32,64,128,256,512")
    ap.add_argument("--settings", default="16:1,32:4,64:4,64:10,128:10",
                    help="nprobes:refine pairs for LanceDB's index ('' skips building it)")
    ap.add_argument("--ann-efs", default="32,64,128", help="efSearch values for omnibind's in-memory ANN (past 100k rows)")
    ap.add_argument("--threads", type=int, default=2, help="FAISS / NumPy threads")
    ap.add_argument("--quick", action="store_true", help="20,000 vectors, 50 queries")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--workdir", type=Path, help="where collections are written (default: a temp dir)")
    args = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(args.threads)
    sizes = [20_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    nq = 50 if args.quick else args.queries
    efs = [int(e) for e in args.efs.split(",")]
    settings = [tuple(int(x) for x in s.split(":")) for s in args.settings.split(",") if s]
    ann_efs = [int(e) for e in args.ann_efs.split(",") if e]
    results, t0 = [], time.perf_counter()
    load = [os.getloadavg()[0]]
    for kind in args.data.split(","):
        for n in sizes:
            print(f"== {kind} {n:,} x {args.dim}, {nq} queries, k={K}", flush=True)
            data, queries = make_data(kind, n, nq, args.dim)
            truth = exact_top_k(data, queries)
            rows = bench_faiss(data, queries, truth, efs)
            with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
                rows += bench_omnibind(data, queries, truth, settings, ann_efs, Path(tmp))
            report(f"{kind} {n:,}", rows)
            results.append({"data": kind, "n": n, "dim": args.dim, "queries": nq, "rows": rows})
    load.append(os.getloadavg()[0])
    if args.json:
        import faiss as _f
        import lancedb

        machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "threads": args.threads,
                   "faiss": _f.__version__, "lancedb": lancedb.__version__, "loadavg_1m_start_end": load}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"k": K, "goal_recall": GOAL_RECALL, "machine": machine,
                                         "total_s": time.perf_counter() - t0, "results": results}, indent=1))
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
