"""Any-to-any search over a collection, with scores comparable across modalities.

Raw cosine between a caption and images lives on a different scale than caption-to-text (the
modality gap), and each modality's tail is shaped differently: text-to-text cosines spread far
wider than text-to-image ones. omnibind calibrates in two steps:

1. per query and item modality: the collection keeps a fixed random sample of each modality's
   vectors (`Collection.calibration`, omnibind/calibration.py, refreshed after each ingest), and a cosine becomes
   z = (cos - mean) / std of the query's cosines to that sample: "how unusual for this query". The
   sample's mean and variance are shrunk toward the space's prior for the pair (the typical mean
   and std its calibration fit measured on held-out data) with the weight of MIN_SAMPLE items, so
   3 videos or 6 notes are calibrated too and never switch the whole list to raw cosine;
2. per (query modality, item modality) pair: the space's fit (`Space.calibration`,
   scripts/fit_calibration.py) maps z to match log-odds a * z + b, and the list is ranked on them
   (on z where a pair has no fit). One readable `strength` in [0, 1] is shown (`strength_of_logit`,
   `strength`), the match probability and z ride along;
3. no modality may fill more than CROWD_SHARE of the top k with matches that are not strong
   (`_diverse`): a tower whose fit is weak gives every item a near-prior probability (sounds) and
   would otherwise fill a mixed list with noise.

Measured on held-out data: z alone lets text notes win wherever notes are many (1,000 STS-B
sentences beside 223 photos and 52 sounds: notes 82% of a top 10, a caption's true item in the
top 10 for 42.5% of queries, against 58.4% ranked on log-odds; scripts/eval_calibration.py);
log-odds alone let sounds fill 72% of a caption's top 10 in a small collection (30 photos, 20
sounds, 3 videos, 6 notes; benchmarks/mixed_search.py), the cap holds them to 59%.

Only a modality with fewer than MIN_SAMPLE items and no prior in the space (a calibration fit
before issue 16) is ranked on raw cosine, and `Hits.note` names it.

Candidates are fetched per modality (so the ANN never has to rank across scales), re-scored with
exact cosines, then merged on the calibrated score.

An item is searched through all its rows: the item row and its segments (omnibind/views: the words
spoken at 12:31, page 3 of a PDF, a chunk of a long note, a time window). Segments that hold words
are anchor vectors and are calibrated as text. An item ranks by its best row (max fusion, measured
against mean-of-top-2 and the item vector alone in docs/views.md) and its hit names that row:
`Hit.segment` gives kind, location and snippet.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from omnibind import fulltext, modalities
from omnibind.collection import RESULT_COLUMNS, Collection, CollectionError, sql_list
from omnibind.hits import FAIR, STRONG, Hit, Hits, strength, strength_of_logit
from omnibind.inputs import Input, to_input
from omnibind.rerank import Rerank, RerankQuery, depth, resolve
from omnibind.views.embed import calibration_group, describe

NO_MATCH = "no confident match: nothing stands out from the typical item of its kind"
MIN_SAMPLE = 20  # a modality's sample weighs as much as the space's prior at this many items
CROWD_SHARE = 0.6  # most of a top k one modality may fill with matches that are not strong


SEGMENT_FETCH = 8  # rows fetched per wanted hit when items have segments: k distinct items, not k rows
MAX_FETCH = 65_536  # rows one LanceDB query may fetch while looking for k distinct items
FILTER_FETCH = 16  # ANN rows fetched per wanted row when a `where` filter must be checked on them
MAX_FILTER_FETCH = 4_096  # beyond this many ANN rows a filter is too selective: LanceDB's filtered search


# -- calibration ---------------------------------------------------------------------------------


def refresh_calibration(collection: Collection) -> Path:
    """Re-draw the collection's per-modality reference samples (omnibind/calibration.py)."""
    return collection.calibration.refresh()


