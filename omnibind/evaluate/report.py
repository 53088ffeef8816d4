"""Evaluation reports: run the suite for several spaces, write JSON + Markdown + PNG plots.

The JSON holds everything (metrics, curves, similarity samples, provenance: omnibind version,
space fingerprints, dataset packages and versions, sizes, seed, the exact command); the Markdown
is the readable side-by-side view; the plots make the numbers visible (Recall@K per space,
Matryoshka curves, confusion matrices, matched vs unmatched similarity histograms per modality
pair: the modality gap).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from omnibind.evaluate.suite import SEED, CachedEmbedder, FeatureCaches, TaskResult, task, task_names
from omnibind.space import Space, load_space
from omnibind.version import __version__

README_BEGIN, README_END = "<!-- omnibind eval: begin -->", "<!-- omnibind eval: end -->"
Progress = Callable[[str], None]


def run(spaces: Sequence[str], tasks: Sequence[str], limit: int | None = None, cache_root: Path | None = None,
        progress: Progress | None = None, command: str | None = None) -> dict[str, Any]:
    """Every task for every space; returns the report (a JSON-ready dict)."""
    start = time.perf_counter()
    loaded: list[tuple[str, Space]] = [(ref, load_space(ref)) for ref in spaces]
    report: dict[str, Any] = {
        "omnibind_version": __version__, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command or " ".join(["omnibind", *sys.argv[1:]]), "seed": SEED, "limit": limit,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "spaces": [{"ref": ref, "name": sp.name, "fingerprint": sp.fingerprint(), "dim": sp.dim} for ref, sp in loaded],
        "tasks": {},
    }
    caches = FeatureCaches(cache_root)  # spaces with the same backbones share their features
    for ref, sp in loaded:
        embed = CachedEmbedder(sp, caches)
        for name in tasks:
            if progress:
                progress(f"{ref}: {name}")
            t0 = time.perf_counter()
            result: TaskResult = task(name)(embed, limit)
            entry = report["tasks"].setdefault(name, {"kind": result.kind, "dataset": result.dataset, "results": {}})
            entry["results"][ref] = {"metrics": result.metrics, "extra": result.extra,
                                     "seconds": round(time.perf_counter() - t0, 2)}
    report["seconds"] = round(time.perf_counter() - start, 1)
    return report


# -- markdown ---------------------------------------------------------------------------------------


def headline_rows(report: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(task, metric, {space: value}) rows: the side-by-side table."""
    refs = [s["ref"] for s in report["spaces"]]
    rows = []

    def add(task: str, label: str, fmt: Callable[[dict[str, Any]], str]) -> None:
        res = report["tasks"][task]["results"]
        rows.append((task, label, {r: fmt(res[r]["metrics"]) if r in res else "–" for r in refs}))

    for task, entry in report["tasks"].items():
        n = entry["dataset"].get("n")
        if entry["kind"] == "retrieval":
            for direction, first in next(iter(entry["results"].values()))["metrics"].items():
                if "share of en" in first:  # one row per language: R@10 and its share of English's
                    add(task, f"{direction.replace('->', '→')} R@10, % of en (n={first.get('queries', n)})",
                        lambda m, d=direction: f"{m[d]['R@10']:.1f} ({m[d]['share of en']:.1f}%)")
                    continue
                add(task, f"{direction.replace('->', '→')} R@1/5/10 (n={n})",
                    lambda m, d=direction: " / ".join(f"{m[d][k]:.1f}" for k in ("R@1", "R@5", "R@10")))
                add(task, f"{direction.replace('->', '→')} MRR / nDCG@10",
                    lambda m, d=direction: f"{m[d]['MRR']:.3f} / {m[d]['nDCG@10']:.3f}")
            curves = next(iter(entry["results"].values()))["extra"].get("matryoshka", {})
            for key in curves:
                if key.endswith("R@5"):
                    dims = [d for d, _ in curves[key] if d in (64, 128)]
                    res = entry["results"]
                    vals = {}
                    for r in refs:
                        c = dict(map(tuple, res[r]["extra"]["matryoshka"][key])) if r in res else {}
                        full = c.get(max(c)) if c else None
                        vals[r] = " / ".join(f"{c[d]:.1f} ({100 * c[d] / full:.0f}%)" for d in dims) if full else "–"
                    rows.append((task, f"{key.replace('->', '→')} at {'/'.join(map(str, dims))} dims (% of full)", vals))
        elif entry["kind"] == "classification":
            add(task, f"accuracy / balanced accuracy % (n={n})", lambda m: f"{m['accuracy']:.1f} / {m['balanced_accuracy']:.1f}")
        elif entry["kind"] == "sts":
            add(task, f"Spearman / Pearson ×100 (n={n})", lambda m: f"{m['spearman']:.1f} / {m['pearson']:.1f}")
    return rows


