#!/usr/bin/env python
"""Wall time of `omnibind collections`, `info` and `search`, this tree against another (issue 16
item 7: "every command takes 5-12 s").

    git worktree add /tmp/fast-before <commit before the change> --detach
    python benchmarks/cli_latency.py --before /tmp/fast-before --runs 5

Each command runs in a fresh interpreter (`python -m omnibind`, the tree put first on PYTHONPATH)
against one temporary home holding one collection of generated notes (built once, with this
tree). Rounds interleave the two trees (before, after; after, before; ...) after one unrecorded
warm-up each; the figure is the median wall time and the ratio after / before (below 1: faster).
Then `omnibind serve` of the collection is started from this tree, its first query warms its
models, and `omnibind search` of this tree is timed again (answered by the server) against the
before tree's local search; the outputs of a served and a `--local` search must be identical.
Absolute times on a shared machine are noise; the ratios are the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

AFTER = Path(__file__).resolve().parents[1]
QUERY = "a storm over the harbour"
COMMANDS = {"collections": ["collections"], "info": ["info"], "search": ["search", "-c", "bench", QUERY, "-k", "5"]}
SUBJECTS = ["harbour", "glacier", "violin", "tomato soup", "steam train", "thunderstorm", "library", "bicycle",
            "strawberries", "lighthouse", "football match", "jazz club", "desert", "fish market", "moon landing"]


def env_for(tree: Path, home: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "OMNIBIND_HOME": str(home), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def run(tree: Path, home: Path, args: list[str]) -> tuple[float, str]:
    """(seconds, stdout) of one `python -m omnibind ARGS` in a fresh interpreter."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "omnibind", *args], capture_output=True, text=True,
                         env=env_for(tree, home), timeout=600, cwd=tree)  # `-m` puts the cwd first on sys.path
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{tree}: omnibind {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return seconds, out.stdout


def build_collection(home: Path, n: int) -> None:
    """`n` generated notes in collection `bench` (embedded by this tree)."""
    notes = [f"note {i}: a short story about a {SUBJECTS[i % len(SUBJECTS)]} on day {i // len(SUBJECTS)}"
             for i in range(n)]
    code = ("import json, sys\nfrom omnibind.collection import Collection\n"
            "coll = Collection.open('bench')\ncoll.add(json.loads(sys.argv[1]), ids=[f'n{i}' for i in range(%d)])\n" % n)
    subprocess.run([sys.executable, "-c", code, json.dumps(notes)], check=True, env=env_for(AFTER, home), timeout=900,
                   cwd=AFTER, stderr=subprocess.DEVNULL)


def rounds(trees: dict[str, Path], home: Path, runs: int, commands: dict[str, list[str]]) -> dict[str, dict[str, list[float]]]:
    """Interleaved timings: {command: {tree name: [seconds...]}}, after one warm-up each."""
    times: dict[str, dict[str, list[float]]] = {c: {t: [] for t in trees} for c in commands}
    for name, tree in trees.items():
        for args in commands.values():
            run(tree, home, args)
    for r in range(runs):
        order = list(trees.items()) if r % 2 == 0 else list(reversed(trees.items()))
        for command, args in commands.items():
            for name, tree in order:
                times[command][name].append(run(tree, home, args)[0])
    return times


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    log = home.parent / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "omnibind", "serve", "-c", "bench", "--port", str(port)],
                            env=env_for(AFTER, home), stdout=subprocess.DEVNULL, stderr=log.open("w"), cwd=AFTER)
    for _ in range(1200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                if answer.status == 200 and list((home / "servers").glob("*.json")):
                    return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"omnibind serve did not come up:\n{log.read_text()[-2000:]}")


def served_rounds(home: Path, runs: int) -> tuple[list[float], bool]:
    """Timings of this tree's `search` answered by a running server, and whether its output
    equals a `--local` search's."""
    proc, _ = start_server(home)
    try:
        run(AFTER, home, COMMANDS["search"])  # the server's first query loads its models
        times = [run(AFTER, home, COMMANDS["search"])[0] for _ in range(runs)]
        same = all(run(AFTER, home, COMMANDS["search"] + extra)[1] ==
                   run(AFTER, home, COMMANDS["search"] + ["--local"] + extra)[1] for extra in ([], ["--json"]))
    finally:
        proc.terminate()
        proc.wait(30)
    if list((home / "servers").glob("*.json")):
        print("warning: the server's record was not removed on exit", file=sys.stderr)
    return times, same


def report(times: dict[str, dict[str, list[float]]], served: list[float], same: bool) -> dict[str, object]:
    med = {c: {t: statistics.median(v) for t, v in by.items()} for c, by in times.items()}
    rows = [(c, med[c]["before"], med[c]["after"]) for c in med]
    rows.append(("search, serve running", med["search"]["before"], statistics.median(served)))
    print(f"{'command':<24}{'before s':>10}{'after s':>10}{'after/before':>14}")
    for name, before, after in rows:
        print(f"{name:<24}{before:>10.2f}{after:>10.2f}{after / before:>14.3f}")
    print(f"served output identical to --local: {same}")
    return {"median_s": {n: {"before": b, "after": a, "ratio": a / b} for n, b, a in rows},
            "runs": {**times, "search, serve running": {"after": served}}, "served_output_identical": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="A checkout of omnibind before the change.")
    parser.add_argument("--runs", type=int, default=5, help="Timed runs per command and tree.")
    parser.add_argument("--notes", type=int, default=300, help="Notes in the benchmark collection.")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="omnibind-cli-latency-") as tmp:
        home = Path(tmp) / "home"
        build_collection(home, args.notes)
        times = rounds({"before": args.before.resolve(), "after": AFTER}, home, args.runs, COMMANDS)
        served, same = served_rounds(home, args.runs)
        figures = report(times, served, same)
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), **figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