def calibration(collection: Collection) -> dict[str, np.ndarray]:
    """The reference samples per modality (drawn now if the collection has none yet)."""
    return collection.calibration.samples()


def _pair_fit(space: Any, query_modality: str | None, item_modality: str) -> list[float]:
    """The space's calibration fit for a modality pair ([a, b] or [a, b, mean, std]; [] if none).
    A modality may borrow another's fit (the table's `calibrate_as`: a video is calibrated like an
    image, its vector is mostly the image tower's)."""
    table = getattr(space, "calibration", None) or {}
    if query_modality is None:
        return []
    q, m = (modalities.get(x).calibration_name for x in (query_modality, item_modality))
    return list(table.get(f"{q}->{m}") or [])


def pair_calibration(space: Any, query_modality: str | None, item_modality: str) -> tuple[float, float] | None:
    """(a, b) of the space's match-probability calibration for a modality pair, if fitted."""
    fit = _pair_fit(space, query_modality, item_modality)
    return (float(fit[0]), float(fit[1])) if fit else None


def pair_prior(space: Any, query_modality: str | None, item_modality: str) -> tuple[float, float] | None:
    """(mean, std) of a query's cosines to items of a modality, as the space's calibration measured
    them on held-out data (the 3rd and 4th numbers of a fit; absent in fits made before issue 16)."""
    fit = _pair_fit(space, query_modality, item_modality)
    return (float(fit[2]), float(fit[3])) if len(fit) >= 4 else None


def calibrate(query: np.ndarray, cosines: np.ndarray, sample: np.ndarray | None,
              prior: tuple[float, float] | None = None, weight: float = MIN_SAMPLE) -> np.ndarray:
    """z-scores of `cosines` against the query's cosines to a reference sample of one modality.

    With a `prior` (the space's typical mean and std for this pair), the sample's mean and variance
    are shrunk toward it with the weight of `weight` items: 3 videos get mostly the prior, 500
    images almost only their own sample, and no sample at all the prior alone."""
    n = 0 if sample is None else len(sample)
    if prior is None and n < 2:
        return cosines.astype(np.float64)
    mean, var = 0.0, 0.0
    if n:
        ref = sample @ query
        mean, var = float(ref.mean()), float(ref.var())
    if prior is not None:
        w = weight / (n + weight)
        mean, var = (1 - w) * mean + w * prior[0], (1 - w) * var + w * prior[1] ** 2
    return (cosines - mean) / max(float(np.sqrt(var)), 1e-6)


# -- search --------------------------------------------------------------------------------------


def query_vector(collection: Collection, query: Any) -> np.ndarray:
    """A query as a unit vector of the collection's space: a vector, a text, a file path (Path),
    or anything `Space.embed` accepts."""
    return query_input(collection, query)[0]


def query_input(collection: Collection, query: Any, modality: str | None = None) -> tuple[np.ndarray, str | None]:
    """(unit vector, modality) of a query; a raw vector's modality is `modality` (None: unknown,
    so scores stay z-scores); pass it for a query embedded earlier, e.g. outside a model lock."""
    return embedded_query(collection, query, modality)[:2]


def embedded_query(collection: Collection, query: Any, modality: str | None) -> tuple[np.ndarray, str | None, Input | None]:
    """`query_input` and the decoded query (None for a vector): what a reranker and the words
    of hybrid search read (the server embeds with this under its model lock, then ranks)."""
    if isinstance(query, np.ndarray) and query.dtype.kind == "f":
        v = query.astype(np.float32).reshape(-1)
        if v.shape[0] != collection.space.dim:
            raise CollectionError(f"query vector has {v.shape[0]} dims, the collection {collection.space.dim}")
        norm = float(np.linalg.norm(v))
        return (v if abs(norm - 1.0) < 1e-6 else v / max(norm, 1e-12)), modality, None  # a unit vector: bit for bit
    item = to_input(query, collection.space.limits)
    return collection.space.embed([item])[0], item.modality, item


