"""Reranking: a second look at the best candidates of a search, with the query itself in hand.

The first stage (omnibind/search.py) compares one query vector with stored vectors. A reranker
sees more: the query *input* (its text, or the decoded image or sound), its vector and modality,
and the collection, so it can read each candidate's stored text, the segment that matched, or
its source file. Search fetches `depth(k)` candidates per modality, merges and calibrates them,
hands the list to the reranker, and keeps its first k.

Rerankers are registered by name (`get(name, space)`, `omnibind search --rerank NAME`):

* `hubness`: CSLS-style hub correction (Lample et al. 2018) for the cross-modal towers: a
  candidate that sits close to many of its tower's class texts (the ConSE class embeddings the
  space ships) is near every caption, so its cosine is lowered by `HUB_WEIGHT` times its mean
  cosine to its `HUB_NEIGHBOURS` nearest class texts. Chosen on training data only
  (benchmarks/rerank.py --choose: Fashion-MNIST train and Tux Paint train with the bridge space);
  no model is run, a few microseconds per candidate. Held-out results in docs/rerank.md.
* `cross-encoder:PATH`: a sentence-transformers `CrossEncoder` in a local folder reads (query
  text, candidate text) pairs; the candidate's text is the matched segment's words, the item's
  text, a caption in its metadata, or else its file name.

Scores: a reranker changes the order, never `Hit.score`, which stays the first stage's calibrated
strength (what strong / fair / weak mean). Its own score and the rank the first stage gave ride
along in `Hit.fields["rerank"]` = {"by", "score", "was"}, shown by `Hit.to_dict()`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Union, runtime_checkable

import numpy as np

from omnibind.errors import OmnibindError
from omnibind.hits import Hit

if TYPE_CHECKING:
    from omnibind.collection import Collection
    from omnibind.inputs import Input
    from omnibind.space import Space

DEPTH_PER_K, MIN_DEPTH = 4, 40  # candidates fetched per modality for a reranker: max(4k, 40)
HUB_NEIGHBOURS, HUB_WEIGHT = 50, 0.5  # chosen on training data (docs/rerank.md)
CAPTION_KEYS = ("caption", "title", "description", "alt")  # metadata keys read as a candidate's words


class RerankError(OmnibindError, ValueError):
    """An unknown reranker name, a model that cannot be loaded, or a query it cannot read."""


@dataclass
class RerankQuery:
    """What a reranker knows of the query: the decoded input (None when the caller gave a vector),
    its unit vector, its modality (None if unknown) and the collection searched."""

    input: "Input | None"
    vector: np.ndarray
    modality: str | None
    collection: "Collection"

    @property
    def text(self) -> str | None:
        """The query's words, when it is a text."""
        return self.input.payload if self.input is not None and self.input.modality == "text" else None


@runtime_checkable
class Reranker(Protocol):
    """Reorders a search's merged candidates (best first); may drop some, never adds."""

    name: str

    def __call__(self, query: RerankQuery, hits: list[Hit]) -> list[Hit]: ...


LegacyRerank = Callable[[np.ndarray, list[Hit]], list[Hit]]  # before issue 19: (query vector, hits)
Rerank = Union[Reranker, str, LegacyRerank]


def depth(k: int, reranker: Any = None) -> int:
    """Candidates fetched per modality for a reranked search of k (a reranker may ask for more)."""
    return max(k * DEPTH_PER_K, MIN_DEPTH, int(getattr(reranker, "depth", 0) or 0))


def candidate_text(hit: Hit) -> str:
    """The words a text model reads for a candidate: the matched segment's text, the item's
    text, a caption in its metadata, else its file name (underscores and dashes as spaces)."""
    segment_text = (hit.segment or {}).get("text")
    if segment_text:
        return str(segment_text)
    if hit.fields.get("text"):
        return str(hit.fields["text"])
    meta = hit.fields.get("metadata")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta or "{}")
        except json.JSONDecodeError:
            meta = {}
    for key in CAPTION_KEYS:
        if isinstance(meta, dict) and isinstance(meta.get(key), str) and meta[key].strip():
            return meta[key]
    name = Path(hit.source or hit.id).stem
    return " ".join(name.replace("_", " ").replace("-", " ").split()) or hit.id


