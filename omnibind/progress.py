"""Rich progress bars for long work, used only when a caller asks for them (CLI, show_progress)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


@contextmanager
def rich_bar(total: int, description: str, callback: Callable[[int], None] | None = None) -> Iterator[Callable[[int], None]]:
    """Yield `tick(n)` that advances a bar of `total` items (and forwards to `callback`)."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(description, total=total)

        def tick(n: int) -> None:
            bar.advance(task, n)
            if callback:
                callback(n)

        yield tick
