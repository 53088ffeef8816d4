"""Keyword search over a collection, and its fusion with vector search (`search(..., mode=)`).

A vector finds what a query means; it cannot be asked for a word. A file called `red_apple.png`,
a note saying "invoice 2024", the word "Ravenscroft" spoken at 12:31 or printed on page 3 are
exact evidence that an embedding blurs. Every row of a collection carries `words` (`words_of`:
the file name split into words, tags, a note, a text item's text; a segment row: its transcript,
OCR or page text), indexed by LanceDB's native full-text index (BM25, English stemming, stop
words removed; `ensure_fts`). Three modes:

* `vector`: meaning only (omnibind/search.py);
* `text`: BM25 over rows; an item ranks by its best row and a hit found through a segment names it;
* `hybrid`: the vector list and the text list fused by weighted reciprocal rank (RRF, k=60):
  an item scores sum(weight / (RRF_K + rank)) over the lists it is in. Only items that hold
  *every* word of the query (AND) form the text list: plain BM25 (OR) returns something for any
  common word, and measured on Tux Paint train stamps that noise lowers R@1 where words do not
  help (docs/search.md). A query none of whose words all occur in one row gives exactly the
  vector list. Hits keep the vector side's calibrated strength as their score (the one 0-1
  scale), ranked by the fused order; items only the words found are scored by vector too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from omnibind.collection import Collection
    from omnibind.hits import Hit, Hits

MODES = ("vector", "text", "hybrid")
DEFAULT_MODE = "vector"  # chosen by measurement (docs/search.md)
WORDS = "words"
INDEX_NAME = "words_idx"
RRF_K = 60  # reciprocal-rank constant (Cormack et al. 2009; LanceDB's RRFReranker default)
TEXT_WEIGHT = 2.0  # weight of the text list in the fusion (the vector list weighs 1; chosen on train data)
TEXT_DEPTH = 50  # items each list brings to the fusion at least
TEXT_OPERATOR = "AND"  # every query word must be in the row (see the module docstring)
REBUILD_MIN = 4096  # rows past the index searched flat before the index is rebuilt
REBUILD_SHARE = 0.1  # ... or this share of the indexed rows, whichever is more

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")
_SEPARATORS = re.compile(r"[\s_.\-+,;()\[\]{}]+")


class ModeError(ValueError):
    """An unknown search mode, or a mode the query or collection cannot serve."""


def check_mode(mode: str) -> str:
    """`mode` normalised, or a ModeError naming the choices."""
    name = str(mode or "").strip().lower()
    if name not in MODES:
        raise ModeError(f"unknown search mode {mode!r}: choose from {', '.join(MODES)}")
    return name


# -- what full-text search sees ---------------------------------------------------------------------


def name_words(source: str | None) -> str:
    """A file name as words: the last path part without its extension, split at `_ - . +`, spaces,
    camelCase and letter-digit boundaries ('RedApple_2024-v2.png' -> 'Red Apple 2024 v 2')."""
    if not source or source.startswith("<"):  # "<text>", "<bytes>": no name
        return ""
    name = re.split(r"[/\\]", str(source).rstrip("/\\"))[-1]
    stem, dot, ext = name.rpartition(".")
    if dot and stem and ext.isalnum() and len(ext) <= 5:
        name = stem
    parts = [p for chunk in _SEPARATORS.split(name) for p in _CAMEL.split(chunk)]
    return " ".join(p for p in parts if p)


def words_of(source: str | None, text: str | None, tags: Sequence[str] | str = (), note: str | None = None) -> str:
    """The text full-text search sees for a row: the file name's words, tags, a note, the text.
    Item rows: `words_of(item.source, text of a text item, tags, note)`; segment rows:
    `words_of(None, segment.text)`."""
    tag_list = [tags] if isinstance(tags, str) else [str(t) for t in tags or ()]
    parts = [name_words(source), " ".join(tag_list), note or "", text or ""]
    return "\n".join(p.strip() for p in parts if p and p.strip())


# -- the index --------------------------------------------------------------------------------------


def has_words(collection: "Collection") -> bool:
    """Whether the collection's table has the `words` column (collections made since issue 19)."""
    return WORDS in collection.table.schema.names


def _index(collection: "Collection") -> Any:
    """The full-text index on `words` (LanceDB's IndexConfig), or None."""
    return next((i for i in collection.table.list_indices() if i.columns and i.columns[0] == WORDS
                 and str(i.index_type).upper() == "FTS"), None)


