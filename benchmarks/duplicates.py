"""Near-duplicate thresholds: chosen on train, accepted once on held-out data (docs/duplicates.md).

    python benchmarks/duplicates.py choose   # Tux Paint TRAIN stamps + planted copies (seed 0): the grid
    python benchmarks/duplicates.py accept   # held-out: OOD photos + Tux Paint TEST stamps (seed 1), the defaults

Each original gets 7 planted copies (omnibind/evaluate/near_copies.py: 50% and 25% resizes, JPEG
q60 and q30, a 5% crop, PNG<->JPEG, WEBP). The folder is ingested into a collection (default space,
no views) exactly as a user's would be. `choose` sweeps the vector cosine and the thumbnail
threshold and keeps the pair with the highest recall at <= 1% false groups; `accept` runs
`find_duplicates` with the defaults in omnibind/duplicates.py. Results: benchmarks/results/duplicates.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from omnibind import duplicates as dup
from omnibind.collection import Collection
from omnibind.evaluate import datasets, ood_images
from omnibind.evaluate.near_copies import VARIANTS, Planted, plant, score
from omnibind.ingest import ingest

WORK = Path("/tmp/omnibind-duplicates")
RESULTS = Path(__file__).resolve().parent / "results" / "duplicates.json"
SEEDS = {"train": 0, "heldout": 1}
VEC_GRID = (-1.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)
PIX_GRID = (0.7, 0.8, 0.85, 0.88, 0.9, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98)  # vector -1: thumbnails only
MAX_FALSE = 0.01


def originals(split: str) -> list[tuple[str, Path]]:
    """(name, file): train = Tux Paint train stamps; heldout = OOD photos + Tux Paint test stamps."""
    stamps = [s for s in datasets.tuxpaint_stamps() if s.image and s.split == ("train" if split == "train" else "test")]
    out = [(s.key.replace("/", "_"), s.image) for s in stamps]
    if split == "heldout":
        out += [(f"ood-{i.set}-{i.path.stem}", i.path) for i in ood_images.load()]
    seen: dict[str, int] = {}
    unique = []
    for name, path in out:  # two photos may share a stem (butterfly.jpg, butterfly.png): never one name
        seen[name] = seen.get(name, 0) + 1
        unique.append((name if seen[name] == 1 else f"{name}-{seen[name]}", path))
    return unique


def planted(split: str, limit: int | None = None) -> tuple[Path, list[Planted]]:
    """The split's folder of originals and copies (written once, reused)."""
    folder = WORK / split if limit is None else WORK / f"{split}-{limit}"
    rng = np.random.default_rng(SEEDS[split])
    chosen = originals(split)
    if limit is not None:
        chosen = [chosen[i] for i in sorted(rng.choice(len(chosen), min(limit, len(chosen)), replace=False))]
    done = folder / "planted.json"
    if done.exists():
        rows = json.loads(done.read_text())
        return folder, [Planted(Path(r[0]), tuple(Path(c) for c in r[1]), r[2]) for r in rows]
    items = [plant(path, folder, name, rng) for name, path in chosen]
    done.write_text(json.dumps([[str(p.original), [str(c) for c in p.copies], p.family] for p in items]))
    return folder, items


def collection(folder: Path) -> Collection:
    """The folder ingested (default space, no views), as a user would: `omnibind ingest`."""
    coll = Collection.open(folder.parent / f"{folder.name}-collection", space="default")
    report = ingest(coll, folder, views="none", build_index=False, exclude=["planted.json"])
    if report.failed:
        print(f"failed: {report.failed[:5]}", file=sys.stderr)
    return coll