def search(collection: Collection, query: Any, k: int = 10, *, modality: str | Sequence[str] | None = None,
           where: str | None = None, calibrated: bool = True, exact: bool | None = None,
           rerank: Rerank | None = None, refine: int = 4, nprobes: int = 32,
           query_modality: str | None = None, query_item: Input | None = None, mode: str | None = None) -> list[Hit]:
    """The `k` best items for `query` (text, a Path to a file of any modality, or a vector).

    `modality` restricts item modalities; `where` is a LanceDB SQL filter on the row ("size > 1000",
    "array_has(tags, 'sea')": omnibind/filters.py builds them). `exact=None` uses the ANN index
    when there is one (and always re-scores its candidates with exact cosines), `True` forces a
    flat scan. `rerank` (a `omnibind.rerank.Reranker`, a registered name such as "hubness", or a
    legacy `(query_vector, hits)` callable) reorders the merged list of `depth(k)` candidates per
    modality; it sees the query input (`query_item` for a vector query). With `calibrated`, hits
    are ranked on match log-odds (z where a pair has no fit), scored by one 0-1 strength; raw
    cosine without it, or when a searched modality has too few items and no prior (module
    docstring; `Hit.kind`, `Hits.note`). `Hit.cosine` is always the raw cosine.
    `query_modality` names the modality a vector query was embedded from (see `query_input`).
    `mode`: "vector" (this function), "text" or "hybrid" (words too: omnibind/fulltext.py);
    None: `fulltext.DEFAULT_MODE`.
    """
    if (mode := fulltext.check_mode(mode or fulltext.DEFAULT_MODE)) != "vector":
        return search_mode(collection, query, k, mode, modality=modality, where=where, calibrated=calibrated,
                           exact=exact, rerank=rerank, refine=refine, nprobes=nprobes,
                           query_modality=query_modality, query_item=query_item)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    with collection.pinned():  # one LanceDB version query per search, not ten
        collection.check_consistent()
        reranker = resolve(rerank, collection.space) if rerank is not None else None
        q, query_modality, decoded = embedded_query(collection, query, query_modality)
        if collection.calibration.stale(collection.group_counts()):  # added without an ingest, or one died early
            collection.calibration.refresh()
        samples = collection.calibration.samples()
        wanted = _modalities(modality, collection.modality_counts())
        fetch = depth(k, reranker) if reranker else k
        found = {m: _candidates(collection, q, m, where, fetch, exact, refine, nprobes, len(wanted) == 1 and
                                set(collection.modality_counts()) == {m}) for m in wanted}
        groups = {(m, calibration_group(m, row.get("kind"))) for m, rows in found.items() for row, _ in rows}
        priors = {g: pair_prior(collection.space, query_modality, g) for _, g in groups}
        thin = sorted({g for m, g in groups if (g == m or g in wanted) and len(samples.get(g, ())) < MIN_SAMPLE
                       and priors[g] is None})
        samples = _with_reference(collection, samples, {g for m, g in groups if g != m and g not in wanted and priors[g] is None})
        pairs = {g: pair_calibration(collection.space, query_modality, g) for _, g in groups}
        kind = "cosine" if not calibrated or thin else "strength"
        fitted = kind == "strength" and all(pairs.values())  # rank on match log-odds, else on z
        best: dict[str, tuple[float, Hit]] = {}
        where_in: dict[str, tuple[float, dict[str, Any]]] = {}  # the best segment of each item
        for m, rows in found.items():
            for key, hit in _scored(q, m, rows, samples, pairs if fitted else {}, kind, priors):
                if hit.id not in best or key > best[hit.id][0]:
                    best[hit.id] = (key, hit)
                if hit.segment is not None and (hit.id not in where_in or key > where_in[hit.id][0]):
                    where_in[hit.id] = (key, hit.segment)
        for item, (_, hit) in best.items():  # the whole item matched best: still say where in it
            hit.segment = hit.segment or (where_in[item][1] if item in where_in else None)
        hits = _diverse([h for _, h in sorted(best.values(), key=lambda x: -x[0])], k)
        if reranker:
            hits = reranker(RerankQuery(decoded or query_item, q, query_modality, collection), hits)
        out = Hits(_with_item_text(collection, hits[:k]))
        out.note = _note(out, calibrated, thin)
        return out