def item_vectors(collection: "Collection", hits: list[Hit]) -> np.ndarray:
    """The stored item vectors of the hits, in order (one LanceDB read)."""
    rows = {r["id"]: r["vector"] for r in collection.get([h.id for h in hits], ["id", "vector"])}
    out = np.zeros((len(hits), collection.space.dim), np.float32)
    for n, h in enumerate(hits):
        if h.id in rows:
            out[n] = np.asarray(rows[h.id], dtype=np.float32)
    return out


def reordered(name: str, hits: list[Hit], scores: np.ndarray) -> list[Hit]:
    """Hits sorted on `scores` (stable: ties keep the first stage's order), each marked with the
    reranker's score and its first-stage rank."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    for was, (h, s) in enumerate(zip(hits, scores)):
        h.fields = {**h.fields, "rerank": {"by": name, "score": round(float(s), 6), "was": was}}
    return [hits[i] for i in order]


def per_modality(name: str, hits: list[Hit], score: Callable[[str, list[Hit]], np.ndarray | None]) -> list[Hit]:
    """Reorder each modality's hits among the places that modality holds, so a reranker whose
    scores compare only within a modality keeps the calibrated mix across modalities.
    `score(modality, hits)` returns None to leave a modality as it is."""
    out = list(hits)
    for modality in dict.fromkeys(h.modality for h in hits):
        slots = [n for n, h in enumerate(hits) if h.modality == modality]
        mine = [hits[n] for n in slots]
        scores = score(modality, mine)
        if scores is not None:
            for n, h in zip(slots, reordered(name, mine, scores)):
                out[n] = h
    return out


# -- hubness -----------------------------------------------------------------------------------


def class_bank(space: "Space", modality: str) -> np.ndarray | None:
    """The text vectors a modality's tower was bridged through (its ConSE class embeddings), or
    None when its head has none (a hub-model tower, the text tower). Video reads the image tower's."""
    tower = space.towers.get("image" if modality == "video" else modality)
    if tower is None or modality == space.anchor:
        return None
    banks = [b for n, b in tower.head.named_buffers() if n.endswith("class_embeddings")]
    return banks[0].detach().cpu().float().numpy() if banks else None


def hub_scores(cosines: np.ndarray, vectors: np.ndarray, bank: np.ndarray,
               neighbours: int = HUB_NEIGHBOURS, weight: float = HUB_WEIGHT) -> np.ndarray:
    """cos(q, v) - weight * (mean cosine of v to its `neighbours` nearest bank texts)."""
    sims = vectors @ bank.T
    kappa = min(neighbours, bank.shape[0])
    hub = np.sort(sims, axis=1)[:, -kappa:].mean(axis=1)
    return np.asarray(cosines, dtype=np.float64) - weight * hub


class HubnessReranker:
    """CSLS hub correction against the tower's class texts (module docstring)."""

    name = "hubness"

    def __init__(self, space: "Space", neighbours: int = HUB_NEIGHBOURS, weight: float = HUB_WEIGHT) -> None:
        self.space, self.neighbours, self.weight = space, neighbours, weight
        self._banks: dict[str, np.ndarray | None] = {}

    def bank(self, modality: str) -> np.ndarray | None:
        if modality not in self._banks:
            self._banks[modality] = class_bank(self.space, modality)
        return self._banks[modality]

    def __call__(self, query: RerankQuery, hits: list[Hit]) -> list[Hit]:
        def score(modality: str, mine: list[Hit]) -> np.ndarray | None:
            bank = self.bank(modality)
            if bank is None:
                return None
            vectors = item_vectors(query.collection, mine)
            return hub_scores(np.array([h.cosine for h in mine]), vectors, bank, self.neighbours, self.weight)

        return per_modality(self.name, hits, score)


