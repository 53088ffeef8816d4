"""`omnibind export`: a collection's rows as Parquet or NumPy files for tools that do not read
LanceDB (omnibind/export.py). Kept out of cli.py, which registers it; the library is imported
inside the command (CLI start-up)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from omnibind import render
from omnibind.cli_options import HOME, CollectionOpt, Flag, HomeOpt
from omnibind.errors import OmnibindError

console = Console()
err = Console(stderr=True)
BAR_ROWS = 20_000  # a progress bar from this many rows on (smaller exports take well under a second)


def export_command(
    out: Path = typer.Argument(..., help="The Parquet file to write, or (npy) the folder for vectors.npy, "
                               "meta.parquet, ids.txt and manifest.json."),
    collection: str = CollectionOpt,
    format: str = typer.Option("parquet", "--format", "-f", help="parquet (every column, one file) or npy "  # noqa: A002
                               "(vectors.npy + meta.parquet + ids.txt, row-aligned)."),
    segments: bool = Flag("--segments", help="Export segment rows too (OCR text, speech, windows, pages), not "
                          "only one row per item."),
    modality: Optional[str] = typer.Option(None, "--modality", "-m", help="Only these modalities, e.g. "
                                           "'image' or 'image,audio'."),
    thumbnails: bool = Flag("--thumbnails", help="Keep the thumbnail JPEG column (parquet)."),
    as_json: bool = Flag("--json", help="Print what was written as JSON."),
    home: Optional[Path] = HomeOpt,
) -> None:
    """Export a collection's vectors and metadata to Parquet or NumPy files."""
    from omnibind.collection import Collection
    from omnibind.export import export

    try:
        coll = Collection.open(collection, create=False, home=_home(home))
        with _progress() as progress:
            report = export(coll, out, format, segments=segments, modality=modality,  # type: ignore[arg-type]
                            include_thumbnails=thumbnails, progress=progress)
    except (OmnibindError, OSError) as exc:
        err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(report.to_dict()))
        return
    console.print(f"wrote {report.rows} rows ({report.dim} dims) of collection {coll.name!r} as {report.format}:")
    for path in report.files:
        console.print(f"  {path}", soft_wrap=True)


def _home(home: Optional[Path]) -> Optional[Path]:
    """The command's --home, else the global one (`omnibind --home ... export`), else the default."""
    return Path(home).expanduser().resolve() if home else HOME["home"]


class _progress:
    """A progress callback that shows a bar once the export is big enough to take a while."""

    def __enter__(self) -> Any:
        self.bar: Any = None
        self.task: Any = None
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None and total >= BAR_ROWS:
            self.bar = render.progress_bar(err)
            self.bar.start()
            self.task = self.bar.add_task("exporting", total=total)
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()