def _diverse(hits: list[Hit], k: int, share: float = CROWD_SHARE) -> list[Hit]:
    """The ranked list with no modality holding more than `share` of the top k by items that are
    not strong matches: the rest of such a modality moves below the top k, in order. A weak fit
    (sounds: near-prior probabilities for every sound) otherwise fills a mixed list with noise."""
    cap = max(1, int(share * k))
    top: list[Hit] = []
    later: list[Hit] = []
    weak: dict[str, int] = {}
    for h in hits:
        if len(top) >= k or h.kind == "cosine" or h.score >= STRONG:
            (top if len(top) < k else later).append(h)
            continue
        if weak.get(h.modality, 0) < cap:
            weak[h.modality] = weak.get(h.modality, 0) + 1
            top.append(h)
        else:
            later.append(h)
    return top + later


def _note(hits: list[Hit], calibrated: bool, thin: list[str]) -> str | None:
    """What the footer and the page say about the list as a whole."""
    if calibrated and thin:
        return (f"raw cosine: too few {', '.join(thin)} items to calibrate (under {MIN_SAMPLE}) and no prior "
                "for them in the space (refit its calibration: scripts/fit_calibration.py)")
    if hits and hits[0].kind == "strength" and hits[0].score < FAIR:
        return NO_MATCH
    return None


def _with_reference(collection: Collection, samples: dict[str, np.ndarray], borrowed: set[str]) -> dict[str, np.ndarray]:
    """Words found in items (a group no searched modality owns) too few to calibrate against: a
    stand-in text sample (`Calibration.text_reference`), so two stray OCR lines neither switch the
    whole search to raw cosine nor get z-scores from a sample of two."""
    thin = [g for g in borrowed if len(samples.get(g, ())) < MIN_SAMPLE]
    if not thin:
        return samples
    return {**samples, **{g: collection.calibration.text_reference(collection.space) for g in thin}}


def _scored(q: np.ndarray, modality: str, rows: list[tuple[dict[str, Any], float]], samples: dict[str, np.ndarray],
            pairs: dict[str, tuple[float, float] | None], kind: str,
            priors: dict[str, tuple[float, float] | None] | None = None) -> list[tuple[float, Hit]]:
    """(ranking key, hit) of each candidate row: raw cosine, or z against its calibration group's
    sample (shrunk toward the space's prior), shown as `strength(z)`, with the match probability
    where the space has a fit for the pair."""
    out: list[tuple[float, Hit]] = []
    group = np.array([calibration_group(modality, row.get("kind")) for row, _ in rows], dtype=object)
    cos = np.array([c for _, c in rows], dtype=np.float64)
    z = cos.copy()
    if kind != "cosine":
        for g in set(group.tolist()):
            mask = group == g
            z[mask] = calibrate(q, cos[mask], samples.get(g), (priors or {}).get(g))
    for n, (row, c) in enumerate(rows):
        key = float(z[n])
        item = row.get("item") or row["id"]
        segment = None if row.get("kind") in (None, "item") else _segment(row)
        if kind == "cosine":
            out.append((key, Hit(item, row.get("source"), modality, key, float(c), row, kind, segment)))
            continue
        ab = pairs.get(group[n])
        if ab is None:
            out.append((key, Hit(item, row.get("source"), modality, strength(key), float(c), row, kind, segment, key)))
            continue
        logit = float(np.clip(ab[0] * key + ab[1], -60.0, 60.0))
        p = float(1.0 / (1.0 + np.exp(-logit)))
        out.append((logit, Hit(item, row.get("source"), modality, strength_of_logit(logit), float(c), row, kind,
                               segment, key, p)))
    return out


