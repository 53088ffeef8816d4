"""Plant realistic bugs one at a time and check that the test suite notices (mutation testing).

    PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/mutations.py [--new-only | --existing-only | --files F ...]
                                                           [--gates] [--only NAME ...] [--keep]

For each mutation: copy the repository (without .git, .venv, caches) to a temporary folder, apply
the mutation as exact text replacements (the script stops with an error if a line is not found,
so drift in the code is noticed, never silently skipped), run `python -m pytest -q -x <files>`
there with PYTHONPATH at the copy, and record: killed (a test failed) or survived (all passed).
First, the same files must pass on an unmutated copy (the baseline), or nothing is measured.

Prints a table (mutation, killed/survived, the first failing test) and exits non-zero if any
mutation survived or a run errored. By default each mutation runs the regression suite's own files
(tests/test_exact_values.py, tests/test_reference_vectors.py) and then the existing files that
concern the mutated code. `--new-only` runs only the former, `--existing-only` only the latter
(what the suite caught before), `--files` exactly the files given (e.g. only the reference
vectors); `--gates` adds the slow real-data gates (tests/test_regression_gates.py). The table is
kept in docs/testing.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEW_TESTS = ["tests/test_exact_values.py", "tests/test_reference_vectors.py"]
GATES = "tests/test_regression_gates.py"
IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache", "*.egg-info", "examples",
                                "reports", ".cache", "build")


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    file: str
    replacements: tuple[tuple[str, str], ...]  # (exact old text, new text), each must occur exactly once
    tests: tuple[str, ...]  # existing test files that concern the code, run after the new ones
    other_files: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()  # further (file, replacements)


MUTATIONS = [
    Mutation(
        "conse-temperature", "ConSE ignores its temperature (softmax of raw scores)", "omnibind/heads.py",
        (("probs = torch.softmax(scores / self.temperature, dim=-1)", "probs = torch.softmax(scores, dim=-1)"),),
        ("tests/test_heads.py",),
    ),
    Mutation(
        "distill-kl-swapped", "contrastive distillation KL with its arguments swapped", "omnibind/bind/losses.py",
        (("return F.kl_div(log_q, log_p, reduction=\"batchmean\", log_target=True)",
          "return F.kl_div(log_p, log_q, reduction=\"batchmean\", log_target=True)"),),
        ("tests/test_losses.py",),
    ),
    Mutation(
        "unchanged-by-size", "ingest decides 'unchanged' by file size instead of sha256", "omnibind/pipeline.py",
        (("if known.get(source) == digest:", "if known.get(source) == read.size:"),),
        ("tests/test_collection.py",),
        (("omnibind/ingest.py", (("digests = {k: v[0] for k, v in known.items()}",
                                  "digests = {k: v[1] for k, v in known.items()}"),)),),
    ),
    Mutation(
        "fuse-unnormalised", "segment vectors averaged without normalising each first", "omnibind/tower.py",
        (("unit = torch.nn.functional.normalize(v, dim=-1)\n", "unit = v\n"),),
        ("tests/test_item_pipeline.py", "tests/test_long_audio.py"),
    ),
    Mutation(
        "confine-by-prefix", "server confine() by string prefix (root inbox allows inbox2)",
        "omnibind/server/settings.py",
        (("if real == root or root in real.parents:", "if str(real).startswith(str(root)):"),),
        ("tests/test_server.py",),
    ),
    Mutation(
        "prune-by-prefix", "prune by prefix without the separator (pruning media deletes media2 rows)",
        "omnibind/ingest.py",
        (("if beneath(source_path(i), report.root) and i not in present",
          "if source_path(i).startswith(report.root) and i not in present"),),
        ("tests/test_collection.py", "tests/test_collection_hardening.py"),
    ),
    Mutation(
        "video-weights-swapped", "video's image and audio fusion weights swapped", "omnibind/video.py",
        (("[fusion.image_weight] * len(videos)", "[fusion.audio_weight] * len(videos)"),
         ("weights += [fusion.audio_weight] * len(heard)", "weights += [fusion.image_weight] * len(heard)")),
        ("tests/test_item_pipeline.py", "tests/test_space.py"),
    ),
]


class DriftError(RuntimeError):
    """A mutation's target text is not in the code (any more): update the mutation."""


