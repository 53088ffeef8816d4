"""Long-document retrieval: can a question about page 9 of a 16-page PDF find that PDF and page?

The documents are real: Debian man pages rendered to PDF by groff's PDF device (`man -Tpdf`;
Debian package `groff`, the full one), 3 to 21 pages each, built into a cache folder and never
committed. The queries are written by hand (`omnibind/data/document_queries.tsv`): for each of 25
documents one paraphrase of a passage in the middle page and one near the end, where a single
truncated vector per document cannot see. Eight more man pages are distractors without queries.

`score` embeds every page chunk (the pages view's segments) with the space's text tower and ranks
documents three ways: by their best chunk (max), by the mean of their two best chunks, and by one
item vector (the normalised mean of all chunk vectors); it reports right-document R@1/R@5 and
whether the best chunk lies on the right page.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from omnibind.evaluate.datasets import DataMissingError

if TYPE_CHECKING:
    from omnibind.documents import Document
    from omnibind.space import Space
    from omnibind.views.chunks import Chunker

DISTRACTORS = ("dd", "fstab", "sort", "cp", "ip", "groff", "objdump", "xz")
BARS = {"doc_r1": 80.0, "page_accuracy": 70.0}  # percent, ranking by the best chunk


@dataclass(frozen=True)
class Query:
    doc: str
    position: str  # "middle" or "end"
    page: int
    evidence: str  # a few words of the passage, to find its page again
    text: str


def load_queries() -> list[Query]:
    """The hand-written queries (comment lines start with '#')."""
    path = resources.files("omnibind.data").joinpath("document_queries.tsv")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    rows = csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    return [Query(r["doc"], r["position"], int(r["page"]), r["evidence"], r["query"]) for r in rows]


def cache_dir() -> Path:
    """$OMNIBIND_CACHE/eval/documents (default ~/.cache/omnibind/eval/documents)."""
    from omnibind.backbones.onnx import cache_dir as omnibind_cache

    return omnibind_cache() / "eval" / "documents"


def build(cache: Path | None = None) -> dict[str, Path]:
    """Render every document of the set to PDF once (`man -Tpdf NAME`); name -> path."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys([q.doc for q in load_queries()] + list(DISTRACTORS)))
    out = {}
    for name in names:
        path = cache / f"{name}.pdf"
        if not path.exists() or path.stat().st_size == 0:
            _render(name, path)
        out[name] = path
    return out


def _render(name: str, path: Path) -> None:
    if shutil.which("man") is None or shutil.which("groff") is None:
        raise DataMissingError("the document eval set needs man and groff: apt-get install man-db groff")
    result = subprocess.run(["man", "-Tpdf", name], capture_output=True, timeout=120, env={**os.environ, "LC_ALL": "C.UTF-8"})
    if result.returncode != 0 or not result.stdout.startswith(b"%PDF-"):
        reason = result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise DataMissingError(f"cannot render man page {name!r} to PDF ({reason[0]}); "
                               "install the full groff package (its PDF device) and the page's package")
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(result.stdout)
    os.replace(tmp, path)


def load_documents(paths: dict[str, Path]) -> dict[str, "Document"]:
    """name -> Document, read through the ordinary input road (sniffing, the PDF reader)."""
    from omnibind.inputs import load_file

    return {name: load_file(path).payload for name, path in paths.items()}


def _squash(text: str) -> str:
    return "".join(text.split()).lower()


def answer_pages(doc: "Document", query: Query) -> set[int]:
    """The written page when it holds the query's evidence (ignoring spaces and case); else, as
    rendering may shift a passage, the pages that hold it; else the written page."""
    found = {p.number for p in doc.pages if _squash(query.evidence) in _squash(p.text)}
    return {query.page} if query.page in found or not found else found


def embed_segments(space: "Space", docs: dict[str, "Document"], cutter: "Chunker | None" = None,
                   batch_size: int = 64) -> tuple[list[str], list[int], np.ndarray]:
    """(document name, page, vector) of every page chunk of every document."""
    from omnibind.views.document import document_segments

    names, pages, texts = [], [], []
    for name, doc in docs.items():
        for segment in document_segments(doc, space, cutter):
            names.append(name)
            pages.append(int(segment.page or 0))
            texts.append(segment.text or "")
    vectors = space.embed(texts, batch_size=batch_size) if texts else np.zeros((0, space.dim), np.float32)
    return names, pages, vectors


