"""Write tests/data/reference_vectors.npz and .json: the shipped spaces' vectors for fixed inputs.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/make_reference_vectors.py [--check]

Run it only after a *deliberate* change of a shipped space (omnibind/data/spaces/*) or of what a
space computes (a backbone's preprocessing, a head, the fusion), and say so in the commit: these
files pin what `space.embed` returns, and tests/test_reference_vectors.py fails on any drift
larger than 1e-4. `--check` writes nothing and prints the largest difference per input.

The inputs are defined once, in tests/reference_inputs.py. Inputs whose file is missing are left
out (install the Debian packages of docs/testing.md first so that none is).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from reference_inputs import SPACES, reference_inputs  # noqa: E402

OUT = ROOT / "tests" / "data" / "reference_vectors"


def compute() -> tuple[dict[str, np.ndarray], dict]:
    import omnibind

    inputs = [i for i in reference_inputs() if i.available]
    missing = [i.name for i in reference_inputs() if not i.available]
    if missing:
        print(f"warning: inputs missing on this machine, left out: {', '.join(missing)}", file=sys.stderr)
    vectors, spaces = {}, {}
    for name in SPACES:
        space = omnibind.load_space(name)
        vectors[name] = space.embed([i.make() for i in inputs]).astype(np.float32)
        spaces[name] = {"fingerprint": space.fingerprint(),
                        "dim": space.dim}
    meta = {
        "about": "omnibind's shipped spaces' vectors of fixed inputs; written by scripts/make_reference_vectors.py",
        "atol": 1e-4,
        "omnibind_version": omnibind.__version__,
        "spaces": spaces,
        "inputs": [{"name": i.name, "modality": i.modality, "description": i.description, "source": i.source,
                    "sha256": i.digest()} for i in inputs],
    }
    return vectors, meta


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the stored vectors, write nothing")
    args = parser.parse_args()
    vectors, meta = compute()
    if args.check:
        stored = np.load(OUT.with_suffix(".npz"))
        names = [i["name"] for i in json.loads(OUT.with_suffix(".json").read_text())["inputs"]]
        worst = 0.0
        for space, v in vectors.items():
            for j, entry in enumerate(meta["inputs"]):
                k = names.index(entry["name"])
                diff = float(np.abs(stored[space][k] - v[j]).max())
                worst = max(worst, diff)
                print(f"{space:8s} {entry['name']:24s} max |diff| {diff:.2e}")
        print(f"largest difference {worst:.2e} (tolerance {meta['atol']:.0e})")
        return int(worst > meta["atol"])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT.with_suffix(".npz"), **vectors)
    OUT.with_suffix(".json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", "utf-8")
    print(f"wrote {OUT.with_suffix('.npz')} ({', '.join(f'{k}: {v.shape}' for k, v in vectors.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