def ensure_fts(collection: "Collection") -> bool:
    """Build the full-text index on `words` if missing; rebuild it when many rows were written
    since (rows past the index are still found, by a flat scan, so this is about speed, not
    freshness). Never compacts the table (row addresses stay stable for omnibind/ann.py).
    Returns whether the collection has an index now (False: no `words` column)."""
    if not has_words(collection):
        return False
    from lancedb.index import FTS

    with collection.writer:
        index = _index(collection)
        if index is not None:
            stats = collection.table.index_stats(index.name)
            indexed, pending = int(stats.num_indexed_rows or 0), int(stats.num_unindexed_rows or 0)
            if pending <= max(REBUILD_MIN, REBUILD_SHARE * indexed):
                return True
        config = FTS(with_position=False, stem=True, remove_stop_words=True, ascii_folding=True, lower_case=True)
        collection.table.create_index(WORDS, config=config, replace=True, name=INDEX_NAME)
    return True


# -- text search ------------------------------------------------------------------------------------


def text_rows(collection: "Collection", text: str, wanted: Sequence[str], where: str | None, limit: int,
              operator: str = TEXT_OPERATOR) -> list[tuple[dict[str, Any], float]]:
    """(row, BM25 score) of the rows whose words match `text`, best first, at most `limit`."""
    from lancedb.query import FullTextOperator, MatchQuery

    from omnibind.collection import RESULT_COLUMNS, CollectionError, sql_list

    if not has_words(collection):
        raise ModeError(f"collection {collection.path} has no words column (made before full-text search): "
                        "re-ingest it into a new collection to search words")
    if _index(collection) is None:
        ensure_fts(collection)
    filt = " AND ".join(f for f in (f"modality IN ({sql_list(wanted)})", f"({where})" if where else "") if f)
    query = MatchQuery(text, WORDS, operator=FullTextOperator.AND if operator == "AND" else FullTextOperator.OR)
    builder = (collection.table.search(query, query_type="fts").select(RESULT_COLUMNS + ["vector", "_score"])
               .where(filt, prefilter=True).limit(limit))
    try:
        rows = builder.to_list()
    except Exception as exc:  # LanceDB reports SQL errors as ValueError/RuntimeError subclasses
        raise CollectionError(f"search failed (is the filter valid SQL?): {exc}") from exc
    return [(r, float(r.pop("_score"))) for r in rows]


def best_rows(rows: list[tuple[dict[str, Any], float]]) -> list[tuple[str, dict[str, Any], float]]:
    """(item id, its best row, score) per item, best first: an item ranks by its best row."""
    best: dict[str, tuple[dict[str, Any], float]] = {}
    for row, s in sorted(rows, key=lambda x: -x[1]):
        best.setdefault(row.get("item") or row["id"], (row, s))
    return [(i, r, s) for i, (r, s) in best.items()]


def text_ranking(collection: "Collection", text: str, wanted: Sequence[str], where: str | None, k: int,
                 operator: str = TEXT_OPERATOR) -> list[tuple[str, dict[str, Any], float]]:
    """The k best items by their best row's BM25 (fetching more rows when segments share items)."""
    from omnibind.search import MAX_FETCH, SEGMENT_FETCH

    limit = k * (SEGMENT_FETCH if collection.has_segments() else 1)
    while True:
        rows = text_rows(collection, text, wanted, where, limit, operator)
        items = best_rows(rows)
        if len(rows) < limit or len(items) >= k or limit >= MAX_FETCH:
            return items[:k]
        limit *= 4


def fuse(lists: Sequence[Sequence[str]], weights: Sequence[float], k: int = RRF_K) -> list[str]:
    """Weighted reciprocal-rank fusion: ids by sum(weight / (k + rank)) over the lists holding
    them (rank from 1); ties keep the first list's order."""
    score: dict[str, float] = {}
    first: dict[str, tuple[int, int]] = {}
    for n, (ids, w) in enumerate(zip(lists, weights)):
        for rank, i in enumerate(ids, 1):
            score[i] = score.get(i, 0.0) + w / (k + rank)
            first.setdefault(i, (n, rank))
    return sorted(score, key=lambda i: (-score[i], first[i]))


def search_mode(collection: "Collection", query: Any, k: int, mode: str, *, modality: str | Sequence[str] | None = None,
                where: str | None = None, query_modality: str | None = None, **options: Any) -> "Hits":
    """`search(..., mode="text"|"hybrid")` (omnibind/search.py dispatches here)."""
    mode = check_mode(mode)
    if mode == "text":
        return text_search(collection, query, k, modality=modality, where=where, query_modality=query_modality)
    return hybrid_search(collection, query, k, modality=modality, where=where, query_modality=query_modality, **options)