def _segment(row: dict[str, Any]) -> dict[str, Any]:
    """A segment row as a hit shows it: kind, location ('12:31–12:45', 'page 3'), snippet."""
    from omnibind.views import Segment

    chars = (row["char_start"], row["char_end"]) if row.get("char_start") is not None else None
    seg = Segment(row["kind"], text=row.get("text") or "", start=row.get("start"), end=row.get("end"),
                  page=row.get("page"), chars=chars)
    return {**describe(seg), "text": row.get("text")}


def _with_item_text(collection: Collection, hits: list[Hit]) -> list[Hit]:
    """A hit found through a segment carries the item's own fields (its full text, not the
    snippet, which stays in `segment`)."""
    need = [h.id for h in hits if h.segment is not None]
    if not need:
        return hits
    items = {r["id"]: r for r in collection.get(need, RESULT_COLUMNS)}
    for h in hits:
        if h.segment is not None and h.id in items:
            h.fields = {**items[h.id], **{k: h.fields[k] for k in ("rerank",) if k in h.fields}}  # a reranker's mark stays
    return hits


def _exact_in_memory(collection: Collection, q: np.ndarray, modality: str, k: int) -> list[tuple[dict[str, Any], float]] | None:
    """The rows of the `k` items nearest to q (an item ranks by its best row): for each, its best
    row of each class (item row, words, media piece), so calibration can still choose among them."""
    snap = collection.snapshot()
    if snap is None:
        return None
    vectors = snap.vectors.get(modality)
    if vectors is None or not len(vectors):
        return []
    sims = vectors @ q
    codes, classes = snap.items[modality], snap.classes[modality]
    order = np.argsort(-sims, kind="stable")
    _, first = np.unique((codes * 3 + classes)[order], return_index=True)
    best = order[np.sort(first)]  # best row of each (item, class), best first
    _, first_item = np.unique(codes[best], return_index=True)
    top = codes[best][np.sort(first_item)][:k]
    keep = best[np.isin(codes[best], top)]
    return [(dict(snap.rows[modality][i]), float(sims[i])) for i in keep]


def _modalities(modality: str | Sequence[str] | None, present: dict[str, int]) -> list[str]:
    known = modalities.names()
    if modality is None:
        return [m for m in known if present.get(m)]
    names = [m.strip() for m in (modality.split(",") if isinstance(modality, str) else modality) if m.strip()]
    unknown = [m for m in names if m not in known]
    if unknown:
        raise ValueError(f"unknown modality {unknown[0]!r}: choose from {', '.join(known)}")
    return names


