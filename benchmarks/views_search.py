"""End to end: the eval sets through the real product path (ingest with the default views, search).

    OMP_NUM_THREADS=1 python benchmarks/views_search.py [--sets documents,ocr,moments] [--limit N]
        [--json out.json] [--markdown docs/results/views-search.md] [--ocr-dir DIR]

Each set's files are linked (or copied) into a temporary folder, ingested into a fresh collection
(`Collection.open(tmp, "default")`, `ingest(..., views=omnibind.views.DEFAULT)`) and every query
goes through `omnibind.search.search(collection, text, k=10)`; nothing is embedded by hand.

1. documents (omnibind/evaluate/documents.py: 25 man-page PDFs with queries + 8 distractors, 50
   queries): right-document R@1/R@5/MRR@10; the right document's hit names a page
   (`Hit.segment["page"]`): right when it is one of the query's answer pages
   (`documents.answer_pages`: the written page, or the page that holds the passage when rendering
   moved it); over all queries and given the right document at rank 1; by middle / end.
2. text in images (omnibind/evaluate/text_images.py): caption -> image R@1/5/10, one collection per
   half; the test half is the number, the tune half (where the OCR weight was chosen) is shown apart.
3. moments (omnibind/evaluate/moments.py, test split): each caption searched among its recordings'
   modality; a hit is the top hit being the right recording and the centre of its segment
   ([start, end]) lying inside the caption's clip.

Item-ranking fusions, computed from the collection's rows (no library change): (a) the library's
(max over an item's rows, calibrated: recomputed here and checked against `search`), (b) max over
segment rows only (an item without segments: its item row), (c) mean of the two best rows. Rows
are calibrated as `search` does (per calibration group, the space's pair fit when it has one).

`--limit N` keeps at most N queries per set (and only the files they need); for a smoke run.
Nothing here is tuned: the sets' bars are reported as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

FUSIONS = ("library", "seg_max", "top2_mean")
BARS = {"doc_r1": 80.0, "page": 70.0, "ocr_r1": 85.0, "moment_hit": 70.0}
SETS = ("documents", "ocr", "moments")
MARK_BEGIN, MARK_END = "<!-- views-search: begin -->", "<!-- views-search: end -->"


# -- the product path ------------------------------------------------------------------------------


def stage(files: list[Path], folder: Path) -> dict[str, Path]:
    """Hard-link (else copy) files into `folder` under their own names; name -> staged path."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for f in files:
        dest = folder / f.name
        if dest.name in out:
            raise ValueError(f"two files named {dest.name}")
        try:
            os.link(f, dest)
        except OSError:
            shutil.copy2(f, dest)
        out[dest.name] = dest
    return out


def ingest_fresh(files: list[Path], tmp: Path) -> tuple[Any, dict[str, Any]]:
    """A fresh collection in tmp holding `files`, ingested with the default views; (collection, stats)."""
    from omnibind import views
    from omnibind.collection import Collection
    from omnibind.ingest import ingest

    stage(files, tmp / "files")
    collection = Collection.open(tmp / "collection", "default")
    report = ingest(collection, tmp / "files", views=views.DEFAULT)
    if report.failed:
        print(f"  ingest failures: {report.failed[:3]}", file=sys.stderr)
    stats = {"items": report.added, "segments": report.segments, "failed": len(report.failed),
             "notes": len(report.notes), "seconds": round(report.seconds, 2),
             "items_per_s": round(report.added / max(report.seconds, 1e-9), 3), "views": list(views.DEFAULT)}
    return collection, stats


def name_of(hit: Any) -> str:
    return Path(hit.source or hit.id).name


# -- fusions from the rows -------------------------------------------------------------------------


@dataclass
class Rows:
    """The rows of one modality of a collection: which item each belongs to, kind, location, vector."""

    names: list[str]  # item file names, by item number
    item: np.ndarray  # item number of each row
    is_item: np.ndarray  # the item's own row
    group: np.ndarray  # calibration group of each row
    start: np.ndarray
    end: np.ndarray
    page: np.ndarray
    vectors: np.ndarray


