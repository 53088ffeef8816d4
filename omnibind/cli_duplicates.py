"""`omnibind duplicates`: exact and near-copies in a collection, each group with the item to keep
(omnibind/duplicates.py). Kept out of cli.py, which registers it; it reports and never deletes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from omnibind.cli_options import HOME, CollectionOpt, Flag, HomeOpt
from omnibind.errors import OmnibindError

console = Console()
err = Console(stderr=True)


def duplicates_command(
    collection: str = CollectionOpt,
    threshold: Optional[float] = typer.Option(None, "--threshold", "-t", help="Similarity a near-copy needs "
                                              "(pictures: thumbnail similarity, default 0.95; sounds and notes: "
                                              "vector cosine, 0.99 and 0.97). Higher: fewer, surer groups."),
    modality: Optional[str] = typer.Option(None, help="Only these modalities, e.g. image,video."),
    as_json: bool = Flag("--json", help="Print the groups as JSON."),
    home: Optional[Path] = HomeOpt,
) -> None:
    """List duplicates: the same file stored twice, and near-copies (resized, re-encoded, cropped,
    converted), each group with a suggested item to keep. Reports only: nothing is deleted."""
    from omnibind.collection import Collection
    from omnibind.duplicates import find_duplicates

    try:
        coll = Collection.open(collection, create=False, home=home.expanduser().resolve() if home else HOME["home"])
        groups = find_duplicates(coll, threshold=threshold, modality=modality)
    except (OmnibindError, ValueError) as exc:
        err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps([g.to_dict() for g in groups], indent=2))
        return
    for n, group in enumerate(groups, 1):
        console.print(group_table(n, group))
    console.print(summary(groups))


def group_table(n: int, group: object) -> Table:
    """One group: the keep item first and marked, each member's source (after the folder the group
    shares, named in the title), similarity to the keep, size, resolution."""
    import os

    from omnibind.render import short

    sources = [m.source or m.id for m in group.members]
    folder = os.path.commonpath([os.path.dirname(s) for s in sources]) if all(s.startswith("/") for s in sources) else ""
    where = f" in {folder if len(folder) <= 30 else '...' + folder[-27:]}/" if len(folder) > 1 else ""
    table = Table(title=f"{n}. {group.kind} {group.modality}{where}: keep ({group.reason})", title_justify="left",
                  width=min(console.width, 80))
    table.add_column("", width=4)
    table.add_column("source", overflow="fold", ratio=1)
    table.add_column("sim", justify="right", width=5)
    table.add_column("size", justify="right", width=8)
    table.add_column("pixels", justify="right", width=9)
    for m in group.members:
        resolution = f"{m.width}x{m.height}" if m.width and m.height else ""
        shown = os.path.relpath(m.source, folder) if where and m.source else m.source or m.id
        table.add_row("keep" if m.id == group.keep else "", short(shown, 200), f"{m.similarity:.3f}",
                      human_bytes(m.size), resolution)
    return table


def summary(groups: list) -> str:
    removable = sum(len(g.removable) for g in groups)
    reclaim = sum(g.reclaimable for g in groups)
    if not groups:
        return "no duplicates found"
    return (f"{len(groups)} group{'s' * (len(groups) != 1)}, {removable} removable item{'s' * (removable != 1)}, "
            f"{human_bytes(reclaim) or '0 B'} reclaimable (nothing was deleted)")


def human_bytes(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
