"""Options several `omnibind` commands share, so that each command reads the same and cli.py stays thin."""

from __future__ import annotations

from typing import Any

import typer

SpaceOpt = typer.Option(None, "--space", "-s", help="Space folder or name (default: the offline default space).")
CollectionOpt = typer.Option("default", "--collection", "-c",
                             help="Collection name (under $OMNIBIND_HOME/collections) or folder path.")
HomeOpt = typer.Option(None, "--home", help="Data folder (default: $OMNIBIND_HOME or the user data dir).")


def Flag(*names: str, help: str) -> Any:  # noqa: N802, A002 - reads like typer.Option
    """An on/off switch: `--json`, not `--json true` (no `<bool>` in the help)."""
    return typer.Option(False, *names, help=help, metavar="")