# -- cross-encoder -----------------------------------------------------------------------------


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder from a local folder, over (query text, candidate text)."""

    def __init__(self, path: str | Path, batch_size: int = 32) -> None:
        self.path, self.batch_size = Path(path).expanduser(), batch_size
        self.name = f"cross-encoder:{self.path}"
        if not self.path.is_dir():
            raise RerankError(f"cross-encoder: no model folder at {self.path}")
        self._model: Any = None
        self._lock = threading.Lock()

    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                from sentence_transformers import CrossEncoder

                from omnibind.device import resolve_device

                try:
                    self._model = CrossEncoder(str(self.path), device=resolve_device(), local_files_only=True)
                except Exception as exc:  # a broken or foreign folder: say which
                    raise RerankError(f"cross-encoder: cannot load {self.path}: {exc}") from exc
            return self._model

    def __call__(self, query: RerankQuery, hits: list[Hit]) -> list[Hit]:
        if query.text is None:
            raise RerankError(f"{self.name} reads text queries only (this query is "
                              f"{query.modality or 'a vector'})")
        if not hits:
            return hits
        pairs = [(query.text, candidate_text(h)) for h in hits]
        scores = np.asarray(self.model().predict(pairs, batch_size=self.batch_size, show_progress_bar=False))
        return reordered(self.name, hits, scores.reshape(len(hits), -1)[:, -1])


# -- registry ----------------------------------------------------------------------------------

Factory = Callable[["Space", str], Reranker]  # (space, argument after "name:") -> reranker
_REGISTRY: dict[str, tuple[Factory, bool]] = {}  # name -> (factory, safe to name over HTTP)


def register(name: str, factory: Factory, served: bool = False) -> None:
    """Add a reranker by name; `NAME:ARG` passes ARG to the factory. `served`: callers of the
    HTTP API may name it (never for one that loads a path the caller chooses)."""
    _REGISTRY[name] = (factory, served)


def names(served_only: bool = False) -> list[str]:
    """Registered names (`cross-encoder:PATH` style ones shown with their argument)."""
    return [n if not _takes_arg(n) else f"{n}:PATH" for n, (_, s) in _REGISTRY.items() if s or not served_only]


def _takes_arg(name: str) -> bool:
    return name in ("cross-encoder", "st-cross")


def get(name: str, space: "Space", served_only: bool = False) -> Reranker:
    """The reranker a name stands for; `served_only` refuses the ones HTTP callers may not name."""
    base, _, arg = name.partition(":")
    entry = _REGISTRY.get(base.strip())
    if entry is None or (served_only and not entry[1]):
        raise RerankError(f"unknown reranker {name!r}: choose from {', '.join(names(served_only)) or 'none'}")
    if _takes_arg(base) and not arg:
        raise RerankError(f"{base} needs a model folder: {base}:PATH")
    return entry[0](space, arg)


class _Legacy:
    """A plain `(query vector, hits) -> hits` callable (the hook before issue 19) as a Reranker."""

    def __init__(self, fn: LegacyRerank) -> None:
        self.fn, self.name = fn, getattr(fn, "__name__", "custom")

    def __call__(self, query: RerankQuery, hits: list[Hit]) -> list[Hit]:
        return self.fn(query.vector, hits)


def resolve(rerank: Rerank, space: "Space") -> Reranker:
    """A Reranker from what `search(rerank=...)` accepts: a name, a Reranker, or a legacy callable."""
    if isinstance(rerank, str):
        return get(rerank, space)
    if isinstance(rerank, Reranker):
        return rerank
    if callable(rerank):
        return _Legacy(rerank)
    raise RerankError(f"rerank must be a name, a Reranker or a callable, not {type(rerank).__name__}")


register("hubness", lambda space, arg: HubnessReranker(space), served=True)
register("cross-encoder", lambda space, arg: CrossEncoderReranker(arg))
register("st-cross", lambda space, arg: CrossEncoderReranker(arg))
