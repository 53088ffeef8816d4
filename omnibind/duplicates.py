"""Duplicates in a collection: the same bytes under two paths, and near-copies (resized,
re-encoded, slightly cropped, converted) of one picture, sound, video or note.

Why pictures are compared by their thumbnails, not their vectors: the stored vectors live in a
text-anchored space, so they say what a picture shows, not how it looks. On the Tux Paint train
stamps (benchmarks/duplicates.py) distinct stamps of one kind (the letters J and j, two coins)
reach cosine 0.99, while a stamp's own JPEG copy can fall to 0.75 and its 25% copy to 0.4; a
copy's original was among its 32 nearest vectors for only 89% of copies, but among its nearest
thumbnails for all. So a picture's near-copies are found by `signature` (its stored thumbnail
shrunk to 12x12 colour pixels, mean removed, plus 9 slightly cropped views) and kept when the
aligned similarity reaches PIXEL_THRESHOLD; a vector cut on top only lost copies, so pictures
have none by default. Sounds and notes are compared by vector cosine, and sounds and videos must
also last as long as each other (a re-encode keeps the duration; DURATION_SLACK).

Groups are built around their keep item (leader clustering, not connected components): items are
visited best-first by the keep rule, and each unassigned item takes every unassigned neighbour
that passes the test *against it*. So every member is a near-copy of the item suggested to keep,
and a chain A~B~C with A and C far apart never lands in one group (connected components would
merge it; complete linkage would ask every pair to match, which a user never compares: they
compare each member with the one they keep).

Keep rule (`keep_key`): highest pixel count (width x height; the `width`/`height` columns when the
table has them, else the image header of the file), then the largest file, then the earliest
`created` (else `mtime`), then the shortest path. Nothing here deletes anything.

Scale: each item is linked to at most its NEIGHBOURS nearest candidates (memory n x 32 pairs).
Up to EXACT_LIMIT items of a modality they come from an exact blocked matrix product (memory
bounded by BLOCK_BYTES), above it from a FAISS HNSW graph built for the run, or a CollectionError
without FAISS. Pictures read every thumbnail once (a few kB each).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from omnibind.collection import ITEMS_ONLY, Collection, CollectionError, sql_list, source_path

# Pictures: chosen on Tux Paint train stamps and 7 planted copies of each (benchmarks/duplicates.py
# choose; docs/duplicates.md): the thumbnail test at 0.95 finds 97.4% of the copies at 1.0% false
# groups; any vector cut on top only lost copies (cosine >= 0.3: 97.0%), so pictures have none.
# Sounds and notes: stated defaults, not measured (docs/duplicates.md).
PIXEL_THRESHOLD = 0.95  # aligned thumbnail similarity of two pictures (image, video)
THRESHOLDS = {"image": -1.0, "video": -1.0, "audio": 0.99, "text": 0.97}  # vector cosine
SIGNATURE_PX = 12  # signature side: SIGNATURE_PX x SIGNATURE_PX colour pixels
CROP_SHARE = 0.05  # crops a signature also matches (a 5% crop of each side's length)
CANDIDATE_PIXELS = 0.7  # whole-thumbnail cosine for a pair to be examined at all
DURATION_SLACK = (0.3, 0.02)  # a sound or video copy lasts within max(0.3 s, 2%) of the other
PICTURES = ("image", "video")
EXACT_LIMIT = 100_000  # items of a modality compared exactly (blocked matrix product)
BLOCK_BYTES = 64 << 20  # similarity block held in memory at once
NEIGHBOURS = 32  # neighbours per item asked of FAISS above EXACT_LIMIT

Progress = Callable[[str, int, int], None]


@dataclass
class Member:
    """One item of a group. `similarity`: how alike it is to the keep item by the test that grouped
    it (pictures: thumbnail similarity; others: vector cosine; 1.0 for the keep and exact copies);
    `cosine`: its vector's cosine to the keep item's."""

    id: str
    source: str | None
    modality: str
    similarity: float
    size: int | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    cosine: float | None = None


@dataclass
class DuplicateGroup:
    """Copies of one thing: `kind` "exact" (same sha256) or "near"; `keep` the suggested id to keep
    (first in `members`) and `reason`, the keep rule's criterion that chose it."""

    kind: str
    modality: str
    members: list[Member]
    keep: str
    reason: str

    @property
    def removable(self) -> list[Member]:
        """The members a user could remove (all but the keep)."""
        return [m for m in self.members if m.id != self.keep]

    @property
    def reclaimable(self) -> int:
        """Bytes freed by removing every member but the keep."""
        return sum(m.size or 0 for m in self.removable)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "modality": self.modality, "keep": self.keep, "reason": self.reason,
                "reclaimable": self.reclaimable, "members": [asdict(m) for m in self.members]}


