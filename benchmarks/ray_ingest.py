#!/usr/bin/env python
"""Ingest throughput: the local engine vs the Ray engine, same files, same run, same machine.

    python benchmarks/ray_ingest.py                   # 200 images + 60 sounds + 100 notes, 2 rounds each
    python benchmarks/ray_ingest.py --quick --json out.json

The folder is the one benchmarks/ingest.py builds (real Tux Paint stamps and sounds, STS-B
sentences as notes). Each round ingests into a fresh collection: `ingest()` (local engine) and
`ingest()` on a local Ray cluster (`ray.init(num_cpus=<cores>)`, `--actors` actors, engine="ray", one space
loaded per actor — included in the Ray time, since every run pays it). The Ray cluster's own
start is timed separately. Both collections are compared row by row (max abs vector difference).
On a 2-core machine Ray cannot be faster — the point is the same result and a path to many
machines; the ratio says what the machinery costs here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from ingest import FULL, QUICK, build_folder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import ray

    from omnibind import load_space
    from omnibind.collection import Collection
    from omnibind.ingest import ingest

    work = Path(tempfile.mkdtemp(prefix="omnibind-ray-bench-"))
    try:
        files = build_folder(work / "files", cfg)
        space = load_space()
        cpus = os.cpu_count() or 2
        start = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        cluster_s = time.perf_counter() - start
        print(f"{len(files)} files; Ray cluster ({cpus} CPUs) started in {cluster_s:.1f} s", file=sys.stderr)
        counter = iter(range(10**6))
        colls: dict[str, Collection] = {}

        def run_local() -> None:
            coll = colls["local"] = Collection.open(work / f"coll-{next(counter)}", space=space)
            assert ingest(coll, work / "files").embedded == len(files)

        def run_ray() -> None:
            coll = colls["ray"] = Collection.open(work / f"coll-{next(counter)}", space=space)
            report = ingest(coll, work / "files", engine="ray", actors=args.actors, batch_size=32,
                                num_cpus_per_actor=max(0.5, min(1.0, (cpus - 0.5) / args.actors)))
            assert report.embedded == len(files) and not report.failed, report.summary()

        run_local()  # warm-up of the local backbones
        times: dict[str, list[float]] = {"local": [], "ray": []}
        for r in range(args.rounds):
            for name, fn in ([("local", run_local), ("ray", run_ray)][:: 1 if r % 2 == 0 else -1]):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
                print(f"  round {r + 1} {name}: {times[name][-1]:.1f} s", file=sys.stderr)
        a = {row["id"]: row["vector"] for row in colls["local"].column("id", "vector").to_pylist()}
        b = {row["id"]: row["vector"] for row in colls["ray"].column("id", "vector").to_pylist()}
        assert a.keys() == b.keys()
        diff = max(float(np.abs(np.asarray(a[k]) - np.asarray(b[k])).max()) for k in a)
        med = {k: statistics.median(v) for k, v in times.items()}
        result = {"files": len(files), "cpus": cpus, "actors": args.actors, "ray_cluster_start_s": cluster_s,
                  "local_files_per_s": len(files) / med["local"], "ray_files_per_s": len(files) / med["ray"],
                  "ray_over_local": med["local"] / med["ray"], "max_abs_vector_diff": diff, "seconds": times}
        print(f"\n| engine | files/s (median of {args.rounds}) |\n|---|---|")
        print(f"| local `ingest()` | {result['local_files_per_s']:.1f} |")
        print(f"| Ray `ingest()`, {args.actors} actors (actor start-up included) | {result['ray_files_per_s']:.1f} |")
        print(f"\nray / local = {result['ray_over_local']:.2f}; same rows, max abs vector difference {diff:.1e}")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        ray.shutdown() if "ray" in dir() and ray.is_initialized() else None
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
