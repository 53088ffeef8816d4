#!/usr/bin/env python
"""Mixed-list search quality: the shipped ranking (match log-odds, no modality filling more than 60%
of the top 10 with matches that are not strong) against log-odds alone, z alone and raw cosine,
on one held-out collection (omnibind/evaluate/mixed.py: 30 Tux Paint test photos,
20 test sounds, 3 OpenCV videos, 6 STS-B test sentences; the 30 photo captions as queries).

    python benchmarks/mixed_search.py [--space default]

Prints, per ranking: % of captions whose photo is in the mixed top 5 and in the image-only top 5,
% of lists where one other modality fills more than 6 of the top 10, and each modality's share.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import omnibind  # noqa: E402
from omnibind.collection import Collection  # noqa: E402
from omnibind.evaluate.mixed import measure, mixed_set  # noqa: E402
from omnibind.search import search  # noqa: E402


def by_probability(_q, hits):
    """The ranking before issue 16: on the pair fit's match probability alone."""
    return sorted(hits, key=lambda h: -(h.probability if h.probability is not None else h.score))


def by_z(_q, hits):
    """On z alone: how unusual each item is for the query among items of its modality."""
    return sorted(hits, key=lambda h: -(h.z if h.z is not None else h.score))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="default")
    args = ap.parse_args()
    data = mixed_set()
    with tempfile.TemporaryDirectory() as tmp:
        c = Collection.open(Path(tmp) / "mixed", omnibind.load_space(args.space))
        c.add(data.items, ids=data.ids)
        c.calibration.refresh()
        print(f"collection: {c.modality_counts()}")
        for name, options in (("shipped", {}), ("probability", {"rerank": by_probability}),
                              ("z", {"rerank": by_z}), ("raw cosine", {"calibrated": False})):
            print(f"{name:12} {json.dumps(measure(search, c, data, **options))}")


if __name__ == "__main__":
    main()