def results_table(report: dict[str, Any]) -> str:
    """The side-by-side Markdown table (the README's, between the eval markers)."""
    refs = [s["ref"] for s in report["spaces"]]
    lines = ["| task | metric | " + " | ".join(f"`{r}`" for r in refs) + " |", "|---|---|" + "---|" * len(refs)]
    lines += [f"| {t} | {m} | " + " | ".join(v[r] for r in refs) + " |" for t, m, v in headline_rows(report)]
    return "\n".join(lines)


def markdown(report: dict[str, Any], plots: Sequence[Path] = ()) -> str:
    """report.md: provenance, datasets, the results table, per-class accuracy, the plots inline."""
    out = [f"# omnibind evaluation — {report['created']}", "",
           f"`{report['command']}`  ", f"omnibind {report['omnibind_version']}, seed {report['seed']}, "
           f"{'first ' + str(report['limit']) + ' items per set (a smoke run), ' if report['limit'] else ''}"
           f"{report['seconds']:.0f} s on {report['machine']['cpus']} CPUs (Python {report['machine']['python']}).", "",
           "## Spaces", "", "| space | name | dim | fingerprint |", "|---|---|---:|---|"]
    out += [f"| `{s['ref']}` | {s['name']} | {s['dim']} | `{s['fingerprint'][:16]}` |" for s in report["spaces"]]
    out += ["", "## Datasets", "", "| task | data | n | source | version |", "|---|---|---:|---|---|"]
    out += [f"| {t} | {e['dataset']['name']} | {e['dataset']['n']} | {e['dataset']['source']} | {e['dataset']['version']} |"
            for t, e in report["tasks"].items()]
    out += ["", "## Results", "", results_table(report), ""]
    for t, e in report["tasks"].items():
        if e["kind"] == "classification":
            out += [f"### {t}: per-class accuracy %", "", "| class | " + " | ".join(f"`{r}`" for r in e["results"]) + " |",
                    "|---|" + "---:|" * len(e["results"])]
            classes = next(iter(e["results"].values()))["metrics"]["per_class_accuracy"]
            for c in classes:
                vals = [e["results"][r]["metrics"]["per_class_accuracy"][c] for r in e["results"]]
                out.append(f"| {c} | " + " | ".join("–" if v is None else f"{v:.1f}" for v in vals) + " |")
            out.append("")
    if plots:
        out += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(out)


def update_readme(readme: Path, report: dict[str, Any], report_dir: Path) -> None:
    """Replace the table between the README's eval markers with this report's (never by hand)."""
    text = readme.read_text("utf-8")
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{readme}: no '{README_BEGIN}' ... '{README_END}' markers to replace")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    try:
        where = report_dir.resolve().relative_to(readme.parent.resolve())
    except ValueError:
        where = report_dir
    body = (f"\n{results_table(report)}\n\nProduced by `{report['command']}` ({report['seconds']:.0f} s, "
            f"{report['created'][:10]}); full report with plots: [{where}/report.md]({where}/report.md).\n")
    readme.write_text(head + README_BEGIN + body + README_END + tail, "utf-8")


# -- plots ---------------------------------------------------------------------------------------------


