"""Options several `omnibind` commands share, so that each command reads the same and cli.py stays thin."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from omnibind.device import DeviceError, configure

SpaceOpt = typer.Option(None, "--space", "-s", help="Space folder or name (default: the offline default space).")
CollectionOpt = typer.Option("default", "--collection", "-c",
                             help="Collection name (under $OMNIBIND_HOME/collections) or folder path.")
HomeOpt = typer.Option(None, "--home", help="Data folder (default: $OMNIBIND_HOME or the user data dir).")


def _runtime(kind: str) -> Callable[[Optional[str]], Optional[str]]:
    """An option callback that hands --device / --precision to omnibind.device.configure."""

    def check(value: Optional[str]) -> Optional[str]:
        if value is not None:
            try:
                configure(**{kind: value})
            except DeviceError as exc:
                raise typer.BadParameter(str(exc)) from exc
        return value

    return check


DeviceOpt = typer.Option(None, "--device", callback=_runtime("device"), help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N "
                         "(default: $OMNIBIND_DEVICE or auto).")
PrecisionOpt = typer.Option(None, "--precision", callback=_runtime("precision"), help="auto (fp32 ONNX graphs; int8 where accepted), fp32 or int8 "
                            "(default: $OMNIBIND_PRECISION or auto).")


def Flag(*names: str, help: str) -> Any:  # noqa: N802, A002 - reads like typer.Option
    """An on/off switch: `--json`, not `--json true` (no `<bool>` in the help)."""
    return typer.Option(False, *names, help=help, metavar="")


HOME: dict[str, Optional[Path]] = {"home": None}  # the global --home, set by cli.setup, read by every command