def _candidates(collection: Collection, q: np.ndarray, modality: str, where: str | None, k: int,
                exact: bool | None, refine: int, nprobes: int, alone: bool = False) -> list[tuple[dict[str, Any], float]]:
    """Rows of one modality nearest to q, with exact full-dimension cosines. `alone`: the
    collection holds no other modality, so no modality filter is needed."""
    filt = " AND ".join(f for f in ("" if alone else f"modality = '{modality}'", f"({where})" if where else "") if f)
    short = collection.index_dim
    column = "vector_short" if short else "vector"
    qv = q[:short] / max(float(np.linalg.norm(q[:short])), 1e-12) if short else q
    index = collection.index_type()
    indexed = index is not None and exact is not True
    if not indexed and not where:  # exact search of a small collection: in memory
        found = _exact_in_memory(collection, q, modality, k)
        if found is not None:
            return found
    if exact is not True:  # a large collection: the in-memory ANN index (omnibind/ann.py)
        found = _ann_candidates(collection, q, modality, where, k)
        if found is not None:
            return found
    # Matryoshka column: fetch refine*k on the short vectors, re-score them at full dimension here.
    # Full-dimension index: LanceDB re-ranks refine*k quantised candidates with the exact vectors.
    # Items with segments own several rows: fetch more rows until k items are among them.
    rows_per_item = SEGMENT_FETCH if collection.has_segments() else 1
    limit = k * rows_per_item * (refine if short else 1)
    while True:
        builder = (collection.table.search(qv, vector_column_name=column).distance_type("cosine")
                   .select(RESULT_COLUMNS + ["vector", "_distance"]).limit(limit))
        if filt:
            builder = builder.where(filt, prefilter=True)
        if indexed:
            builder = builder.nprobes(nprobes).refine_factor(1 if short else refine)
        elif index is not None:
            builder = builder.bypass_vector_index()
        try:
            rows = builder.to_list()
        except Exception as exc:  # LanceDB reports SQL errors as ValueError/RuntimeError subclasses
            raise CollectionError(f"search failed (is the filter valid SQL?): {exc}") from exc
        if len(rows) < limit or len({r.get("item") or r["id"] for r in rows}) >= k or limit >= MAX_FETCH:
            return _rescored(rows, q, k)
        limit *= 4


def _ann_candidates(collection: Collection, q: np.ndarray, modality: str, where: str | None,
                    k: int) -> list[tuple[dict[str, Any], float]] | None:
    """Rows of the k best items of a modality from the in-memory ANN index (cosines exact: the
    graph holds the full vectors); None when there is no index (small collection, no FAISS) or a
    `where` filter passes too few of its candidates (then LanceDB's filtered search answers)."""
    index = collection.ann() if collection.snapshot() is None else None
    if index is None:
        return None
    fetch = k * (SEGMENT_FETCH if collection.has_segments() else 1) * (FILTER_FETCH if where else 1)
    while True:
        positions, cosines = index.search(q, modality, fetch)
        rows = index.rows(positions)
        if where:
            passing = _passing(collection, [r["id"] for r in rows], where)
            keep = [n for n, r in enumerate(rows) if r["id"] in passing]
            rows, cosines = [rows[n] for n in keep], cosines[keep]
        enough = len({r["item"] or r["id"] for r in rows}) >= k
        if enough or len(positions) < fetch or fetch >= (MAX_FILTER_FETCH if where else MAX_FETCH):
            break
        fetch *= 4
    if where and not enough and len(positions) == fetch:
        return None
    return _best_items([(r, float(c)) for r, c in zip(rows, cosines)], k)


def _passing(collection: Collection, ids: list[str], where: str) -> set[str]:
    """The ids among `ids` whose rows pass a `where` filter (one LanceDB query)."""
    if not ids:
        return set()
    try:
        return set(collection.column("id", where=f"id IN ({sql_list(ids)}) AND ({where})").column("id").to_pylist())
    except Exception as exc:  # LanceDB reports SQL errors as ValueError/RuntimeError subclasses
        raise CollectionError(f"search failed (is the filter valid SQL?): {exc}") from exc


def _best_items(scored: list[tuple[dict[str, Any], float]], k: int) -> list[tuple[dict[str, Any], float]]:
    """The rows (best first) of the k items whose best row is best."""
    scored.sort(key=lambda x: -x[1])
    items = set(list(dict.fromkeys(r.get("item") or r["id"] for r, _ in scored))[:k])
    return [(r, c) for r, c in scored if (r.get("item") or r["id"]) in items]


def _rescored(rows: list[dict[str, Any]], q: np.ndarray, k: int) -> list[tuple[dict[str, Any], float]]:
    """Rows with exact full-dimension cosines (the built-in rescoring step), those of the k best items."""
    scored = []
    for row in rows:
        full = np.asarray(row.pop("vector"), dtype=np.float32)
        row.pop("_distance", None)
        scored.append((row, float(full @ q)))
    return _best_items(scored, k)