def load_rows(collection: Any, modality: str) -> Rows:
    from omnibind.views.embed import calibration_group

    t = collection.column("id", "item", "kind", "modality", "start", "end", "page", "vector",
                          where=f"modality = '{modality}'")
    items = t.column("item").to_pylist()
    kinds = t.column("kind").to_pylist()
    order = list(dict.fromkeys(items))
    code = {k: n for n, k in enumerate(order)}

    def floats(name: str) -> np.ndarray:
        return np.array([np.nan if v is None else float(v) for v in t.column(name).to_pylist()])

    vectors = np.asarray(t.column("vector").to_pylist(), dtype=np.float32).reshape(len(items), -1)
    return Rows([Path(i).name for i in order], np.array([code[i] for i in items]), np.array([k == "item" for k in kinds]),
                np.array([calibration_group(modality, k) for k in kinds], dtype=object),
                floats("start"), floats("end"), floats("page"), vectors)


def row_keys(collection: Any, rows: Rows, q: np.ndarray, modality: str) -> np.ndarray:
    """Each row's ranking key as `search` computes it: z against its calibration group's sample,
    then the logit of the space's pair fit when every group has one; raw cosine when a group's
    sample is too small."""
    from omnibind.search import MIN_SAMPLE, calibrate, pair_calibration

    samples = collection.calibration.samples()
    cos = rows.vectors @ q
    groups = sorted(set(rows.group.tolist()))
    if any(len(samples.get(g, ())) < MIN_SAMPLE for g in groups):
        return cos.astype(np.float64)
    pairs = {g: pair_calibration(collection.space, "text", g) for g in groups}
    keys = cos.astype(np.float64)
    for g in groups:
        mask = rows.group == g
        keys[mask] = calibrate(q, cos[mask], samples.get(g))
        if all(pairs.values()):
            a, b = pairs[g]  # type: ignore[misc]
            keys[mask] = a * keys[mask] + b
    return keys


def fused(rows: Rows, keys: np.ndarray) -> dict[str, tuple[list[int], dict[int, int]]]:
    """Per fusion: items best first, and each item's best segment row (its location)."""
    scores = {f: np.full(len(rows.names), -np.inf) for f in FUSIONS}
    where: dict[int, int] = {}
    for i in range(len(rows.names)):
        mine = np.flatnonzero(rows.item == i)
        segs = mine[~rows.is_item[mine]]
        k = np.sort(keys[mine])[::-1]
        scores["library"][i] = k[0]
        scores["seg_max"][i] = keys[segs].max() if len(segs) else k[0]
        scores["top2_mean"][i] = k[:2].mean()
        if len(segs):
            where[i] = int(segs[np.argmax(keys[segs])])
    return {f: ([int(j) for j in np.argsort(-s, kind="stable")], where) for f, s in scores.items()}


def rank_of(order: list[int], right: int) -> int | None:
    """1-based rank of item `right` in `order`, None past 10."""
    pos = order.index(right) + 1 if right in order else None
    return pos if pos is not None and pos <= 10 else None


