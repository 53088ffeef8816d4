"""Do calibrated scores make a mixed collection searchable? Raw cosine vs calibrated, measured.

A collection of held-out real data of three modalities: the Tux Paint photo-like *test* stamps'
images, the natural *test* sounds, and text notes (STS-B test sentences: short captions, news
and forum lines, none about the stamps). Each stamp caption is a query; its true items are its
own image and/or sound. Raw cosine between a caption and a text note is on a higher scale than
caption-to-image (the modality gap), so with raw scores the notes fill the top 10. Calibrated
scores standardise each item modality per query (omnibind/search.py).

Reports, for raw cosine, per-query z-scores alone, and the full calibration (z-scores mapped to
match probabilities by the space's per-pair fit, scripts/fit_calibration.py): the share of queries with a true item in the top 10
(overall, images, sounds), the mean modality mix of the top 10, and the ceiling: the same recall
when searching one modality only (calibration cannot beat that).

    python scripts/eval_calibration.py --json docs/results/calibration.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from omnibind.collection import Collection  # noqa: E402
from omnibind.evaluate import datasets as ds  # noqa: E402
from omnibind.search import refresh_calibration, search  # noqa: E402

K = 10


def build(folder: Path, space: str, notes: int) -> tuple[Collection, list[tuple[str, set[str], set[str]]]]:
    """The mixed collection and the queries: (caption, true image ids, true sound ids)."""
    images = ds.tuxpaint_images("test")
    sounds = ds.tuxpaint_sounds("test")
    a, b, _ = ds.sts_b("test")
    sentences = list(dict.fromkeys(s.strip() for s in a + b if s.strip()))[:notes]
    coll = Collection.open(folder, space=space)
    coll.add([s.image for s in images], ids=[f"image:{s.key}" for s in images])
    coll.add([s.sound for s in sounds], ids=[f"sound:{s.key}" for s in sounds])
    coll.add(sentences, ids=[f"note:{i}" for i in range(len(sentences))])
    refresh_calibration(coll)
    queries: dict[str, tuple[str, set[str], set[str]]] = {}
    for s in images:
        queries.setdefault(s.key, (s.caption, set(), set()))[1].add(f"image:{s.key}")
    for s in sounds:
        queries.setdefault(s.key, (s.caption, set(), set()))[2].add(f"sound:{s.key}")
    return coll, [queries[k] for k in sorted(queries)]


def measure(coll: Collection, queries, calibrated: bool, modality: str | None = None, pairs: bool = True) -> dict:
    """Top-10 recall of true items; `pairs=False` hides the space's pair calibration (z-scores only)."""
    saved = coll.space.calibration
    coll.space.calibration = saved if pairs else {}
    try:
        return _measure(coll, queries, calibrated, modality)
    finally:
        coll.space.calibration = saved


def _measure(coll: Collection, queries, calibrated: bool, modality: str | None) -> dict:
    any_hit = img_hit = snd_hit = n_img = n_snd = 0
    mix = {"text": 0, "image": 0, "audio": 0}
    for caption, true_images, true_sounds in queries:
        hits = search(coll, caption, k=K, calibrated=calibrated, modality=modality)
        ids = {h.id for h in hits}
        for h in hits:
            mix[h.modality] += 1
        any_hit += bool(ids & (true_images | true_sounds))
        if true_images:
            n_img += 1
            img_hit += bool(ids & true_images)
        if true_sounds:
            n_snd += 1
            snd_hit += bool(ids & true_sounds)
    total = sum(mix.values()) or 1
    return {"queries": len(queries), "any_true_in_top10": 100 * any_hit / len(queries),
            "image_in_top10": 100 * img_hit / max(n_img, 1), "sound_in_top10": 100 * snd_hit / max(n_snd, 1),
            "image_queries": n_img, "sound_queries": n_snd,
            "top10_mix_percent": {m: 100 * c / total for m, c in mix.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="default")
    ap.add_argument("--notes", type=int, default=1000, help="STS-B test sentences added as text notes")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        coll, queries = build(Path(tmp) / "mixed", args.space, args.notes)
        stats = coll.stats()
        raw = measure(coll, queries, calibrated=False)
        zonly = measure(coll, queries, calibrated=True, pairs=False)
        cal = measure(coll, queries, calibrated=True)
        ceiling_img = measure(coll, [q for q in queries if q[1]], calibrated=False, modality="image")
        ceiling_snd = measure(coll, [q for q in queries if q[2]], calibrated=False, modality="audio")
    out = {"space": args.space, "collection": stats["modalities"], "k": K, "raw": raw, "z_score_only": zonly, "calibrated": cal,
           "space_calibration": coll.space.calibration,
           "ceiling_image_only_search": ceiling_img["image_in_top10"],
           "ceiling_audio_only_search": ceiling_snd["sound_in_top10"],
           "seconds": round(time.perf_counter() - start, 1),
           "command": "python scripts/eval_calibration.py " + " ".join(sys.argv[1:])}
    print(f"collection: {stats['modalities']}; {len(queries)} caption queries, k={K}")
    print(f"{'ranking':12} {'any true':>9} {'image':>7} {'sound':>7}   top-10 mix text/image/audio %")
    for name, r in (("raw cosine", raw), ("z-score only", zonly), ("calibrated", cal)):
        m = r["top10_mix_percent"]
        print(f"{name:12} {r['any_true_in_top10']:9.1f} {r['image_in_top10']:7.1f} {r['sound_in_top10']:7.1f}   "
              f"{m['text']:.0f}/{m['image']:.0f}/{m['audio']:.0f}")
    print(f"{'one modality':12} {'':>9} {out['ceiling_image_only_search']:7.1f} {out['ceiling_audio_only_search']:7.1f}   (ceiling)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