def _query_text(query: Any, mode: str) -> str | None:
    """The words of a query: a text query's text; files and vectors have none (text mode refuses them)."""
    if isinstance(query, str):
        return query
    if mode == "text":
        raise ModeError("text mode searches words: give a text query (files and vectors: mode vector or hybrid)")
    return None


def text_search(collection: "Collection", query: Any, k: int, *, modality: str | Sequence[str] | None = None,
                where: str | None = None, query_modality: str | None = None) -> "Hits":
    """The k items whose words best match the query (BM25 of their best row; `Hit.kind` "bm25",
    `score` the BM25 score, `cosine` the row's cosine to the query's vector)."""
    from omnibind import search as S
    from omnibind.hits import Hit, Hits

    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    text = _query_text(query, "text")
    with collection.pinned():
        collection.check_consistent()
        q, _ = S.query_input(collection, query, query_modality)
        wanted = S._modalities(modality, collection.modality_counts())
        found = text_ranking(collection, text or "", wanted, where, k) if wanted else []
        hits = []
        for item, row, bm25 in found:
            vector = np.asarray(row.pop("vector"), dtype=np.float32)
            segment = None if row.get("kind") in (None, "item") else S._segment(row)
            hits.append(Hit(item, row.get("source"), row["modality"], bm25, float(vector @ q), row, "bm25", segment))
        out = Hits(S._with_item_text(collection, hits))
    out.note = None if out else "no item holds every word of the query"
    return out


def hybrid_search(collection: "Collection", query: Any, k: int, *, modality: str | Sequence[str] | None = None,
                  where: str | None = None, query_modality: str | None = None, weight: float = TEXT_WEIGHT,
                  operator: str = TEXT_OPERATOR, depth: int = TEXT_DEPTH, **options: Any) -> "Hits":
    """Vector and text lists fused by weighted RRF (module docstring); a hit keeps its vector
    score, gains `fields["keyword_score"]` (BM25) when its words matched, and names the segment
    whose words matched when the words ranked it higher than its meaning did."""
    from omnibind import search as S
    from omnibind.hits import Hits

    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    text = _query_text(query, "hybrid")
    q, query_modality = S.query_input(collection, query, query_modality)
    deep = max(k, depth)
    vec = S.search(collection, q, deep, modality=modality, where=where, query_modality=query_modality, mode="vector",
                   **options)
    with collection.pinned():
        wanted = S._modalities(modality, collection.modality_counts())
        texts = text_ranking(collection, text, wanted, where, deep, operator) if text and wanted else []
    if not texts:
        out = Hits(vec[:k])
        out.note = vec.note
        return out
    order = fuse([[h.id for h in vec], [i for i, _, _ in texts]], [1.0, weight])[:k]
    by_id = {h.id: h for h in vec}
    missing = [i for i in order if i not in by_id]
    if missing:
        by_id.update(_vector_hits(collection, q, missing, modality, where, query_modality, options))
    out = Hits(_with_words(collection, [by_id[i] for i in order if i in by_id], texts,
                           {h.id: n for n, h in enumerate(vec)}))
    out.note = vec.note if not out or "keyword_score" not in out[0].fields else None
    return out


def _vector_hits(collection: "Collection", q: np.ndarray, ids: list[str], modality: Any, where: str | None,
                 query_modality: str | None, options: dict[str, Any]) -> dict[str, "Hit"]:
    """Vector hits (calibrated like any other) of items only the words found."""
    from omnibind import search as S
    from omnibind.collection import sql_list

    only = f"item IN ({sql_list(ids)})" + (f" AND ({where})" if where else "")
    rest = {key: v for key, v in options.items() if key in ("calibrated", "exact")}
    return {h.id: h for h in S.search(collection, q, len(ids), modality=modality, where=only,
                                      query_modality=query_modality, mode="vector", **rest)}


def _with_words(collection: "Collection", hits: list["Hit"], texts: list[tuple[str, dict[str, Any], float]],
                vector_rank: dict[str, int]) -> list["Hit"]:
    """Hits with their BM25 in `fields["keyword_score"]`, and the segment whose words matched
    where the words ranked the item higher than its vector did."""
    from omnibind import search as S

    text_rank = {i: (n, row, s) for n, (i, row, s) in enumerate(texts)}
    for h in hits:
        n, row, _ = text_rank.get(h.id, (len(texts), {}, 0.0))
        if row.get("kind") not in (None, "item") and n < vector_rank.get(h.id, len(vector_rank)):
            h.segment = S._segment(row)
    hits = S._with_item_text(collection, hits)
    for h in hits:
        if h.id in text_rank:
            h.fields = {**h.fields, "keyword_score": round(text_rank[h.id][2], 4)}
    return hits
