"""How library results look in a terminal (Rich): tables, summaries, progress bars.

The CLI parses options, calls one library function and hands the result to a function here; no
library module prints. Kept apart from cli.py so the commands read as what they do.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from omnibind.errors import InputError

SCORE_KINDS = {
    "cosine": "raw cosine (uncalibrated)",
    "strength": "match strength 0-1, one scale for every kind of item (strong >= 0.75, weak < 0.4; "
                "--json adds cosine, z and probability)",
    "bm25": "BM25 of the query's words in the item's name, tags, note or text (higher matches more; "
            "not comparable across queries)",
}
WORDS_MARK = " (words)"  # a hybrid hit whose words matched the query (`keyword_score`)


def quiet_libraries(err: Console) -> None:
    """Keep third-party chatter (progress bars, tracer warnings) off the terminal; a mislabelled
    file is reported as one yellow line. transformers is not imported here (0.5-0.8 s that most
    commands never need): it reads these variables when a backbone imports it."""
    from omnibind.errors import MislabelledInputWarning

    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' bars follow huggingface_hub's
    warnings.simplefilter("default", MislabelledInputWarning)
    warnings.showwarning = lambda message, category, *a, **k: err.print(f"[yellow]warning:[/] {message}")


def failures(err: Console, failed: Sequence[tuple[str, str]]) -> None:
    for path, reason in failed:
        err.print(f"[red]failed[/] {path}: {reason}", soft_wrap=True)


def progress_bar(console: Console, *info: str) -> Progress:
    """A bar with done/total, optional text fields (`info` names), elapsed and remaining time."""
    fields = [TextColumn(f"{{task.fields[{name}]}}") for name in info]
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), *fields,
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console)


def short(text: str, width: int = 60) -> str:
    return text if len(text) < width else text[: width - 3] + "..."


def modality_of(obj: Any) -> str:
    """What an input would be embedded as ("?" when it cannot be decoded), without warnings."""
    from omnibind.inputs import to_input

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return to_input(obj).modality
    except InputError:
        return "?"


def embed_table(objs: Sequence[Any], indices: Sequence[int], vectors: np.ndarray, space: str) -> Table:
    table = Table(title=f"{len(indices)} vectors, {vectors.shape[1]} dims, space {space}")
    for col in ("#", "input", "modality", "first dims"):
        table.add_column(col)
    for row, i in enumerate(indices):
        table.add_row(str(i), short(str(objs[i])), modality_of(objs[i]),
                      " ".join(f"{v:+.3f}" for v in vectors[row, :4]) + " ...")
    return table


def print_info(console: Console, details: dict[str, Any]) -> None:
    console.print(f"[bold]space[/] {details['name']}  dim={details['dim']}  anchor={details['anchor']}  "
                  f"format={details['format_version']}  omnibind={details['omnibind_version']}")
    table = Table()
    for col in ("modality", "backbone", "head", "weights"):
        table.add_column(col, overflow="fold")
    for modality, tower in details["towers"].items():
        head = tower["head"]
        head_text = f"{head['kind']} {head['in_dim']}->{head['out_dim']} ({head['input_key']})"
        weights = str(tower["weights"].get("weights", ""))  # "X from package P (/long/site-packages/path)"
        table.add_row(modality, tower["backbone"], head_text, re.sub(r" \(/[^)]*\)", "", weights))  # paths: --json
    video = details["video"]
    table.add_row("video", "image + audio towers",
                  f"{video['frames']} frames, weights {video['image_weight']}/{video['audio_weight']}", "-")
    console.print(table)
    for key, value in details.get("provenance", {}).items():
        shown = value if isinstance(value, str) else f"{len(value)} fields (omnibind info --json)" \
            if isinstance(value, (dict, list)) else json.dumps(value)
        console.print(f"[dim]{key}:[/] {shown}")


def hits_table(title: str, hits: Sequence[Any], root: str | None = None) -> Table:
    """Search results, best first; with `root` (the demo), a compact table of paths under it."""
    compact = root is not None
    table = Table(title=title, title_justify="left", **({"box": None, "pad_edge": False} if compact else {}))
    columns = ("#", "modality", "item", "score", "cosine") if compact else ("#", "score", "cosine", "modality", "item")
    for col in columns:
        table.add_column(col, justify="left" if col in ("modality", "item") else "right")
    for n, h in enumerate(hits, 1):
        cells = {"#": str(n), "score": f"{h.score:.2f}",
                 "cosine": f"{h.cosine:.3f}", "modality": h.modality, "item": _shown(h, root)}
        table.add_row(*(cells[c] for c in columns))
    return table


def _shown(hit: Any, root: str | None) -> str:
    return _place(hit, root) + (WORDS_MARK if hit.fields.get("keyword_score") else "")


def _place(hit: Any, root: str | None) -> str:
    shown = os.path.relpath(hit.source, root) if root and hit.source and not hit.source.startswith("<") else (hit.source or hit.id)
    segment = getattr(hit, "segment", None)
    if segment:  # where in the item the match is: "lecture.ogg 12:31–12:45: '…the mitochondria…'"
        snippet = f": {_snippet(segment['text'])}" if segment.get("text") else ""
        return f"{shown} {segment['location']}{snippet}" if segment.get("location") else f"{shown}{snippet}"
    text = hit.fields.get("text")
    if hit.modality == "text" and text:
        return f"{shown}: {text[:60]!r}" if hit.source and not hit.source.startswith("<") else repr(text[:80])
    return shown


def _snippet(text: str, width: int = 60) -> str:
    words = " ".join(text.split())
    return repr(words if len(words) <= width else words[: width - 1].rsplit(" ", 1)[0] + "…")


def score_footer(hits: Sequence[Any]) -> str:
    kinds = sorted({h.kind for h in hits})
    note = getattr(hits, "note", None)
    lines = ["[dim]score: " + "; ".join(SCORE_KINDS.get(k, k) for k in kinds) + "[/]"] if kinds else []
    if any(h.fields.get("keyword_score") for h in hits):
        lines.append(f"[dim]{WORDS_MARK.strip()}: the query's words are in the item's name, tags, note or text[/]")
    return "\n".join(lines + ([f"[yellow]{note}[/]"] if note else []))


def ingest_summary(name: str, s: dict[str, Any], renamed: Sequence[tuple[str, str]] = ()) -> str:
    moved = "".join(f"\nrenamed {os.path.relpath(old, s['root'])} -> {os.path.relpath(new, s['root'])}"
                    for old, new in renamed[:20])
    return (f"{name}: {s['added']} added, {s['updated']} updated, {s['unchanged']} unchanged, {s['removed']} removed, "
            f"{s['failed']} failed of {s['seen']} files in {s['seconds']:.1f} s"
            + (f"; {s['segments']} segments (words, pages, moments)" if s.get("segments") else "")
            + (f"; {s['notes']} view notes" if s.get("notes") else "")
            + (f"; failures logged to {s['log']}" if s["log"] else "")
            + (f"; {s['missing']} items' files are gone (kept: --keep-missing)" if s.get("missing") else "") + moved)


def collections_table(rows: Sequence[dict[str, Any]]) -> Table:
    """Collections of one home share a folder: the title names it once and the path column is
    relative to it, so the paths are not cut at 80 columns."""
    root = os.path.commonpath([r["path"] for r in rows]) if len(rows) > 1 else \
        (os.path.dirname(rows[0]["path"]) if rows else "")
    table = Table(title=f"collections in {root}" if root else "collections", title_justify="left")
    for col in ("name", "items", "modalities", "space", "index", "folder"):
        table.add_column(col, overflow="fold")
    for r in rows:
        mods = ", ".join(f"{m} {n}" for m, n in r.get("modalities", {}).items())
        table.add_row(r["name"], str(r.get("items", "?")), mods or r.get("error", ""), str(r.get("space", "")),
                      str(r.get("index") or "exact"), os.path.relpath(r["path"], root) if root else r["path"])
    return table


def classify_table(results: Sequence[Any], top: int) -> Table:
    """One row per input: its file name (the paths of one folder share a prefix that would fill
    the column at 80 columns), the label, how sure (margin over the runner-up) and the top labels."""
    table = Table(title="zero-shot classification")
    for col in ("input", "label", "sure?", "top labels"):
        table.add_column(col, overflow="fold")
    names = [os.path.basename(r.source) if not r.source.startswith("<") else r.source for r in results]
    if len(set(names)) < len(names):  # two files of one name in different folders: show the paths
        names = [r.source for r in results]
    for name, r in zip(names, results):
        word = {"clear": "clear", "likely": "likely", "unsure": "[yellow]unsure[/]"}[r.confidence]
        table.add_row(name, r.label, f"{word} {r.margin:+.2f}",
                      ", ".join(f"{label} {p:.2f}" for label, p in r.ranked()[:top]))
    return table


def print_demo(console: Console, run: Any, folder: Path, collection: str, matrix: bool, space: str) -> None:
    s = run.ingest.summary()
    coll = run.collection
    console.print(f"collection [bold]{coll.name}[/] ({coll.path}): {len(coll)} items; this run {s['added']} added, "
                  f"{s['updated']} updated, {s['unchanged']} unchanged, {s['failed']} failed, {s['seconds']:.1f} s")
    root = os.path.abspath(folder)
    for label, hits in run.searches:
        console.print(hits_table(f"search {label}", hits, root))
    console.print(score_footer([h for _, hits in run.searches for h in hits]))
    if matrix:
        console.print(caption_matrix(run.examples, run.ranks, space))
    examples, report = run.examples, run.ranks
    counts = {m: sum(ex.modality == m for ex in examples) for m in report.by_modality}
    for modality, (overall, within) in report.by_modality.items():
        console.print(f"{modality:>6}: {overall}/{counts[modality]} captions rank their own media first among all "
                      f"{len(examples)}; {within}/{counts[modality]} among the {counts[modality]} {modality} items")
    console.print(f"[bold]total: {report.hits}/{len(examples)} captions rank their own media first among all "
                  f"{len(examples)} (chance: {report.chance:.0f})[/]")
    console.print(f"[dim]try: omnibind search -c {collection} \"a dog barking\"   ·   omnibind search -c {collection} "
                  f"--file {folder / 'orange.jpg'}[/]")


def caption_matrix(examples: Sequence[Any], report: Any, space: str) -> Table:
    table = Table(title=f"Each caption against all {len(examples)} media — space {space}")
    for col, justify in (("caption", "left"), ("its media", "left"), ("rank", "right"), ("score", "right"),
                         ("best match", "left"), ("score", "right")):
        table.add_column(col, justify=justify, overflow="fold")
    for i, ex in enumerate(examples):
        row = report.sims[i]
        best = int(np.argmax(row))
        rank = int((row > row[i]).sum()) + 1
        table.add_row(ex.caption, f"{ex.modality} {ex.path.name}", "[bold green]1[/]" if rank == 1 else str(rank),
                      f"{row[i]:.3f}", f"{examples[best].modality} {examples[best].path.name}", f"{row[best]:.3f}")
    return table


def print_bind(console: Console, err: Console, result: Any, tower: str, out: Path) -> None:
    for row in result.skipped:
        err.print(f"[yellow]skipped[/] {row.manifest}:{row}" if getattr(row, "manifest", None) else f"[yellow]skipped[/] {row}",
                  soft_wrap=True)
    m = result.metrics
    console.print(f"bound {tower} on {m['train']} pairs ({m['replay']} replay, {m['held_out']} held out, "
                  f"{len(result.skipped)} skipped), best epoch {m['best_epoch']}")
    table = bind_table(m)
    if table is not None:
        console.print(table)
    refit = m.get("calibration_refit") or {}
    console.print(f"calibration refit on the {m['held_out']} held-out pairs: " +
                  ", ".join(f"{k} P = sigmoid({a:.2f} z {b:+.2f})" for k, (a, b, *_) in refit.items())
                  if refit else f"calibration: too few held-out pairs to refit the {tower} pairs; they are left "
                  "uncalibrated (search ranks them on z-scores)", soft_wrap=True)
    console.print(f"wrote {out}")


def serve_banner(err: Console, host: str, port: int, collection: Any, token: str, created: bool, saved: Path) -> None:
    err.print(f"[bold]write token (new, saved in {saved}):[/] {token}" if created
              else f"write token: $OMNIBIND_TOKEN or the one saved in {saved}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]listening on {host}: anyone who can reach it can search; writes still need the token[/]")
    err.print(f"omnibind: collection {collection.name!r} ({len(collection)} items) on "
              f"http://{host}:{port}/  (API docs: /docs)")


def bind_table(metrics: dict[str, Any]) -> Table | None:
    """Held-out recall before and after binding (None when nothing was held out)."""
    if not metrics.get("held_out_trained"):
        return None
    table = Table(title="held-out pairs (never trained on)")
    for col, justify in (("metric", "left"), ("before", "right"), ("after", "right")):
        table.add_column(col, justify=justify)
    for key in metrics["held_out_trained"]:
        table.add_row(key.removeprefix("val_"), f"{metrics['held_out_bridge'][key]:.1f}",
                      f"{metrics['held_out_trained'][key]:.1f}")
    return table


def sweep_table(rows: Sequence[dict[str, float]], a: str, b: str) -> Table:
    table = Table(title=f"merge sweep: {a} (alpha=0) -> {b} (alpha=1)")
    for col in rows[0]:
        table.add_column(col.replace("/", "\n"), justify="right")
    for row in rows:
        table.add_row(*(f"{v:g}" if k == "alpha" else f"{v:.2f}" for k, v in row.items()))
    return table