def by_ids(collection: Collection, ids: Sequence[str]) -> str:
    """A `where` filter for a set of ids."""
    return f"id IN ({sql_list(ids)})"


# -- words: text and hybrid modes (the index and BM25 ranking: omnibind/fulltext.py) ----------------------


def search_mode(collection: Collection, query: Any, k: int, mode: str, *, modality: str | Sequence[str] | None = None,
                where: str | None = None, query_modality: str | None = None, **options: Any) -> Hits:
    """`search(..., mode="text"|"hybrid")` (omnibind/search.py dispatches here)."""
    mode = fulltext.check_mode(mode)
    if mode == "text" and options.get("rerank") is not None:
        raise fulltext.ModeError("text mode ranks by words alone: rerank works in vector and hybrid mode")
    if mode == "text":
        return text_search(collection, query, k, modality=modality, where=where, query_modality=query_modality,
                           query_item=options.get("query_item"))
    return hybrid_search(collection, query, k, modality=modality, where=where, query_modality=query_modality, **options)


def _query_text(query: Any, mode: str, item: Input | None = None) -> str | None:
    """The words of a query: a text query's text, or the text input a vector query was embedded
    from (`query_item`: the server embeds under its model lock, then ranks); files and other
    vectors have none (text mode refuses them)."""
    if isinstance(query, str):
        return query
    if item is not None and item.modality == "text" and isinstance(item.payload, str):
        return item.payload
    if mode == "text":
        raise fulltext.ModeError("text mode searches words: give a text query (files and vectors: mode vector or hybrid)")
    return None


def text_search(collection: Collection, query: Any, k: int, *, modality: str | Sequence[str] | None = None,
                where: str | None = None, query_modality: str | None = None, query_item: Input | None = None) -> Hits:
    """The k items whose words best match the query (BM25 of their best row; `Hit.kind` "bm25",
    `score` the BM25 score, `cosine` the row's cosine to the query's vector)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    text = _query_text(query, "text", query_item)
    with collection.pinned():
        collection.check_consistent()
        q, _ = query_input(collection, query, query_modality)
        wanted = _modalities(modality, collection.modality_counts())
        found = fulltext.text_ranking(collection, text or "", wanted, where, k, fulltext.TEXT_OPERATOR, SEGMENT_FETCH,
                                      MAX_FETCH) if wanted else []
        hits = []
        for item, row, bm25 in found:
            vector = np.asarray(row.pop("vector"), dtype=np.float32)
            segment = None if row.get("kind") in (None, "item") else _segment(row)
            hits.append(Hit(item, row.get("source"), row["modality"], bm25, float(vector @ q), row, "bm25", segment))
        out = Hits(_with_item_text(collection, hits))
    out.note = None if out else "no item holds every word of the query"
    return out


def hybrid_search(collection: Collection, query: Any, k: int, *, modality: str | Sequence[str] | None = None,
                  where: str | None = None, query_modality: str | None = None, weight: float = fulltext.TEXT_WEIGHT,
                  operator: str = fulltext.TEXT_OPERATOR, text_depth: int = fulltext.TEXT_DEPTH,
                  seen_weight: float = fulltext.SEEN_WEIGHT, confident: float = fulltext.CONFIDENT,
                  **options: Any) -> Hits:
    """Vector and text lists fused by weighted RRF, words the vector embedded weighing less and
    not at all against a confident vector list (omnibind/fulltext.py docstring). A hit keeps its
    vector score, gains `fields["keyword_score"]` (BM25) when its words matched, and names the
    segment whose words matched when the words ranked it higher than its meaning did. Words
    that do not vote (none match, or only embedded ones against a confident top) give exactly
    the vector list."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    text = _query_text(query, "hybrid", options.get("query_item"))
    rerank = options.pop("rerank", None)  # the rerank stage comes after the fusion: it sees both lists' finds
    reranker = resolve(rerank, collection.space) if rerank is not None else None
    q, query_modality, decoded = embedded_query(collection, query, query_modality)
    seen = RerankQuery(options.pop("query_item", None) or decoded, q, query_modality, collection)
    wide, k_out = (depth(k, reranker), k) if reranker else (k, k)
    k = wide  # the fused list is as long as the reranker wants it
    deep = max(k, text_depth)
    deep_hits = search(collection, q, deep, modality=modality, where=where, query_modality=query_modality,
                       mode="vector", **options)
    vec = Hits(_diverse(list(deep_hits), k))  # the crowd rule for the top k, as a k-deep vector search
    vec.note = deep_hits.note
    with collection.pinned():
        wanted = _modalities(modality, collection.modality_counts())
        texts = (fulltext.text_ranking(collection, text, wanted, where, deep, operator, SEGMENT_FETCH, MAX_FETCH)
                 if text and wanted and fulltext.has_words(collection) else [])  # made before words: vector
    top = vec[0].score if vec and vec[0].kind == "strength" else None
    weights = fulltext.text_weights([row for _, row, _ in texts], text or "", top, weight, seen_weight, confident)
    if not any(w > 0 for w in weights):
        return _reranked(reranker, seen, list(vec[:k]), k_out, vec.note)
    order = fulltext.rrf([[h.id for h in vec], [i for i, _, _ in texts]], [1.0, weights])[:2 * k]
    by_id = {h.id: h for h in vec}
    missing = [i for i in order if i not in by_id]
    if missing:
        by_id.update(_vector_hits(collection, q, missing, modality, where, query_modality, options))
    fused = [by_id[i] for i in order if i in by_id]
    if len({h.modality for h in fused}) > 1:  # a mixed list keeps the crowd rule (one modality: no-op)
        fused = _diverse(fused, k)
    out = _with_words(collection, fused[:k], texts, {h.id: n for n, h in enumerate(vec)})
    words_won = bool(out) and "keyword_score" in out[0].fields  # then the top is a match after all
    return _reranked(reranker, seen, out, k_out, None if words_won and vec.note == NO_MATCH else vec.note)