@dataclass
class Items:
    """Item rows of one read: columns as lists, vectors as one matrix."""

    rows: list[dict[str, Any]]
    vectors: np.ndarray
    index: dict[str, int] = field(default_factory=dict)


def find_duplicates(collection: Collection, *, threshold: float | None = None,
                    modality: str | Sequence[str] | None = None,
                    progress: Progress | None = None) -> list[DuplicateGroup]:
    """Exact groups (same sha256, different ids) then near groups (see the module docstring),
    within each modality, largest first. `threshold` overrides each modality's own test: the
    thumbnail similarity of pictures (PIXEL_THRESHOLD), the vector cosine of the others
    (THRESHOLDS); higher finds fewer, surer groups. `progress(stage, done, total)`."""
    wanted = _modalities(modality, collection)
    items = read_items(collection, wanted)
    exact = exact_groups(items)
    covered = {m.id for g in exact for m in g.removable}
    groups = list(exact)
    for m in wanted:
        idx = [i for i, r in enumerate(items.rows) if r["modality"] == m and r["id"] not in covered]
        if len(idx) < 2:
            continue
        cut, pix = THRESHOLDS.get(m, THRESHOLDS["text"]), PIXEL_THRESHOLD
        if threshold is not None:
            cut, pix = (cut, threshold) if m in PICTURES else (threshold, pix)
        edges = near_edges(collection, items, idx, m, cut, pix, progress)
        fill_resolution(items, sorted({idx[k] for pair in edges for k in pair}))
        order = sorted(range(len(idx)), key=lambda k: keep_key(items.rows[idx[k]]))
        for members in leader_groups(edges, order):
            pixels = {idx[k]: edges[(min(k, members[0]), max(k, members[0]))][1] for k in members[1:]}
            groups.append(_group("near", [idx[k] for k in members], items, pixels))
    return sorted(groups, key=lambda g: (-len(g.members), g.kind != "exact", g.keep))


def near_edges(collection: Collection, items: Items, idx: list[int], modality: str, threshold: float,
               pixel_threshold: float, progress: Progress | None = None) -> dict[tuple[int, int], tuple[float, float | None]]:
    """{(a, b): (vector cosine, thumbnail similarity or None)} for the near-copy pairs among
    items `idx` of one modality (local indices a < b). Pictures: candidates by thumbnail
    signature (the stored vectors rank a picture's own copies poorly), kept when the aligned
    thumbnail similarity and the vector cosine both pass; other modalities: by vector cosine.
    Sounds and videos must also last as long as each other."""
    stage = f"comparing {modality}"
    vectors = items.vectors[idx]
    if modality in PICTURES:
        whole = thumbnail_signatures(collection, [items.rows[i]["id"] for i in idx], crops=False)
        have = [k for k in range(len(idx)) if whole.get(items.rows[idx[k]]["id"]) is not None]
        full = np.stack([whole[items.rows[idx[k]]["id"]][0] for k in have]) if have else np.zeros((0, 1), np.float32)
        found = candidate_pairs(full, CANDIDATE_PIXELS, progress=progress, stage=stage)
        sigs = thumbnail_signatures(collection, sorted({items.rows[idx[have[k]]]["id"] for pair in found for k in pair[:2]}))
        edges = {}
        for a, b, _ in found:
            a, b = have[a], have[b]
            p = pixel_similarity(sigs[items.rows[idx[a]]["id"]], sigs[items.rows[idx[b]]["id"]])
            cos = float(vectors[a] @ vectors[b])
            if p is not None and p >= pixel_threshold and cos >= threshold:
                edges[(min(a, b), max(a, b))] = (cos, p)
    else:
        edges = {(a, b): (s, None) for a, b, s in candidate_pairs(vectors, threshold, progress=progress, stage=stage)}
    if modality in ("audio", "video"):
        edges = {(a, b): v for (a, b), v in edges.items()
                 if same_duration(items.rows[idx[a]].get("duration"), items.rows[idx[b]].get("duration"))}
    return edges


