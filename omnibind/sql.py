"""SQL literals for LanceDB filters: one quoting rule for every module that builds a filter."""

from __future__ import annotations

from collections.abc import Iterable


def sql_string(value: str) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_list(values: Iterable[str]) -> str:
    return ", ".join(sql_string(v) for v in values)
