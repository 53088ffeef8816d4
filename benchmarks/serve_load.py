"""Load on `omnibind serve`: 50 concurrent clients against /v1/search, then the same while an
ingest runs; next to in-process `search()` on the same queries (the no-HTTP baseline).

    python benchmarks/serve_load.py                      # 50 clients x 60 s, twice (~3 min with set-up)
    python benchmarks/serve_load.py --clients 10 --seconds 10 --json out.json

A temporary collection is filled with the Tux Paint photo-like *test* images and natural test
sounds (Debian `tuxpaint-stamps-default`) plus STS-B test sentences as notes; the server runs as
a real `omnibind serve` subprocess on loopback. Each client sends text queries (STS-B sentences,
k=10) one after another until the time is up or `--max-requests` is reached. Phase 2 starts an
ingest of 200 more files (Tux train images copied into the allowed root) through the API at the
same moment. Reports requests/s, p50/p99 latency and errors; the ratio to the in-process rate is
the cost of HTTP, JSON and concurrency.

The clients send the server's token, as a trusted application would: 50 clients on one address
are far over the anonymous limits (20 requests/s per address, 8 model requests in flight; see
docs/serving.md), which would measure the rate limiter instead of the server. `--anonymous` drops
the token to see those limits at work (429s are then counted apart from errors).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(home: Path, notes: int) -> tuple[list[str], Path]:
    """The collection 'load' (test images, test sounds, notes) and a folder of files to ingest later."""
    from omnibind.collection import Collection
    from omnibind.evaluate import datasets as ds
    from omnibind.ingest import ingest

    media = home / "media"
    (media / "notes").mkdir(parents=True)
    for s in ds.tuxpaint_images("test") + ds.tuxpaint_sounds("test"):
        for f in (s.image, s.sound):
            if f is not None:
                shutil.copyfile(f, media / f"{s.key.replace('/', '_')}{f.suffix}")
    a, b, _ = ds.sts_b("test")
    sentences = list(dict.fromkeys(x.strip() for x in a + b if x.strip()))
    for i, text in enumerate(sentences[:notes]):
        (media / "notes" / f"{i}.txt").write_text(text)
    coll = Collection.open("load", home=home)
    report = ingest(coll, media)
    print(f"collection: {len(coll)} items ({report.seconds:.1f} s to ingest)", flush=True)
    later = home / "inbox"
    later.mkdir()
    for s in ds.tuxpaint_images("train")[:200]:
        shutil.copyfile(s.image, later / f"{s.key.replace('/', '_')}.png")
    return sentences[notes: notes + 500], later


def in_process_rate(home: Path, queries: list[str], seconds: float) -> dict:
    from omnibind.collection import Collection
    from omnibind.search import search

    coll = Collection.open("load", create=False, home=home)
    search(coll, queries[0])
    n, times, start = 0, [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        search(coll, queries[n % len(queries)], k=10)
        times.append(time.perf_counter() - t)
        n += 1
    return {"requests": n, "rps": n / (time.perf_counter() - start), "p50_ms": 1000 * statistics.median(times)}


async def load(url: str, queries: list[str], clients: int, seconds: float, max_requests: int,
               ingest: tuple[Path, str] | None, token: str | None) -> dict:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    limited = 0
    count = 0
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        async def client(i: int) -> None:
            nonlocal count, limited
            j = i
            while time.perf_counter() < deadline and count < max_requests:
                count += 1
                t = time.perf_counter()
                try:
                    r = await http.post("/v1/search", json={"text": queries[j % len(queries)], "k": 10}, headers=auth)
                    wait = float(r.headers.get("retry-after", 1)) if r.status_code in (429, 503) else 0.0
                    if wait:
                        limited += 1
                    elif r.status_code != 200 or not r.json()["results"]:
                        errors.append(f"{r.status_code}: {r.text[:100]}")
                except httpx.HTTPError as exc:
                    wait = 0.0
                    errors.append(repr(exc))
                latencies.append(time.perf_counter() - t)
                await asyncio.sleep(wait)  # a limited client backs off as told
                j += clients

        async def run_ingest() -> dict:
            folder, token = ingest  # type: ignore[misc]
            t = time.perf_counter()
            r = await http.post("/v1/collections/load/ingest", json={"path": str(folder)},
                                headers={"Authorization": f"Bearer {token}"}, timeout=600)
            return {"status": r.status_code, "seconds": time.perf_counter() - t,
                    **(r.json() if r.status_code == 200 else {})}

        start = time.perf_counter()
        tasks = [client(i) for i in range(clients)]
        ingest_result = None
        if ingest:
            *_, ingest_result = await asyncio.gather(*tasks, run_ingest())
        else:
            await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
    lat = sorted(latencies)
    out = {"clients": clients, "requests": len(lat), "errors": len(errors), "limited": limited,
           "first_errors": errors[:3],
           "wall_s": wall, "rps": len(lat) / wall, "p50_ms": 1000 * lat[len(lat) // 2],
           "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))]}
    if ingest_result:
        out["ingest"] = {k: ingest_result.get(k) for k in ("status", "seconds", "added", "failed")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-requests", type=int, default=200_000)
    ap.add_argument("--notes", type=int, default=1000)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--anonymous", action="store_true", help="send no token: the anonymous limits apply")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="omnibind-load-"))
    server = None
    try:
        queries, inbox = build(home, args.notes)
        baseline = in_process_rate(home, queries, min(20.0, args.seconds))
        print(f"in-process search(): {baseline['rps']:.1f} req/s, p50 {baseline['p50_ms']:.1f} ms", flush=True)
        port, token = free_port(), "load-test-token"
        log = open(home / "server.log", "w")  # a pipe nobody reads would stall the server once full
        env = {**os.environ, "OMNIBIND_TOKEN": token}
        server = subprocess.Popen([sys.executable, "-m", "omnibind", "serve", "-c", "load", "--home", str(home),
                                   "--port", str(port), "--root", str(inbox)], env=env, stderr=log, text=True)
        url = f"http://127.0.0.1:{port}"
        import httpx

        for _ in range(600):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        phases = {}
        for name, ingest in (("search only", None), ("search during ingest", (inbox, token))):
            r = asyncio.run(load(url, queries, args.clients, args.seconds, args.max_requests, ingest,
                                 None if args.anonymous else token))
            r["ratio_vs_in_process"] = r["rps"] / baseline["rps"]
            phases[name] = r
            extra = f"; ingest {r['ingest']}" if "ingest" in r else ""
            print(f"{name}: {r['requests']} requests, {r['errors']} errors, {r['limited']} limited, "
                  f"{r['rps']:.1f} req/s ({r['ratio_vs_in_process']:.2f}x in-process), p50 {r['p50_ms']:.0f} ms, "
                  f"p99 {r['p99_ms']:.0f} ms{extra}",
                  flush=True)
        result = {"clients": args.clients, "seconds": args.seconds, "anonymous": args.anonymous,
                  "in_process": baseline, "phases": phases,
                  "cpus": os.cpu_count(), "loadavg_end": os.getloadavg()}
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1) + "\n")
    finally:
        if server:
            server.terminate()
            server.wait(10)
            errors = (home / "server.log").read_text(errors="replace")
            if "Traceback" in errors:
                print("server log (last 3,000 characters):\n" + errors[-3000:], flush=True)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