def _modalities(modality: str | Sequence[str] | None, collection: Collection) -> list[str]:
    present = sorted(collection.modality_counts())
    if modality is None:
        return present
    names = [p.strip() for x in ([modality] if isinstance(modality, str) else modality) for p in x.split(",") if p.strip()]
    from omnibind import modalities as table

    known = set(table.names())
    unknown = [n for n in names if n not in known | set(present)]
    if unknown:
        raise CollectionError(f"unknown modality {', '.join(unknown)}: choose from {', '.join(sorted(known))}")
    return [n for n in names if n in present]


def read_items(collection: Collection, wanted: Sequence[str]) -> Items:
    """Item rows (no segments) of the wanted modalities: fields for the keep rule, and vectors."""
    names = set(collection.table.schema.names)
    cols = ["id", "source", "modality", "sha256", "size", "mtime", "metadata", "duration", "vector"]
    cols += [c for c in ("width", "height", "created") if c in names]
    where = f"{ITEMS_ONLY} AND modality IN ({sql_list(wanted)})" if wanted else "false"
    t = collection.column(*cols, where=where)
    vectors = (t.column("vector").combine_chunks().flatten().to_numpy().reshape(t.num_rows, -1).astype(np.float32)
               if t.num_rows else np.zeros((0, collection.space.dim), np.float32))
    rows = t.drop(["vector"]).to_pylist()
    for r in rows:
        meta = _json(r.get("metadata"))
        for key in ("width", "height", "created"):
            if r.get(key) is None and isinstance(meta.get(key), (int, float)):
                r[key] = meta[key]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.maximum(norms, 1e-12)
    return Items(rows, vectors, {r["id"]: i for i, r in enumerate(rows)})


