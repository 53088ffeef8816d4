"""`omnibind search`: a text, a file or a stored item as the query, the filters on typed columns
(omnibind/filters.py). Kept out of cli.py, which registers it; a running `omnibind serve` of the
collection answers text queries when one is up (omnibind/client.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from omnibind import client, render
from omnibind.cli_options import HOME, CollectionOpt, Flag, HomeOpt
from omnibind.errors import OmnibindError

console = Console()
err = Console(stderr=True)


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
    raise typer.Exit(1)


def _home(home: Optional[Path]) -> Optional[Path]:
    """The command's --home, else the global one, else the default."""
    return home.expanduser().resolve() if home else HOME["home"]


def search_command(
    query: Optional[str] = typer.Argument(None, help="Text query (or use --file or --like)."),
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="Query by a file of any modality."),
    like: Optional[str] = typer.Option(None, "--like", help="More like this: query by a stored item's id "
                                       "(its path); the item itself is left out."),
    collection: str = CollectionOpt,
    k: int = typer.Option(10, "-k", help="Number of results."),
    modality: Optional[str] = typer.Option(None, help="Only these item modalities, e.g. image,audio."),
    tag: list[str] = typer.Option([], "--tag", help="Only items with this tag (repeatable: all of them)."),
    after: Optional[str] = typer.Option(None, help="Only items created at or after: 2024-05-01, 2024, or an "
                                        "age such as 30d (EXIF/container date, else file time; UTC)."),
    before: Optional[str] = typer.Option(None, help="Only items created before this date or age."),
    path_glob: Optional[str] = typer.Option(None, "--path-glob", help="Only paths matching: '*.jpg' (name), "
                                            "'/photos/2024/**' (path)."),
    where: Optional[str] = typer.Option(None, help="SQL filter on item columns, e.g. \"size > 10000\" or "
                                        "\"width >= 1920\"."),
    mode: Optional[str] = typer.Option(None, help="hybrid (meaning, and words where they add to it: the default), "
                                       "vector (meaning only) or text (words only: names, tags, notes, "
                                       "transcripts, OCR; BM25)."),
    rerank: Optional[str] = typer.Option(None, help="Rerank the best candidates: hubness, or cross-encoder:PATH "
                                         "(a local sentence-transformers CrossEncoder folder)."),
    raw: bool = Flag("--raw", help="Rank by raw cosine instead of calibrated scores."),
    exact: bool = Flag("--exact", help="Flat scan even when an ANN index exists."),
    as_json: bool = Flag("--json", help="Print a JSON list of results, best first."),
    local: bool = Flag("--local", help="Search here even when `omnibind serve` runs for it."),
    home: Optional[Path] = HomeOpt,
) -> None:
    """Search a collection with text, a file or a stored item: any modality finds any modality."""
    from omnibind.filters import Filters

    if sum(x is not None for x in (query, file, like)) != 1:
        _fail(ValueError("give a text QUERY, --file or --like (one of them)"))
    if like is not None and mode not in (None, "vector"):
        _fail(ValueError(f"--like searches by the item's vector: --mode {mode} needs words (give a text QUERY)"))
    try:
        sql = Filters.parse(where, tag, after, before, path_glob).sql()
        if like is not None:
            coll = _search_like(collection, like, k, modality, sql, raw, exact, _home(home), rerank)
        else:  # a running `omnibind serve` of this collection answers if there is one (omnibind/client.py)
            coll = client.search(collection, file.expanduser() if file else query, k=k, modality=modality, where=sql,
                                 raw=raw, exact=exact, local=local, home=_home(home), mode=mode, rerank=rerank,
                                 loading=client.spinner(err, "loading models"))
    except (OmnibindError, ValueError) as exc:
        _fail(exc)
    if as_json:
        return print(json.dumps([h.to_dict() for h in coll.hits], indent=2))
    title = query if query is not None else file if file is not None else f"like {like}"
    console.print(render.hits_table(f"{coll.name}: {title}", coll.hits))
    console.print(render.score_footer(coll.hits))


def _search_like(collection: str, item_id: str, k: int, modality: Optional[str], where: Optional[str], raw: bool,
                 exact: bool, home: Optional[Path], rerank: Optional[str]) -> client.Results:
    """`search --like`: the stored item's own vector is the query (no model is loaded to embed it)."""
    from omnibind.collection import Collection
    from omnibind.neighbours import more_like

    coll = Collection.open(collection, create=False, home=home)
    item = item_id if item_id.startswith(("text:", "/")) or "://" in item_id else str(Path(item_id).expanduser().resolve())
    hits = more_like(coll, item if coll.get([item], ["id"]) else item_id, k=k, modality=modality, where=where,
                     calibrated=not raw, exact=True if exact else None, rerank=rerank)
    return client.Results(coll.name, hits)
