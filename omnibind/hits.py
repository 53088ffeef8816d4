"""A search result and the list of them: what search returns, what the server sends, what the CLI
prints. Kept apart from omnibind/search.py (which needs LanceDB) so that omnibind/client.py can
rebuild a served hit as the very same class without importing the collection."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STRONG, FAIR = 0.75, 0.4  # strength words: strong / fair / weak; below FAIR at the top: "no confident match"


def strength(z: float) -> float:
    """One readable 0-1 scale for every modality and query, from z where the space has no pair fit:
    0.5 at two standard deviations above the query's typical item of that modality, 0.92 at four."""
    return float(1.0 / (1.0 + np.exp(-1.2 * (z - 2.0))))


def strength_of_logit(logit: float) -> float:
    """The same scale from a pair fit's match log-odds (what the list is ranked on when the space
    has fits): 0.5 at a 10% match probability, 0.79 at 50%, 0.19 at the 1% prior."""
    return float(1.0 / (1.0 + np.exp(-0.6 * (logit + 2.2))))


def strength_word(value: float) -> str:
    return "strong" if value >= STRONG else "fair" if value >= FAIR else "weak"


class Hits(list):
    """Search results, best first; `note` says what a reader should know about the whole list
    (nothing stands out, or a modality could not be calibrated), else None."""

    note: str | None = None


@dataclass
class Hit:
    """One result. `kind` says what `score` is: "strength" (`strength(z)`, one 0-1 scale across
    modalities: what a person reads) or "cosine" (uncalibrated: equal to `cosine`). `z` is the
    standard deviations above the query's typical item of that modality (what the list is ranked
    on) and `probability` the space's estimated match probability, where it has a fit."""

    id: str
    source: str | None
    modality: str
    score: float
    cosine: float
    fields: dict[str, Any] = field(default_factory=dict)
    kind: str = "cosine"
    segment: dict[str, Any] | None = None  # the segment that matched (kind, location, text), if not the whole item
    z: float | None = None
    probability: float | None = None

    def to_dict(self) -> dict[str, Any]:
        shown = {k: v for k, v in self.fields.items() if k not in ("vector", "thumbnail", *SEGMENT_COLUMNS)}
        if isinstance(shown.get("metadata"), str):  # stored as JSON text; the CLI and HTTP both give the object
            shown["metadata"] = json.loads(shown["metadata"] or "{}")
        strong = {"strength": self.score, "match": strength_word(self.score)} if self.kind == "strength" else {}
        return {"id": self.id, "source": self.source, "modality": self.modality, "score": self.score,
                "score_kind": self.kind, **strong, "cosine": self.cosine, "z": self.z,
                "probability": self.probability, **shown, "segment": self.segment}


SEGMENT_COLUMNS = ("item", "kind", "start", "end", "page", "char_start", "char_end")
