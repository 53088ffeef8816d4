"""`omnibind serve`: the HTTP API and the search page for one or more collections
(omnibind/server/). Kept out of cli.py, which registers it; the server is imported inside the
command (CLI start-up)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from omnibind import client, render
from omnibind.cli_options import Flag, HomeOpt
from omnibind.errors import OmnibindError
from omnibind.extras import require
from omnibind.paths import META_FILE, existing_collection, omnibind_home

err = Console(stderr=True)


def serve_command(
    ctx: typer.Context,
    collection: list[str] = typer.Option([], "--collection", "-c", help="Collection to serve: name or folder path "
                                         "(repeatable; the first is the default one; none: 'default')."),
    all_: bool = Flag("--all", help="Serve every collection under the home, also those created later."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (127.0.0.1: this machine only)."),
    port: int = typer.Option(8000, help="TCP port."),
    space: Optional[str] = typer.Option(None, "--space", "-s", help="Space for a new collection."),
    root: list[Path] = typer.Option([], "--root", help="Folder the ingest endpoint may read and media are served "
                                    "from (repeatable); none: ingest over HTTP is disabled."),
    allowed_host: list[str] = typer.Option([], "--allowed-host", help="Another name clients reach the server by "
                                           "(repeatable; '*.lan', '*')."),
    max_upload_mb: int = typer.Option(50, help="Largest request body, in MiB."),
    create: bool = Flag("--create", help="Serve a new, empty collection if none has the first -c's name."),
    home: Optional[Path] = HomeOpt,
) -> None:
    """Serve the HTTP API and the search page for one or more collections (write endpoints need the token)."""
    home = _home(ctx, home)
    try:
        names = serve_names(collection, all_, create, home)
        uvicorn = require("uvicorn", "serve")
        server = require("omnibind.server", "serve")
        settings = server.ServerSettings(collection=names[0], others=names[1:], serve_all=all_, space=space,
                                         roots=list(root), home=home, host=host,
                                         allowed_hosts=list(allowed_host), max_upload_bytes=max_upload_mb * 1024 * 1024)
        token, created = server.load_token(home=settings.home)
        app_ = server.create_app(settings, token)
    except (OmnibindError, ValueError) as exc:
        err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    state = app_.state.server
    render.serve_banner(err, host, port, state.collection, token, created, server.token_path(settings.home))
    serve_more(state)

    def others() -> list[Any]:
        return [c for c in list(state.served.values()) if c is not state.collection]

    with client.advertise(state.collection, host, port, settings.home, others()) as record:  # `omnibind search` finds it
        state.on_change.append(lambda: client.readvertise(record, others()))
        uvicorn.run(app_, host=host, port=port, log_level="warning")


def _home(ctx: typer.Context, home: Optional[Path]) -> Optional[Path]:
    """The command's --home, else the global one (`omnibind --home`), else None (the default)."""
    home = home or (ctx.parent.params.get("home") if ctx.parent is not None else None)
    return Path(home).expanduser().resolve() if home else None


def serve_names(collection: list[str], all_: bool, create: bool, home: Optional[Path]) -> list[str]:
    """The collections `serve` names, the default first; each must exist (a typo is not a new
    empty collection), but the first with --create. --all without -c: 'default' if it exists,
    else the first under the home."""
    names = list(dict.fromkeys(collection))
    if not names and all_:
        root = (home or omnibind_home()) / "collections"
        found = sorted(p.name for p in root.glob("*") if (p / META_FILE).is_file()) if root.is_dir() else []
        names = ["default"] if "default" in found or not found else found[:1]
    names = names or ["default"]
    for i, name in enumerate(names):
        if i or not create:
            existing_collection(name, home)
    return names


def serve_more(state: Any) -> None:
    """Say which other collections are served, and which `--all` could not open."""
    more = [c for c in state.served.values() if c is not state.collection]
    if more:
        err.print("also serving: " + ", ".join(f"{c.name!r} ({len(c)} items)" for c in more)
                  + "  (/v1/collections/NAME/search, ...)")
    for name, why in state.skipped.items():
        err.print(f"[yellow]not served: {name}: {why}[/]")