def apply(copy: Path, file: str, replacements: tuple[tuple[str, str], ...]) -> None:
    path = copy / file
    text = path.read_text("utf-8")
    for old, new in replacements:
        count = text.count(old)
        if count != 1:
            raise DriftError(f"{file}: expected exactly one {old!r}, found {count}: the code drifted, "
                             f"update {__file__}")
        text = text.replace(old, new)
    path.write_text(text, "utf-8")


def fresh_copy(parent: Path, name: str, repo: Path = ROOT) -> Path:
    copy = parent / name
    shutil.copytree(repo, copy, ignore=IGNORE, symlinks=True)
    return copy


def run_pytest(copy: Path, files: list[str], timeout: int) -> tuple[int, str, float]:
    env = {**os.environ, "PYTHONPATH": str(copy), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-rf", *files]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
        return done.returncode, done.stdout + done.stderr, time.perf_counter() - start
    except subprocess.TimeoutExpired as exc:
        return -1, f"timed out after {timeout} s\n{exc.stdout or ''}", time.perf_counter() - start


def first_failure(output: str) -> str:
    match = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.M)
    return match.group(1) if match else ""


def files_for(m: Mutation, args: argparse.Namespace) -> list[str]:
    if args.files:
        return list(args.files)
    new = [] if args.existing_only else list(NEW_TESTS)
    files = new + ([] if args.new_only else [t for t in m.tests if t not in NEW_TESTS])
    return files + [GATES] if args.gates else files


def main() -> int:
    parser = argparse.ArgumentParser(description="plant each known bug in a copy and check a test fails")
    parser.add_argument("--new-only", action="store_true", help="run only the regression suite's own test files")
    parser.add_argument("--existing-only", action="store_true",
                        help="run only the existing test files that concern each mutation (what was caught before)")
    parser.add_argument("--gates", action="store_true", help="also run the slow real-data gates")
    parser.add_argument("--files", nargs="+", default=None, help="run exactly these test files for every mutation")
    parser.add_argument("--only", nargs="*", default=None, help="mutation names to run (default: all)")
    parser.add_argument("--repo", type=Path, default=ROOT, help="the repository to copy (default: this script's)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per pytest run")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if args.only is None or m.name in args.only]
    if args.only and len(chosen) != len(args.only):
        parser.error(f"unknown mutation; known: {', '.join(m.name for m in MUTATIONS)}")

    parent = Path(tempfile.mkdtemp(prefix="omnibind-mutations-"))
    rows: list[tuple[str, str, str, float]] = []
    try:
        # every target must be found before any test runs (drift is reported at once)
        probe = fresh_copy(parent, "probe", args.repo)
        for m in chosen:
            for file, reps in ((m.file, m.replacements), *m.other_files):
                apply(probe, file, reps)
        shutil.rmtree(probe)

        union = list(dict.fromkeys(f for m in chosen for f in files_for(m, args)))
        base = fresh_copy(parent, "baseline", args.repo)
        code, out, secs = run_pytest(base, union, args.timeout)
        print(f"baseline (no mutation): {'passed' if code == 0 else 'FAILED'} in {secs:.0f} s: {' '.join(union)}",
              flush=True)
        if code != 0:
            print(out[-4000:])
            print("the unmutated code fails these tests: nothing can be measured", file=sys.stderr)
            return 2
        shutil.rmtree(base)

        for m in chosen:
            copy = fresh_copy(parent, m.name, args.repo)
            for file, reps in ((m.file, m.replacements), *m.other_files):
                apply(copy, file, reps)
            code, out, secs = run_pytest(copy, files_for(m, args), args.timeout)
            verdict = {0: "SURVIVED", 1: "killed"}.get(code, f"error (pytest exit {code})")
            rows.append((m.name, verdict, first_failure(out), secs))
            print(f"{m.name:24s} {verdict:10s} {secs:5.0f} s  {first_failure(out)}", flush=True)
            if code not in (0, 1):
                print(out[-3000:])
            if not args.keep:
                shutil.rmtree(copy)
    except DriftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(parent, ignore_errors=True)

    width = max(len(m.what) for m in chosen)
    print("\n| mutation | what | result | first failing test |\n|---|---|---|---|")
    for (name, verdict, test, _), m in zip(rows, chosen):
        cell = f"`{test}`" if test else ""
        print(f"| {name} | {m.what:{width}s} | {verdict} | {cell} |")
    survived = [r[0] for r in rows if r[1] != "killed"]
    tail = f"; not killed: {', '.join(survived)}" if survived else ""
    print(f"\n{len(rows) - len(survived)}/{len(rows)} killed{tail}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