def _json(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def exact_groups(items: Items) -> list[DuplicateGroup]:
    """Items with the same sha256 (and modality) under different ids."""
    by_hash: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(items.rows):
        if r.get("sha256"):
            by_hash.setdefault((r["modality"], r["sha256"]), []).append(i)
    return [_group("exact", sorted(members, key=lambda i: keep_key(items.rows[i])), items, {})
            for members in by_hash.values() if len(members) > 1]


# -- candidates ------------------------------------------------------------------------------------


def candidate_pairs(matrix: np.ndarray, threshold: float, *, k: int = NEIGHBOURS, progress: Progress | None = None,
                    stage: str = "comparing", exact_limit: int | None = None) -> list[tuple[int, int, float]]:
    """(i, j, cosine), i < j, linking each unit row to its `k` nearest rows at or above
    `threshold` (memory bounded: at most n * k pairs). Exact in blocks up to `exact_limit`
    (EXACT_LIMIT) rows, else by a FAISS HNSW graph."""
    n = len(matrix)
    if n > (EXACT_LIMIT if exact_limit is None else exact_limit):
        return _ann_pairs(matrix, threshold, k, progress, stage)
    rows = max(1, min(n, BLOCK_BYTES // max(1, 4 * n)))
    pairs: dict[tuple[int, int], float] = {}
    for start in range(0, n, rows):
        block = matrix[start : start + rows] @ matrix.T
        block[np.arange(len(block)), np.arange(start, start + len(block))] = -np.inf  # no self pairs
        top = np.argpartition(-block, min(k, n - 1) - 1, axis=1)[:, :k] if n - 1 > k else np.argsort(-block, axis=1)[:, : n - 1]
        sims = np.take_along_axis(block, top, axis=1)
        for r, c in zip(*np.nonzero(sims >= threshold)):
            i, j = start + int(r), int(top[r, c])
            pairs[(min(i, j), max(i, j))] = float(sims[r, c])
        if progress:
            progress(stage, min(n, start + rows), n)
    return [(a, b, s) for (a, b), s in sorted(pairs.items())]


def _ann_pairs(vectors: np.ndarray, threshold: float, k: int, progress: Progress | None,
               stage: str) -> list[tuple[int, int, float]]:
    from omnibind import ann

    if not ann.available():
        raise CollectionError(f"{len(vectors)} items of one modality: comparing them all needs FAISS "
                              f"(pip install faiss-cpu) above {EXACT_LIMIT} items")
    faiss = ann._faiss()
    index = faiss.IndexHNSWFlat(vectors.shape[1], ann.M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction, index.hnsw.efSearch = ann.EF_CONSTRUCTION, max(ann.EF_SEARCH, k)
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    pairs: dict[tuple[int, int], float] = {}
    step = 10_000
    for start in range(0, len(vectors), step):
        sims, nbrs = index.search(np.ascontiguousarray(vectors[start : start + step]), k + 1)
        for row, (s_row, n_row) in enumerate(zip(sims, nbrs)):
            for s, j in zip(s_row.tolist(), n_row.tolist()):
                i = start + row
                if j >= 0 and j != i and s >= threshold:
                    pairs[(min(i, j), max(i, j))] = s
        if progress:
            progress(stage, min(len(vectors), start + step), len(vectors))
    return [(a, b, s) for (a, b), s in sorted(pairs.items())]


# -- verification ----------------------------------------------------------------------------------


def signature(jpeg: bytes | None, px: int = SIGNATURE_PX, crop: float = CROP_SHARE, crops: bool = True) -> np.ndarray | None:
    """What a picture looks like, coarsely: [10, px*px*3] unit rows, the thumbnail shrunk to px x px
    colour pixels with its mean removed, then the same for 9 crops losing `crop` of each side's
    length (edges 0, half, all of it on each side): resizing and re-encoding barely move row 0,
    a slight crop matches one of the others (`crops=False`: row 0 only). None for a flat or
    unreadable picture."""
    if not jpeg:
        return None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(jpeg)) as image:
            rgb = image.convert("RGB")
            w, h = rgb.size
            boxes = [(0.0, 0.0, w, h)] + [(fx * crop * w, fy * crop * h, w - (1 - fx) * crop * w, h - (1 - fy) * crop * h)
                                          for fx in (0, 0.5, 1) for fy in (0, 0.5, 1) if crops]
            x = np.stack([np.asarray(rgb.resize((px, px), Image.Resampling.BOX, box=b), np.float32).reshape(-1)
                          for b in boxes])
    except (OSError, ValueError):
        return None
    x -= x.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return None if float(norms[0, 0]) < 1e-3 else x / np.maximum(norms, 1e-6)


def pixel_similarity(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """How alike two pictures look (signatures): the best of whole-to-whole and whole-to-crop
    cosines, both ways; None when either has no signature."""
    if a is None or b is None:
        return None
    return float(max(a[0] @ b[0], *(b[1:] @ a[0]), *(a[1:] @ b[0])))


def same_duration(a: float | None, b: float | None, slack: tuple[float, float] = DURATION_SLACK) -> bool:
    """Whether two durations could be one recording's (unknown durations do not veto)."""
    if a is None or b is None:
        return True
    return abs(a - b) <= max(slack[0], slack[1] * max(a, b))


def thumbnail_signatures(collection: Collection, ids: Sequence[str], batch: int = 2_000,
                         crops: bool = True) -> dict[str, np.ndarray | None]:
    """id -> `signature` of its stored thumbnail, read in batches (thumbnails are a few kB each)."""
    out: dict[str, np.ndarray | None] = {}
    for start in range(0, len(ids), batch):
        part = ids[start : start + batch]
        t = collection.column("id", "thumbnail", where=f"{ITEMS_ONLY} AND id IN ({sql_list(part)})")
        for i, jpeg in zip(t.column("id").to_pylist(), t.column("thumbnail").to_pylist()):
            out[i] = signature(jpeg, crops=crops)
    return out


# -- groups ----------------------------------------------------------------------------------------


def leader_groups(edges: dict[tuple[int, int], Any], order: Sequence[int]) -> list[list[int]]:
    """Groups of 2+ around leaders: visit items in `order` (best first); an unassigned item takes
    every unassigned item it has an edge with. Each member is thus linked to its group's first
    item, never only through another member (no chaining)."""
    neighbours: dict[int, list[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    rank = {k: r for r, k in enumerate(order)}
    taken: set[int] = set()
    groups = []
    for leader in order:
        if leader in taken or leader not in neighbours:
            continue
        members = [j for j in sorted(neighbours[leader], key=rank.__getitem__) if j not in taken]
        if members:
            taken.update([leader, *members])
            groups.append([leader, *members])
    return groups


def keep_key(row: dict[str, Any]) -> tuple[float, float, float, int, str]:
    """Sort key of the keep rule, best first: most pixels, largest file, earliest created/mtime,
    shortest path."""
    pixels = (row.get("width") or 0) * (row.get("height") or 0)
    when = row.get("created") if row.get("created") is not None else row.get("mtime")
    source = row.get("source") or row["id"]
    return (-float(pixels), -float(row.get("size") or 0), float(when) if when is not None else math.inf,
            len(source), source)


def keep_reason(keep: dict[str, Any], others: list[dict[str, Any]]) -> str:
    """Why the keep and not the runner-up: the first criterion of the keep rule where they differ."""
    best = keep_key(keep)
    runner_up = min(keep_key(o) for o in others)
    for position, reason in enumerate(("largest resolution", "largest file", "oldest", "shortest path")):
        if best[position] != runner_up[position]:
            return reason
    return "first by path"


def fill_resolution(items: Items, rows: Sequence[int]) -> None:
    """Width and height of image items that lack them, from the file's header (Pillow reads only
    the header); a file that is gone or unreadable stays unknown."""
    from PIL import Image

    for i in rows:
        r = items.rows[i]
        if r["modality"] != "image" or r.get("width") or not r.get("source"):
            continue
        try:
            with Image.open(source_path(r["source"])) as image:
                r["width"], r["height"] = image.size
        except (OSError, ValueError):
            continue


def _group(kind: str, members: list[int], items: Items, pixels: dict[int, float | None]) -> DuplicateGroup:
    """A group of item rows (members[0] the keep), with each member's similarity to the keep."""
    rows = [items.rows[i] for i in members]
    out = []
    for n, (i, r) in enumerate(zip(members, rows)):
        cosine = 1.0 if n == 0 or kind == "exact" else min(1.0, float(items.vectors[members[0]] @ items.vectors[i]))
        similarity = cosine if pixels.get(i) is None else min(1.0, float(pixels[i]))
        out.append(Member(r["id"], r.get("source"), r["modality"], round(similarity, 4), r.get("size"),
                          r.get("width"), r.get("height"), r.get("duration"), round(cosine, 4)))
    return DuplicateGroup(kind, rows[0]["modality"], out, rows[0]["id"], keep_reason(rows[0], rows[1:]))