def recalls(ranks: list[int | None], ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    n = max(1, len(ranks))
    out = {f"r{k}": 100 * sum(1 for r in ranks if r is not None and r <= k) / n for k in ks}
    out["mrr"] = 100 * sum(1 / r for r in ranks if r is not None) / n
    return out


def query_fusions(collection: Any, rows: Rows, text: str, modality: str) -> dict[str, tuple[list[int], dict[int, int]]]:
    q = collection.space.embed([text])[0]
    return fused(rows, row_keys(collection, rows, q, modality))


# -- 1. documents ----------------------------------------------------------------------------------


def run_documents(tmp: Path, limit: int | None) -> dict[str, Any]:
    from omnibind.evaluate import documents as dd
    from omnibind.search import search

    paths = dd.build()
    queries = dd.load_queries()[:limit] if limit else dd.load_queries()
    if limit:
        keep = {q.doc for q in queries} | set(dd.DISTRACTORS[:2])
        paths = {n: p for n, p in paths.items() if n in keep}
    docs = dd.load_documents(paths)
    collection, stats = ingest_fresh(list(paths.values()), tmp)
    rows = load_rows(collection, "document")
    out = []
    for q in queries:
        want, answer = f"{q.doc}.pdf", dd.answer_pages(docs[q.doc], q)
        hits = search(collection, q.text, k=10)
        names = [name_of(h) for h in hits]
        rank = names.index(want) + 1 if want in names else None
        seg = hits[rank - 1].segment if rank else None
        rec: dict[str, Any] = {"doc": q.doc, "position": q.position, "written": q.page, "answer": sorted(answer),
                               "search": {"rank": rank, "page": seg.get("page") if seg else None},
                               "top": names[0] if names else None, "score_kind": hits[0].kind if hits else None}
        right = rows.names.index(want)
        for f, (order, where) in query_fusions(collection, rows, q.text, "document").items():
            page = rows.page[where[right]] if right in where else np.nan
            rec[f] = {"rank": rank_of(order, right), "page": None if np.isnan(page) else int(page),
                      "top": rows.names[order[0]]}
        out.append(rec)
    return {"ingest": stats, "documents": len(paths), "queries": out, "summary": summarize_documents(out)}


def summarize_documents(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per subset (all / middle / end) and method: R@1, R@5, MRR, right page (all; given R@1)."""
    out: dict[str, Any] = {}
    for subset in ("all", "middle", "end"):
        mine = [r for r in recs if subset in ("all", r["position"])]
        out[subset] = {}
        for m in ("search", *FUSIONS):
            ranks = [r[m]["rank"] for r in mine]
            page_ok = [r[m]["rank"] is not None and r[m]["page"] in r["answer"] for r in mine]
            strict = [r[m]["rank"] is not None and r[m]["page"] == r["written"] for r in mine]
            first = [ok for ok, rank in zip(page_ok, ranks) if rank == 1]
            out[subset][m] = {**recalls(ranks, (1, 5)), "n": len(mine),
                              "page": 100 * sum(page_ok) / max(1, len(mine)),
                              "page_written": 100 * sum(strict) / max(1, len(mine)),
                              "page_given_r1": 100 * sum(first) / max(1, len(first))}
    out["library_agrees"] = 100 * sum(r["library"]["top"] == r["top"] for r in recs) / max(1, len(recs))
    return out


# -- 2. text in images -----------------------------------------------------------------------------


def run_ocr(tmp: Path, limit: int | None, ocr_dir: Path | None) -> dict[str, Any]:
    from omnibind.evaluate import text_images as ti
    from omnibind.search import search

    items = ti.build(ocr_dir)
    out: dict[str, Any] = {}
    for half in ("test", "tune"):
        mine = [it for it in items if it.half == half][: limit or None]
        collection, stats = ingest_fresh([it.image for it in mine], tmp / half)
        rows = load_rows(collection, "image")
        ranks: dict[str, list[int | None]] = {m: [] for m in ("search", *FUSIONS)}
        agree, kinds = 0, set()
        for it in mine:
            hits = search(collection, it.caption, k=10)
            kinds.update(h.kind for h in hits)
            names = [name_of(h) for h in hits]
            ranks["search"].append(names.index(it.image.name) + 1 if it.image.name in names else None)
            right = rows.names.index(it.image.name)
            for f, (order, _) in query_fusions(collection, rows, it.caption, "image").items():
                ranks[f].append(rank_of(order, right))
                agree += f == "library" and bool(names) and rows.names[order[0]] == names[0]
        out[half] = {"ingest": stats, "queries": len(mine), **{m: recalls(r) for m, r in ranks.items()},
                     "library_agrees": 100 * agree / max(1, len(mine)), "score_kinds": sorted(kinds)}
    return out


# -- 3. moments ------------------------------------------------------------------------------------


def centre(start: Any, end: Any) -> float | None:
    if start is None or (isinstance(start, float) and np.isnan(start)):
        return None
    return float(start) if end is None or (isinstance(end, float) and np.isnan(end)) else (float(start) + float(end)) / 2


def run_moments(tmp: Path, limit: int | None) -> dict[str, Any]:
    from omnibind.evaluate import moments as mm

    audio, video = mm.build_audio("test"), mm.build_video("test")
    if limit:
        audio, video = (g[: max(1, -(-limit // max(1, len(g[0].parts))))] for g in (audio, video))
    collection, stats = ingest_fresh([r.path for r in audio + video], tmp)
    out: dict[str, Any] = {"ingest": stats}
    for modality, group in (("audio", audio), ("video", video)):
        out[modality] = moments_group(collection, group, modality, limit)
    recs = out["audio"]["queries"] + out["video"]["queries"]
    out["all"] = summarize_moments(recs)
    return out


def moments_group(collection: Any, group: list[Any], modality: str, limit: int | None) -> dict[str, Any]:
    from omnibind.search import search

    rows = load_rows(collection, modality)
    parts = [(r, p) for r in group for p in r.parts][: limit or None]
    recs = []
    for rec, part in parts:
        hits = search(collection, part.caption, k=10, modality=modality)
        seg = hits[0].segment if hits else None
        t = centre(seg.get("start"), seg.get("end")) if seg else None
        row = {"recording": rec.path.name, "clip": [part.start, part.end], "caption": part.caption,
               "search": {"top": name_of(hits[0]) if hits else None, "time": t,
                          "kind": seg.get("kind") if seg else None, "score_kind": hits[0].kind if hits else None}}
        for f, (order, where) in query_fusions(collection, rows, part.caption, modality).items():
            top = order[0]
            at = centre(rows.start[where[top]], rows.end[where[top]]) if top in where else None
            row[f] = {"top": rows.names[top], "time": at}
        for m in ("search", *FUSIONS):
            row[m]["right_recording"] = row[m]["top"] == rec.path.name
            row[m]["hit"] = row[m]["right_recording"] and row[m]["time"] is not None and part.start <= row[m]["time"] < part.end
        recs.append(row)
    return {"queries": recs, "summary": summarize_moments(recs)}


def summarize_moments(recs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(recs)}
    for m in ("search", *FUSIONS):
        hit = sum(r[m]["hit"] for r in recs)
        right = sum(r[m]["right_recording"] for r in recs)
        out[m] = {"hit": 100 * hit / max(1, len(recs)), "right_recording": 100 * right / max(1, len(recs)),
                  "clip_given_recording": 100 * hit / max(1, right),
                  "located": 100 * sum(r[m]["time"] is not None for r in recs) / max(1, len(recs))}
    out["library_agrees"] = 100 * sum(r["library"]["top"] == r["search"]["top"] for r in recs) / max(1, len(recs))
    return out


# -- report ----------------------------------------------------------------------------------------


def table_rows(res: dict[str, Any]) -> list[tuple[str, dict[str, float], float | None]]:
    """(label, {method: value}, bar) for every reported figure."""
    out: list[tuple[str, dict[str, float], float | None]] = []
    methods = ("search", *FUSIONS)
    if "documents" in res:
        s = res["documents"]["summary"]
        for subset in ("all", "middle", "end"):
            tag = "docs" if subset == "all" else f"docs {subset}"
            out.append((f"{tag}: doc R@1", {m: s[subset][m]["r1"] for m in methods}, BARS["doc_r1"] if subset == "all" else None))
            if subset == "all":
                out.append((f"{tag}: doc R@5", {m: s[subset][m]["r5"] for m in methods}, None))
                out.append((f"{tag}: doc MRR@10", {m: s[subset][m]["mrr"] for m in methods}, None))
            out.append((f"{tag}: right page", {m: s[subset][m]["page"] for m in methods}, BARS["page"] if subset == "all" else None))
            out.append((f"{tag}: page given doc@1", {m: s[subset][m]["page_given_r1"] for m in methods}, None))
    if "ocr" in res:
        for half in ("test", "tune"):
            for k in ("r1", "r5", "r10"):
                bar = BARS["ocr_r1"] if (half, k) == ("test", "r1") else None
                out.append((f"ocr {half}: caption->image {k.upper()}", {m: res["ocr"][half][m][k] for m in methods}, bar))
    if "moments" in res:
        for group in ("audio", "video", "all"):
            s = res["moments"][group] if group == "all" else res["moments"][group]["summary"]
            bar = BARS["moment_hit"] if group == "all" else None
            out.append((f"moments {group}: hit", {m: s[m]["hit"] for m in methods}, bar))
            out.append((f"moments {group}: right recording", {m: s[m]["right_recording"] for m in methods}, None))
            out.append((f"moments {group}: clip given recording", {m: s[m]["clip_given_recording"] for m in methods}, None))
    return out


def ingest_rows(res: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    if "documents" in res:
        out.append(("documents", res["documents"]["ingest"]))
    if "ocr" in res:
        out += [(f"ocr {h}", res["ocr"][h]["ingest"]) for h in ("test", "tune")]
    if "moments" in res:
        out.append(("moments", res["moments"]["ingest"]))
    return out


def text_table(res: dict[str, Any]) -> str:
    head = f"{'measure (%)':<36}{'search':>8}{'(a)':>7}{'(b)':>7}{'(c)':>7}{'bar':>6}{'pass':>6}"
    lines = [head, "-" * len(head)]
    for label, vals, bar in table_rows(res):
        ok = "" if bar is None else ("yes" if vals["search"] >= bar else "NO")
        lines.append(f"{label:<36}{vals['search']:>8.1f}{vals['library']:>7.1f}{vals['seg_max']:>7.1f}"
                     f"{vals['top2_mean']:>7.1f}{'' if bar is None else f'{bar:.0f}':>6}{ok:>6}")
    lines += ["", f"{'ingest':<14}{'items':>7}{'segments':>10}{'seconds':>9}{'items/s':>9}{'failed':>8}"]
    for name, st in ingest_rows(res):
        lines.append(f"{name:<14}{st['items']:>7}{st['segments']:>10}{st['seconds']:>9.1f}{st['items_per_s']:>9.2f}{st['failed']:>8}")
    return "\n".join(lines)


def markdown(res: dict[str, Any], command: str) -> str:
    lines = [MARK_BEGIN, f"Command: `{command}`", "",
             "| measure (%) | search (product) | (a) library, recomputed | (b) max of segments | (c) mean of top 2 | bar | pass |",
             "|---|---|---|---|---|---|---|"]
    for label, v, bar in table_rows(res):
        ok = "" if bar is None else ("yes" if v["search"] >= bar else "**no**")
        lines.append(f"| {label} | {v['search']:.1f} | {v['library']:.1f} | {v['seg_max']:.1f} | {v['top2_mean']:.1f} "
                     f"| {'' if bar is None else f'{bar:.0f}'} | {ok} |")
    lines += ["", "| ingest | items | segment rows | seconds | items/s | failed |", "|---|---|---|---|---|---|"]
    lines += [f"| {n} | {s['items']} | {s['segments']} | {s['seconds']:.1f} | {s['items_per_s']:.2f} | {s['failed']} |"
              for n, s in ingest_rows(res)]
    agree = {k: v for k, v in agreements(res).items()}
    lines += ["", "Top-1 agreement of (a) recomputed with `search`: "
              + ", ".join(f"{k} {v:.0f}%" for k, v in agree.items()), MARK_END]
    return "\n".join(lines)


def agreements(res: dict[str, Any]) -> dict[str, float]:
    out = {}
    if "documents" in res:
        out["documents"] = res["documents"]["summary"]["library_agrees"]
    if "ocr" in res:
        out.update({f"ocr {h}": res["ocr"][h]["library_agrees"] for h in ("test", "tune")})
    if "moments" in res:
        out["moments"] = res["moments"]["all"]["library_agrees"]
    return out


def write_markdown(path: Path, block: str) -> None:
    """Replace the block between the markers (keeping any commentary around it), or append it."""
    old = path.read_text("utf-8") if path.exists() else "# Views through search, end to end\n\n"
    if MARK_BEGIN in old and MARK_END in old:
        head, rest = old.split(MARK_BEGIN, 1)
        new = head + block + rest.split(MARK_END, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(new, "utf-8")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sets", default=",".join(SETS), help="comma-separated: documents,ocr,moments")
    p.add_argument("--limit", type=int, default=None, help="at most N queries per set (smoke run)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--markdown", type=Path, default=None, help="write the tables between markers in this file")
    p.add_argument("--ocr-dir", type=Path, default=None, help="text-in-images cache folder (default: its own)")
    args = p.parse_args(argv)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    if unknown := [s for s in sets if s not in SETS]:
        p.error(f"unknown set {unknown[0]!r}: choose from {', '.join(SETS)}")
    res: dict[str, Any] = {"threads": os.environ.get("OMP_NUM_THREADS"), "limit": args.limit}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="views-search-") as tmp:
        for name in sets:
            t0 = time.perf_counter()
            print(f"{name} ...", file=sys.stderr, flush=True)
            if name == "documents":
                res[name] = run_documents(Path(tmp) / name, args.limit)
            elif name == "ocr":
                res[name] = run_ocr(Path(tmp) / name, args.limit, args.ocr_dir)
            else:
                res[name] = run_moments(Path(tmp) / name, args.limit)
            res[name]["wall_seconds"] = round(time.perf_counter() - t0, 1)
    res["wall_seconds"] = round(time.perf_counter() - start, 1)
    command = "OMP_NUM_THREADS=1 python benchmarks/views_search.py " + " ".join(argv if argv is not None else sys.argv[1:])
    res["command"] = command
    print(text_table(res))
    print("(a) library fusion recomputed, (b) max over segments, (c) mean of top-2 rows")
    print("top-1 agreement of (a) with search: " + ", ".join(f"{k} {v:.0f}%" for k, v in agreements(res).items()))
    print(f"wall time: {res['wall_seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str), "utf-8")
    if args.markdown:
        write_markdown(args.markdown, markdown(res, command))
    return res


if __name__ == "__main__":
    main()
