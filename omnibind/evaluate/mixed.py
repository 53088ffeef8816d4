"""Mixed-collection search quality: does a caption still find its photo when sounds, videos and
notes share the list? (issue 16: "sounds crowd every mixed list").

A collection of held-out real files with few items of some modalities -- Tux Paint *test* photos
and sounds, OpenCV's sample videos, STS-B *test* sentences as notes -- is searched with each
photo's caption twice: over every modality, and over images only. The figures:

* `mixed_top5` / `image_top5`: % of captions whose photo is in the top 5 (mixed list / image-only);
* `crowding`: % of queries where one modality other than image fills more than 60% of the top 10
  (for a caption of a photo, sounds or notes that crowd the list are wrong);
* `share`: mean share of each modality in the top 10.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from omnibind.evaluate import datasets as ds

VIDEOS = ("vtest.avi", "Megamind.avi", "tree.avi")
VIDEO_DIR = Path("/usr/share/doc/opencv-doc/examples/data")


@dataclass
class MixedSet:
    """The files of a mixed collection and the caption of each image (by item id)."""

    items: list[Any]
    ids: list[str]
    captions: dict[str, str]  # image id -> caption


def mixed_set(images: int = 30, sounds: int = 20, notes: int = 6) -> MixedSet:
    """Held-out real files, a fixed choice: every n-th Tux test photo and sound, 3 videos, notes."""
    photos = ds.tuxpaint_images("test")
    photos = photos[:: max(1, len(photos) // images)][:images]
    noises = ds.tuxpaint_sounds("test")[:sounds]
    a, _, _ = ds.sts_b("test")
    videos = [VIDEO_DIR / v for v in VIDEOS if (VIDEO_DIR / v).is_file()]
    items = [p.image for p in photos] + [s.sound for s in noises] + videos + [str(t) for t in a[:notes]]
    ids = ([f"img-{i}" for i in range(len(photos))] + [f"snd-{i}" for i in range(len(noises))]
           + [f"vid-{i}" for i in range(len(videos))] + [f"note-{i}" for i in range(min(notes, len(a)))])
    return MixedSet(items, ids, {f"img-{i}": p.caption for i, p in enumerate(photos)})


def measure(search: Callable[..., list[Any]], collection: Any, data: MixedSet, **options: Any) -> dict[str, Any]:
    """The module docstring's figures for `search(collection, caption, k, modality=..., **options)`."""
    mixed, alone, crowded, shares = 0, 0, 0, []
    for item, caption in data.captions.items():
        hits = search(collection, caption, k=10, **options)
        mixed += item in [h.id for h in hits[:5]]
        alone += item in [h.id for h in search(collection, caption, k=5, modality="image", **options)]
        counts: dict[str, int] = {}
        for h in hits:
            counts[h.modality] = counts.get(h.modality, 0) + 1
        crowded += any(m != "image" and n > 6 for m, n in counts.items())
        shares.append({m: n / max(1, len(hits)) for m, n in counts.items()})
    n = len(data.captions)
    share = {m: round(100 * float(np.mean([s.get(m, 0.0) for s in shares])), 1) for m in ("image", "audio", "video", "text")}
    return {"queries": n, "mixed_top5": round(100 * mixed / n, 1), "image_top5": round(100 * alone / n, 1),
            "crowding": round(100 * crowded / n, 1), "share": share}
