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

Words the vector never saw count more than words it embedded (`text_weights`). A file name, tags
and a note are never embedded: a match there is new evidence and weighs TEXT_WEIGHT. A text item's
text and a segment's words (speech, OCR, page, chunk) *are* what the row's vector embedded: a match
there repeats what the vector already weighed, so it votes (SEEN_WEIGHT) only when the vector list
is not confident (its top hit's strength below CONFIDENT, `hits.STRONG`); a confident vector list
is never reordered by words it saw. Measured: plain fusion lowers text-to-text paraphrase search,
where overlapping words promote wrong sentences over what meaning ranks well (docs/search.md).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from omnibind.facts import name_words, words_of  # noqa: F401 - (re-exported: what the index reads)
from omnibind.hits import STRONG

if TYPE_CHECKING:
    from omnibind.collection import Collection

MODES = ("vector", "text", "hybrid")
DEFAULT_MODE = "hybrid"  # chosen by measurement: >= vector on every held-out task (docs/search.md)
WORDS = "words"
INDEX_NAME = "words_idx"
RRF_K = 60  # reciprocal-rank constant (Cormack et al. 2009; LanceDB's RRFReranker default)
TEXT_WEIGHT = 2.0  # weight of the text list in the fusion (the vector list weighs 1; chosen on train data)
TEXT_DEPTH = 50  # items each list brings to the fusion at least
TEXT_OPERATOR = "AND"  # every query word must be in the row (see the module docstring)
SEEN_WEIGHT = 1.0  # weight of words the vector embedded, when the vector list is not confident (train data)
CONFIDENT = STRONG  # a vector top hit this strong is not reordered by words its vector embedded
EMBEDDED_KINDS = ("speech", "ocr", "page", "chunk")  # segment rows whose vector embedded their words
STOP_WORDS = frozenset(  # the index's English stop words (Lucene's list, as tantivy's filter)
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these "
    "they this to was will with".split())
REBUILD_MIN = 4096  # rows past the index searched flat before the index is rebuilt
REBUILD_SHARE = 0.1  # ... or this share of the indexed rows, whichever is more



class ModeError(ValueError):
    """An unknown search mode, or a mode the query or collection cannot serve."""


def check_mode(mode: str) -> str:
    """`mode` normalised, or a ModeError naming the choices."""
    name = str(mode or "").strip().lower()
    if name not in MODES:
        raise ModeError(f"unknown search mode {mode!r}: choose from {', '.join(MODES)}")
    return name


# -- what full-text search sees ---------------------------------------------------------------------


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

    from omnibind.paths import CollectionError
    from omnibind.sql import sql_list

    if not has_words(collection):
        raise ModeError(f"collection {collection.path} has no words column (made before full-text search): "
                        "re-ingest it into a new collection to search words")
    if _index(collection) is None:
        ensure_fts(collection)
    filt = " AND ".join(f for f in (f"modality IN ({sql_list(wanted)})", f"({where})" if where else "") if f)
    query = MatchQuery(text, WORDS, operator=FullTextOperator.AND if operator == "AND" else FullTextOperator.OR)
    builder = (collection.table.search(query, query_type="fts").select(collection.RESULT_COLUMNS + ["vector", "_score"])
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
                 operator: str = TEXT_OPERATOR, rows_per_item: int = 8,
                 max_rows: int = 65_536) -> list[tuple[str, dict[str, Any], float]]:
    """The k best items by their best row's BM25 (fetching `rows_per_item` rows per wanted item
    when segments share items, more while too few items came, up to `max_rows`)."""
    limit = k * (rows_per_item if collection.has_segments() else 1)
    while True:
        rows = text_rows(collection, text, wanted, where, limit, operator)
        items = best_rows(rows)
        if len(rows) < limit or len(items) >= k or limit >= max_rows:
            return items[:k]
        limit *= 4


def _stem(word: str) -> str:
    """A crude English stem: a plural -s, then -ing or -ed, then a final -e cut ('cakes', 'cake' ->
    'cak'; 'riding', 'ride' -> 'rid')."""
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    for end in ("ing", "ed"):
        if len(word) > len(end) + 2 and word.endswith(end):
            word = word[:-len(end)]
            break
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


def terms(text: str) -> set[str]:
    """The words of `text` roughly as the index sees them: lower case, ASCII, split at anything
    not a letter or digit, stop words dropped, crudely stemmed (a cruder stemmer than the
    index's: a miss only makes a match count as words the vector embedded)."""
    flat = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode().lower()
    return {_stem(w) for w in re.findall(r"[a-z0-9]+", flat) if w not in STOP_WORDS}


def words_embedded(row: dict[str, Any], query: str) -> bool:
    """Whether the query's words matched where the row's vector embedded them: a segment with
    words (its text), or a text item whose file name, tags and note do not hold every query word
    (so its text does). An item row of any other modality holds only words never embedded."""
    kind = row.get("kind")
    if kind in EMBEDDED_KINDS:
        return True
    if kind not in (None, "item") or row.get("modality") != "text":
        return False
    tags = row.get("tags") or []
    unseen = terms(words_of(row.get("source"), None, list(tags), row.get("note")))
    return not terms(query) <= unseen


def text_weights(rows: Sequence[dict[str, Any]], query: str, top_strength: float | None,
                 weight: float = TEXT_WEIGHT, seen_weight: float = SEEN_WEIGHT,
                 confident: float = CONFIDENT) -> list[float]:
    """The fusion weight of each text-list row (module docstring): `weight` for words the vector
    never saw; `seen_weight` for words it embedded, 0 when the vector's top hit is confident
    (`top_strength` >= `confident`; None, an uncalibrated list: never confident)."""
    seen = seen_weight if top_strength is None or top_strength < confident else 0.0
    return [seen if words_embedded(r, query) else weight for r in rows]


def rrf(lists: Sequence[Sequence[str]], weights: Sequence[float | Sequence[float]], k: int = RRF_K) -> list[str]:
    """Weighted reciprocal-rank fusion: ids by sum(weight / (k + rank)) over the lists holding
    them (rank from 1); a list's weight is one number or one per entry, and an entry of weight 0
    does not count (nor enter). Ties keep the first list's order."""
    score: dict[str, float] = {}
    first: dict[str, tuple[int, int]] = {}
    for n, (ids, w) in enumerate(zip(lists, weights)):
        each = [float(w)] * len(ids) if isinstance(w, (int, float)) else [float(x) for x in w]
        for rank, (i, wi) in enumerate(zip(ids, each), 1):
            if wi > 0:
                score[i] = score.get(i, 0.0) + wi / (k + rank)
                first.setdefault(i, (n, rank))
    return sorted(score, key=lambda i: (-score[i], first[i]))