def sweep(coll: Collection, items: list[Planted]) -> list[dict[str, float]]:
    """Recall and false groups for every (vector, thumbnail) threshold pair, grouping as
    find_duplicates does (exact groups first, then leader groups per modality)."""
    data = dup.read_items(coll, ["image"])
    exact = dup.exact_groups(data)
    covered = {m.id for g in exact for m in g.removable}
    idx = [i for i, r in enumerate(data.rows) if r["id"] not in covered]
    every = dup.near_edges(coll, data, idx, "image", -1.0, -1.0)  # every candidate pair, both numbers
    dup.fill_resolution(data, sorted({idx[k] for pair in every for k in pair}))
    order = sorted(range(len(idx)), key=lambda k: dup.keep_key(data.rows[idx[k]]))
    out = []
    for tv in VEC_GRID:
        for tp in PIX_GRID:
            edges = {pair: v for pair, v in every.items() if v[0] >= tv and v[1] >= tp}
            groups = [[m.id for m in g.members] for g in exact]
            groups += [[data.rows[idx[k]]["id"] for k in g] for g in dup.leader_groups(edges, order)]
            out.append({"vector": tv, "pixels": tp, **score(groups, items)})
    return out


def per_variant(groups: list[list[str]], items: list[Planted]) -> dict[str, float]:
    """Recall of each kind of copy."""
    return {v: score(groups, [Planted(p.original, tuple(c for c in p.copies if f"__{v}." in c.name), p.family)
                              for p in items])["recall"] for v in VARIANTS}


def choose() -> dict[str, object]:
    folder, items = planted("train")
    coll = collection(folder)
    grid = sweep(coll, items)
    ok = [g for g in grid if g["false_groups"] <= MAX_FALSE]
    best = max(ok, key=lambda g: (g["recall"], -g["false_groups"], g["pixels"], g["vector"]))
    pixels_only = max((g for g in ok if g["vector"] == -1.0), key=lambda g: g["recall"], default=None)
    for g in sorted(grid, key=lambda g: -g["recall"])[:15]:
        print(f"vec {g['vector']:.2f} pix {g['pixels']:.2f}  recall {g['recall']:.3f}  false {g['false_groups']:.3f}"
              f"  groups {g['groups']}", file=sys.stderr)
    print(f"chosen: {best}\nthumbnails only (<= {MAX_FALSE:.0%} false): {pixels_only}", file=sys.stderr)
    return {"split": "train (Tux Paint train stamps)", "originals": len(items), "chosen": best,
            "pixels_only": pixels_only, "grid": grid}


def accept(limit: int | None = None) -> dict[str, object]:
    folder, items = planted("heldout", limit)
    coll = collection(folder)
    start = time.perf_counter()
    found = dup.find_duplicates(coll)
    seconds = time.perf_counter() - start
    groups = [[m.id for m in g.members] for g in found]
    parts = {name: [p for p in items if ("/ood-" in str(p.original)) == (name == "ood-photos")]
             for name in ("ood-photos", "tuxpaint-test")}
    result = {"split": "held-out (OOD photos + Tux Paint test stamps)", "originals": len(items),
              "items": len(coll), **score(groups, items), "seconds": round(seconds, 2),
              "per_variant": per_variant(groups, items),
              "per_set": {k: score([g for g in groups if any(str(p.original.resolve()) in g or
                                                             any(str(c.resolve()) in g for c in p.copies) for p in v)], v)
                          for k, v in parts.items()},
              "thresholds": {"vector": dup.THRESHOLDS["image"], "pixels": dup.PIXEL_THRESHOLD},
              "false_examples": [[m.source for m in g.members] for g in found
                                 if len({_family(m.source, items) for m in g.members}) > 1][:10]}
    print(json.dumps({k: v for k, v in result.items() if k != "false_examples"}, indent=1), file=sys.stderr)
    return result


def _family(source: str | None, items: list[Planted]) -> str:
    for p in items:
        if source in (str(p.original.resolve()), *(str(c.resolve()) for c in p.copies)):
            return p.family
    return str(source)


def main(argv: list[str]) -> None:
    what = argv[1] if len(argv) > 1 else "choose"
    result = choose() if what == "choose" else accept()
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    old[what] = result
    RESULTS.write_text(json.dumps(old, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv)
