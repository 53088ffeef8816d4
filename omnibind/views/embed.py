"""Segments into vectors, and the words they found into the item's own vector.

`embed_with_views` is the one place where views meet towers. Given items of one modality and
their tower vectors (`base`; None for a modality without a tower, such as a document), it asks each
chosen view for segments, embeds every segment in batches (words by the anchor tower, pieces of
media by their own tower), and folds them into the item vector:

- chunk / page segments *are* the item's text: the item vector is their mean (a long note is no
  longer cut at the anchor's window; a document is the mean of its pages' chunks);
- speech / ocr segments add what the item says or shows: vector = normalise(base + w * mean), with
  `w` per kind from the space (`Space.view_weights`, measured: docs/views.md);
- window / scene segments are located copies of the item and leave its vector alone.

A view that fails unexpectedly costs its segments, not the item: the reason is kept in `notes`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from omnibind import views as registry
from omnibind.errors import InputError
from omnibind.views import Segment

if TYPE_CHECKING:
    from omnibind.inputs import Input
    from omnibind.space import Space

REPLACING = ("chunk", "page")  # their mean is the item's text vector
FOLDED = ("speech", "ocr")  # added to a media item's vector with a weight
TEXT_KINDS = REPLACING + FOLDED  # segments whose vectors are the anchor's (calibrated as text)


@dataclass
class ItemEmbedding:
    """One item: its vector, its segments and their vectors (rows aligned), and view notes."""

    vector: np.ndarray
    segments: list[Segment] = field(default_factory=list)
    segment_vectors: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def shapes_vector(name: str) -> bool:
    """Whether a view's findings fold into the item's own vector (its `shapes_vector`; a view
    that does not say is taken not to)."""
    return bool(getattr(registry.get(name), "shapes_vector", False))


def applicable(names: Sequence[str], modality: str) -> list[str]:
    """The views among `names` that read items of `modality`."""
    return [n for n in names if modality in registry.get(n).modalities]


def find_segments(space: "Space", item: "Input", names: Sequence[str]) -> tuple[list[Segment], list[str]]:
    """Every chosen view's segments of one item. A bad file (InputError) raises; any other view
    failure is a note and the view's segments are left out."""
    found: list[Segment] = []
    notes: list[str] = []
    cap = space.limits.max_segments
    for name in applicable(names, item.modality):
        try:
            mine = registry.get(name).segments(item, space)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - a view bug must not lose the item
            notes.append(f"{name} view failed: {type(exc).__name__}: {exc}")
            continue
        if len(mine) > cap:  # bounded time: the first `cap` are kept, and the item says so
            notes.append(f"{name} view: {len(mine)} segments, the first {cap} kept (Limits.max_segments); "
                         f"the item's vector and search cover only those")
            mine = mine[:cap]
        found += mine
    return found, notes


def embed_with_views(space: "Space", items: Sequence["Input"], base: np.ndarray | None, names: Sequence[str],
                     batch_size: int = 32, keep_segments: bool = True,
                     find: Callable[["Input"], tuple[list[Segment], list[str]]] | None = None,
                     ) -> tuple[list[ItemEmbedding | None], dict[int, InputError]]:
    """One `ItemEmbedding` per item (None where it failed) and the errors by position. `base`:
    the tower vectors (NaN rows where the tower failed), or None when the modality has no tower.
    `find(item)` replaces `find_segments` (a cache of transcripts, say)."""
    errors: dict[int, InputError] = {}
    found: list[tuple[list[Segment], list[str]]] = []
    for i, item in enumerate(items):
        try:
            found.append(find(item) if find else find_segments(space, item, names))
        except InputError as exc:
            errors[i] = exc
            found.append(([], []))
    flat = [s for segs, _ in found for s in segs]
    vectors, bad = _embed_segments(space, flat, batch_size)
    out: list[ItemEmbedding | None] = []
    offset = 0
    for i, (segs, notes) in enumerate(found):
        mine = vectors[offset : offset + len(segs)]
        keep = [j for j in range(len(segs)) if offset + j not in bad]
        notes = notes + [f"{segs[j].kind} segment left out: {bad[offset + j]}" for j in range(len(segs)) if offset + j in bad]
        offset += len(segs)
        segs, mine = [segs[j] for j in keep], mine[keep]
        vector = None if i in errors else _fold(space, None if base is None else base[i], segs, mine)
        if vector is None:
            errors.setdefault(i, InputError(items[i].source, "no text found in the document" if base is None
                                            else "embedding failed"))
            out.append(None)
            continue
        out.append(ItemEmbedding(vector, segs if keep_segments else [], mine if keep_segments else None, notes))
    return out, errors


def _embed_segments(space: "Space", segments: list[Segment], batch_size: int) -> tuple[np.ndarray, dict[int, str]]:
    """Vectors of all segments (rows aligned) and reasons for the ones that failed."""
    out = np.full((len(segments), space.dim), np.nan, dtype=np.float32)
    bad: dict[int, str] = {}
    texts = [j for j, s in enumerate(segments) if s.text is not None]
    media = [j for j, s in enumerate(segments) if s.media is not None]
    if texts:
        out[texts] = space.embed([segments[j].text for j in texts], batch_size=batch_size, views=())
    if media:
        result = space.embed([segments[j].media for j in media], batch_size=batch_size, on_error="skip", views=())
        out[[media[j] for j in result.indices]] = result.vectors
        bad.update({media[e.index]: e.reason for e in result.errors})
    return out, bad


def _fold(space: "Space", base: np.ndarray | None, segments: list[Segment], vectors: np.ndarray) -> np.ndarray | None:
    """The item vector: base, replaced by its chunks' mean, plus weighted speech / ocr means."""
    kinds = np.array([s.kind for s in segments], dtype=object)
    text = np.isin(kinds, REPLACING)
    vector = _unit(vectors[text].mean(axis=0)) if text.any() else base
    if vector is None or not np.isfinite(vector).all():
        return None
    weights = space.view_weights
    extra = [weights.get(kind, 0.0) * _unit(vectors[kinds == kind].mean(axis=0)) for kind in FOLDED
             if (kinds == kind).any() and weights.get(kind, 0.0) > 0]
    return _unit(vector + sum(extra)) if extra else vector.astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def calibration_group(modality: str, kind: str | None) -> str:
    """Which reference sample a row's cosines are standardised against: words found in an item
    (speech, ocr, chunks, pages) are anchor vectors and are calibrated as text."""
    return "text" if kind in TEXT_KINDS else modality


def describe(segment: Segment) -> dict[str, Any]:
    """A segment as the JSON a search result carries."""
    return {"kind": segment.kind, "location": segment.location(), "start": segment.start, "end": segment.end,
            "page": segment.page, "chars": list(segment.chars) if segment.chars else None, "text": segment.text}
