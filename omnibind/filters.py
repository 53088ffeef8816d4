"""Search filters on the typed columns (omnibind/facts.py), turned into one LanceDB SQL filter.

`--tag` (every tag given, on the `tags` list; commas separate tags too), `--after` / `--before` (on `created`: the EXIF or
container date, else the file's mtime), `--path-glob` (on the path) and `--where` (raw SQL on any
column, for the rest) combine with AND. The CLI, the HTTP API and the page build the same
`Filters`, so a filter means the same thing wherever it is typed.

Dates: `2024`, `2024-05`, `2024-05-01`, `2024-05-01T10:30[:00]` with an optional `Z` or `+02:00`
(UTC without one), or an age: `30d`, `12h`, `2w`, `1y` (ago). `after` is inclusive (created at or
after the start of the period), `before` exclusive (created before its start): `--after 2024
--before 2025` is the year 2024.

Globs: `*` any run of characters but '/', `**` any run including '/', `?` one character, `[...]`
a class. A glob without '/' matches the file name (`*.jpg`), one with '/' the whole path
(`/photos/2024/**`, or `**/holiday/*` anywhere).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from omnibind.facts import normalise_tags
from omnibind.sql import sql_string

AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([hdwy])$")
AGE_SECONDS = {"h": 3600, "d": 86400, "w": 7 * 86400, "y": 365.25 * 86400}
PERIOD = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
REGEX_META = set("\\.+*?()|[]{}^$#&-~")
MAX_GLOB = 1000


class FilterError(ValueError):
    """A filter that cannot be understood: the message says which and how to write it."""


@dataclass(frozen=True)
class Filters:
    """What to keep: items with all `tags`, created in [after, before), whose path matches
    `path_glob`, and passing `where` (SQL)."""

    where: str | None = None
    tags: tuple[str, ...] = ()
    after: float | None = None
    before: float | None = None
    path_glob: str | None = None

    @classmethod
    def parse(cls, where: str | None = None, tags: Sequence[str] | str | None = None, after: str | float | None = None,
              before: str | float | None = None, path_glob: str | None = None) -> "Filters":
        """Filters from what a person typed (CLI options, HTTP fields); FilterError when malformed."""
        if isinstance(tags, str):  # "holiday, sea" from a form field or one --tag
            tags = tags.split(",")
        try:
            clean = tuple(normalise_tags([t for t in tags or [] for t in t.split(",")]))
        except ValueError as exc:
            raise FilterError(str(exc)) from None
        if path_glob is not None and not (0 < len(path_glob) <= MAX_GLOB):
            raise FilterError(f"path glob must be 1 to {MAX_GLOB} characters")
        return cls(where.strip() or None if where else None, clean, date_seconds(after, "after"),
                   date_seconds(before, "before"), path_glob or None)

    def sql(self) -> str | None:
        """One SQL filter for `omnibind.search.search(where=...)`, or None for no filter."""
        parts = []
        if self.tags:
            parts.append(f"array_has_all(tags, [{', '.join(sql_string(t) for t in self.tags)}])")
        if self.after is not None:
            parts.append(f"created >= {self.after!r}")
        if self.before is not None:
            parts.append(f"created < {self.before!r}")
        if self.path_glob:
            parts.append(f"regexp_like(source, {sql_string(glob_regex(self.path_glob))})")
        if self.where:
            parts.append(f"({self.where})")
        return " AND ".join(parts) or None


def date_seconds(value: str | float | None, name: str = "date") -> float | None:
    """A date or an age (module docstring) as Unix seconds; FilterError naming the option."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip()
    age = AGE.match(text.lower())
    if age:
        return time.time() - float(age.group(1)) * AGE_SECONDS[age.group(2)]
    period = PERIOD.match(text)
    try:
        if period:
            year, month, day = (int(g) if g else 1 for g in period.groups())
            return dt.datetime(year, month, day, tzinfo=dt.timezone.utc).timestamp()
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        stamp = None
    if stamp is None:
        raise FilterError(f"--{name} {text[:60]!r}: give a date (2024, 2024-05, 2024-05-01, 2024-05-01T10:30, "
                          "with an optional Z or +02:00) or an age (30d, 12h, 2w, 1y)")
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)).timestamp()


def glob_regex(glob: str) -> str:
    """A path glob (module docstring) as an anchored regular expression for LanceDB's regexp_like."""
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            if glob.startswith("/", i) and out[-1] == ".*":  # '**/' also matches no folder at all
                out[-1] = "(?:.*/)?"
                i += 1
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and "]" in glob[i + 2:]:
            end = glob.index("]", i + 2)
            body = glob[i + 1:end].replace("\\", "\\\\")
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
            continue
        else:
            out.append("\\" + c if c in REGEX_META else c)
        i += 1
    body = "".join(out)
    return f"^{body}$" if "/" in glob else f"(?:^|/){body}$"