def plot_all(report: dict[str, Any], out: Path) -> list[Path]:
    """Every plot the report has data for (Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    paths = [p for p in (_recall_bars(report, out), _matryoshka(report, out)) if p]
    for s in report["spaces"]:
        paths += [p for p in (_confusion(report, s["ref"], out), _similarities(report, s["ref"], out)) if p]
    return paths


def _recall_bars(report: dict[str, Any], out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    directions = [(t, d) for t, e in report["tasks"].items() if e["kind"] == "retrieval"
                  for d in next(iter(e["results"].values()))["metrics"]]
    if not directions:
        return None
    refs = [s["ref"] for s in report["spaces"]]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), sharey=True)
    x = np.arange(len(directions))
    width = 0.8 / len(refs)
    for ax, k in zip(axes, ("R@1", "R@5", "R@10")):
        for i, r in enumerate(refs):
            vals = [report["tasks"][t]["results"].get(r, {}).get("metrics", {}).get(d, {}).get(k, np.nan) for t, d in directions]
            ax.bar(x + (i - (len(refs) - 1) / 2) * width, vals, width, label=r)
        ax.set_title(f"Recall@{k[2:]}")
        ax.set_xticks(x, [f"{t}\n{d.replace('->', '→')}" for t, d in directions], rotation=35, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("recall (%)")
    axes[0].set_ylim(0, 100)
    axes[-1].legend(title="space")
    fig.suptitle("Retrieval on held-out real data, per space")
    fig.tight_layout()
    return _save(fig, out / "recall.png")


def _matryoshka(report: dict[str, Any], out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    curves = [(t, key, r, res["extra"]["matryoshka"][key]) for t, e in report["tasks"].items()
              for r, res in e["results"].items() for key in res["extra"].get("matryoshka", {})]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 5))
    keys = list(dict.fromkeys((t, key) for t, key, _, _ in curves))
    refs = list(dict.fromkeys(r for _, _, r, _ in curves))
    styles, markers = ["-", "--", ":", "-."], ["o", "s", "^", "D"]
    for t, key, r, curve in curves:
        dims, vals = zip(*curve)
        i, j = keys.index((t, key)), refs.index(r)
        ax.plot(dims, vals, color=f"C{i}", linestyle=styles[j % 4], marker=markers[j % 4],
                label=f"{t} {key.replace('->', '→')} — {r}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.set_xlabel("dimensions kept (first d, renormalised)")
    ax.set_ylabel("recall (%)")
    ax.set_title("Matryoshka: retrieval vs truncation dimension")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out / "matryoshka.png")


def _confusion(report: dict[str, Any], ref: str, out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    entry = next(((t, e) for t, e in report["tasks"].items() if e["kind"] == "classification" and ref in e["results"]), None)
    if entry is None:
        return None
    task, e = entry
    m = e["results"][ref]["metrics"]
    cm = np.asarray(m["confusion_matrix"], dtype=float)
    names = list(m["per_class_accuracy"])
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7, color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{task} zero-shot, space {ref}: accuracy {m['accuracy']:.1f}%")
    fig.colorbar(im, ax=ax, label="share of the true class")
    fig.tight_layout()
    return _save(fig, out / f"confusion-{_slug(ref)}.png")


def _similarities(report: dict[str, Any], ref: str, out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    panels = [(t, pair, s) for t, e in report["tasks"].items() if ref in e["results"]
              for pair, s in e["results"][ref]["extra"].get("similarities", {}).items()]
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, (t, pair, s) in zip(axes.flat, panels):
        bins = np.linspace(min(s["matched"] + s["unmatched"]), max(s["matched"] + s["unmatched"]), 40)
        ax.hist(s["unmatched"], bins=bins, density=True, alpha=0.55, label=f"unmatched (n={len(s['unmatched'])})")
        ax.hist(s["matched"], bins=bins, density=True, alpha=0.55, label=f"matched (n={len(s['matched'])})")
        ax.set_title(f"{t}: {pair}", fontsize=10)
        ax.set_xlabel("cosine similarity")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"Matched vs unmatched similarity per modality pair — space {ref} (the modality gap: where each pair's scores live)")
    fig.tight_layout()
    return _save(fig, out / f"similarities-{_slug(ref)}.png")


def _slug(ref: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(ref).name or ref)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(report: dict[str, Any], out: Path) -> dict[str, Path]:
    """report.json, report.md and the plots into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_all(report, out)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n", "utf-8")
    (out / "report.md").write_text(markdown(report, plots), "utf-8")
    return {"json": out / "report.json", "markdown": out / "report.md", **{p.stem: p for p in plots}}


def evaluate(spaces: Sequence[str], tasks: str | Sequence[str], out: Path | None = None, *, limit: int | None = None,
             cache_root: Path | None = None, command: str | None = None, readme: Path | None = None,
             progress: Progress | None = None) -> tuple[dict[str, Any], dict[str, Path]]:
    """`omnibind eval`: run the tasks for the spaces, write the report folder (default
    reports/<UTC date-time>/) and, with `readme`, its results table. Returns (report, files)."""
    names = task_names(tasks)
    folder = out or Path("reports") / dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    report = run(spaces, names, limit=limit, cache_root=cache_root, command=command, progress=progress)
    paths = write(report, folder)
    if readme:
        update_readme(readme, report, folder)
    return report, paths
