"""Planted near-copies for measuring duplicate detection (omnibind/duplicates.py).

A near-copy is what a photo library fills up with: the same picture resized, re-encoded at a lower
quality, slightly cropped, or converted to another format. `plant` writes an original and its
copies into a folder; `score` says how many copies a grouping put with their original and how
many groups mixed different originals. Which originals are used, and which seed, is the caller's
business: choose thresholds on train originals only (benchmarks/duplicates.py).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VARIANTS = ("r50", "r25", "q60", "q30", "crop5", "format", "webp")


@dataclass(frozen=True)
class Planted:
    original: Path
    copies: tuple[Path, ...]
    family: str  # originals with the same pixels share a family (the same picture stored twice)


def _flat(image: "object") -> "object":
    """RGB on white (how omnibind decodes transparency), for formats without alpha."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def plant(original: Path, folder: Path, name: str, rng: np.random.Generator) -> Planted:
    """Copy `original` into `folder/originals/` and write its VARIANTS into `folder/copies/`:
    resized to 50% and 25%, JPEG at quality 60 and 30, cropped by 5% of each side's length
    (split at random between the two edges), PNG <-> JPEG, and WEBP."""
    from PIL import Image

    (folder / "originals").mkdir(parents=True, exist_ok=True)
    (folder / "copies").mkdir(parents=True, exist_ok=True)
    kept = folder / "originals" / f"{name}{original.suffix.lower()}"
    shutil.copyfile(original, kept)
    with Image.open(original) as src:
        src.load()
        fmt = "PNG" if (src.format or "PNG") in ("PNG", "GIF") else "JPEG"
        image = src if fmt == "PNG" else _flat(src)
        w, h = image.size
        cx, cy = max(1, round(0.05 * w)), max(1, round(0.05 * h))
        left, top = int(rng.integers(0, cx + 1)), int(rng.integers(0, cy + 1))
        made = {
            "r50": (image.resize((max(8, w // 2), max(8, h // 2)), Image.Resampling.LANCZOS), fmt, {}),
            "r25": (image.resize((max(8, w // 4), max(8, h // 4)), Image.Resampling.LANCZOS), fmt, {}),
            "q60": (_flat(image), "JPEG", {"quality": 60}),
            "q30": (_flat(image), "JPEG", {"quality": 30}),
            "crop5": (image.crop((left, top, w - (cx - left), h - (cy - top))), fmt, {}),
            "format": (_flat(image), "JPEG", {"quality": 90}) if fmt == "PNG" else (image, "PNG", {}),
            "webp": (image, "WEBP", {"quality": 80}),
        }
    copies = []
    for variant, (img, out_fmt, options) in made.items():
        path = folder / "copies" / f"{name}__{variant}.{ {'JPEG': 'jpg'}.get(out_fmt, out_fmt.lower())}"
        img.save(path, format=out_fmt, **({"quality": 95} if out_fmt == "JPEG" and not options else options))
        copies.append(path)
    return Planted(kept, tuple(copies), pixel_family(original))


def pixel_family(path: Path) -> str:
    """A key shared by files with the same decoded pixels (RGB on white)."""
    from PIL import Image

    with Image.open(path) as image:
        flat = _flat(image)
        return hashlib.sha256(flat.tobytes() + str(flat.size).encode()).hexdigest()[:16]


def score(groups: Sequence[Sequence[str]], planted: Sequence[Planted]) -> dict[str, float | int]:
    """recall: share of copies in one group with their original (or with an original of the same
    family); false_groups: share of groups holding two items of different families."""
    family = {}
    for p in planted:
        for path in (p.original, *p.copies):
            family[str(path.resolve())] = p.family
    where = {i: g for g, members in enumerate(groups) for i in members}
    originals: dict[str, set[int]] = {}
    for p in planted:
        if str(p.original.resolve()) in where:
            originals.setdefault(p.family, set()).add(where[str(p.original.resolve())])
    found = total = 0
    for p in planted:
        for c in p.copies:
            total += 1
            found += int(where.get(str(c.resolve()), -1) in originals.get(p.family, set()))
    false = sum(len({family.get(i, i) for i in members}) > 1 for members in groups)
    return {"copies": total, "recall": found / max(1, total), "groups": len(groups),
            "false_groups": false / max(1, len(groups)), "false_group_count": false}