def _reranked(reranker: Any, query: RerankQuery, hits: list[Hit], k: int, note: str | None) -> Hits:
    """The fused list through the rerank stage (if any), cut to k, with the list's note."""
    out = Hits((reranker(query, hits) if reranker else hits)[:k])
    out.note = note
    return out


def _vector_hits(collection: Collection, q: np.ndarray, ids: list[str], modality: Any, where: str | None,
                 query_modality: str | None, options: dict[str, Any]) -> dict[str, Hit]:
    """Vector hits (calibrated like any other) of items only the words found."""
    only = f"item IN ({sql_list(ids)})" + (f" AND ({where})" if where else "")
    rest = {key: v for key, v in options.items() if key in ("calibrated", "exact")}
    return {h.id: h for h in search(collection, q, len(ids), modality=modality, where=only,
                                      query_modality=query_modality, mode="vector", **rest)}


def _with_words(collection: Collection, hits: list[Hit], texts: list[tuple[str, dict[str, Any], float]],
                vector_rank: dict[str, int]) -> list[Hit]:
    """Hits with their BM25 in `fields["keyword_score"]`, and the segment whose words matched
    where the words ranked the item higher than its vector did."""
    text_rank = {i: (n, row, s) for n, (i, row, s) in enumerate(texts)}
    for h in hits:
        n, row, _ = text_rank.get(h.id, (len(texts), {}, 0.0))
        if row.get("kind") not in (None, "item") and n < vector_rank.get(h.id, len(vector_rank)):
            h.segment = _segment(row)
    hits = _with_item_text(collection, hits)
    for h in hits:
        if h.id in text_rank:
            h.fields = {**h.fields, "keyword_score": round(text_rank[h.id][2], 4)}
    return hits