def score(space: "Space", docs: dict[str, "Document"], queries: list[Query] | None = None,
          cutter: "Chunker | None" = None) -> dict[str, Any]:
    """Right-document R@1/R@5 (percent) by max, mean-of-top-2 and item vector, and the page
    accuracy of the best chunk; overall and by the passage's position (middle/end)."""
    queries = [q for q in (queries or load_queries()) if q.doc in docs]
    names, pages, vectors = embed_segments(space, docs, cutter)
    order = list(docs)
    owner = np.asarray([order.index(n) for n in names])
    sims = space.embed([q.text for q in queries]) @ vectors.T  # [queries, segments]
    per_doc = _doc_scores(sims, owner, len(order), vectors)
    result: dict[str, Any] = {"documents": len(docs), "queries": len(queries), "segments": len(names),
                              "pages": sum(len(d.pages) for d in docs.values())}
    for subset in ("all", "middle", "end"):
        keep = [i for i, q in enumerate(queries) if subset in ("all", q.position)]
        result[subset] = _metrics(keep, queries, order, docs, per_doc, sims, owner, pages)
    result["details"] = _details(queries, order, docs, per_doc["max"], sims, owner, pages)
    result["bars"] = {k: {"bar": v, "value": float(result["all"]["max"][k.replace("page_accuracy", "page")])}
                      for k, v in BARS.items()}
    result["pass"] = all(b["value"] >= b["bar"] for b in result["bars"].values())
    return result


def _doc_scores(sims: np.ndarray, owner: np.ndarray, n_docs: int, vectors: np.ndarray) -> dict[str, np.ndarray]:
    """[queries, documents] scores of each ranking. The item vector is the normalised mean of the
    chunk vectors, so its cosine with a unit query is mean(q . v) / |mean(v)|."""
    tables = {how: np.full((sims.shape[0], n_docs), -np.inf, dtype=np.float32) for how in ("max", "top2", "item")}
    for d in range(n_docs):
        cols = np.flatnonzero(owner == d)
        if not len(cols):
            continue
        s = np.sort(sims[:, cols], axis=1)[:, ::-1]
        tables["max"][:, d] = s[:, 0]
        tables["top2"][:, d] = s[:, :2].mean(axis=1)
        norm = float(np.linalg.norm(vectors[cols].mean(axis=0)))
        tables["item"][:, d] = sims[:, cols].mean(axis=1) / max(norm, 1e-12)
    return tables


def _metrics(keep: list[int], queries: list[Query], order: list[str], docs: dict[str, "Document"],
             per_doc: dict[str, np.ndarray], sims: np.ndarray, owner: np.ndarray, pages: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"queries": len(keep)}
    for how, table in per_doc.items():
        r1 = r5 = page = 0
        for i in keep:
            target = order.index(queries[i].doc)
            rank = int((table[i] > table[i, target]).sum())
            r1, r5 = r1 + (rank == 0), r5 + (rank < 5)
            if how == "max":
                j = int(np.argmax(sims[i]))
                page += owner[j] == target and pages[j] in answer_pages(docs[queries[i].doc], queries[i])
        n = max(len(keep), 1)
        out[how] = {"doc_r1": 100 * r1 / n, "doc_r5": 100 * r5 / n}
        if how == "max":
            out[how]["page"] = 100 * page / n
    out["page_within_right_doc"] = 100 * _page_in_doc(keep, queries, order, docs, sims, owner, pages) / max(len(keep), 1)
    return out


def _page_in_doc(keep: list[int], queries: list[Query], order: list[str], docs: dict[str, "Document"],
                 sims: np.ndarray, owner: np.ndarray, pages: list[int]) -> int:
    """Queries whose best chunk *within the right document* lies on the right page."""
    hits = 0
    for i in keep:
        cols = np.flatnonzero(owner == order.index(queries[i].doc))
        j = int(cols[np.argmax(sims[i, cols])])
        hits += pages[j] in answer_pages(docs[queries[i].doc], queries[i])
    return hits


def _details(queries: list[Query], order: list[str], docs: dict[str, "Document"], table: np.ndarray,
             sims: np.ndarray, owner: np.ndarray, pages: list[int]) -> list[dict[str, Any]]:
    """Per query: the right document's rank by best chunk, and where the best chunk was."""
    out = []
    for i, q in enumerate(queries):
        target = order.index(q.doc)
        j = int(np.argmax(sims[i]))
        out.append({"doc": q.doc, "position": q.position, "query": q.text,
                    "answer_pages": sorted(answer_pages(docs[q.doc], q)),
                    "evidence_found": any(_squash(q.evidence) in _squash(p.text) for p in docs[q.doc].pages),
                    "rank": int((table[i] > table[i, target]).sum()) + 1,
                    "best_doc": order[int(owner[j])], "best_page": pages[j]})
    return out
