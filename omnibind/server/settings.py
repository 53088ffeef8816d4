"""Server settings and the write token: secure by default.

The server binds 127.0.0.1 unless told otherwise; write endpoints (ingest, delete) need a bearer
token: `OMNIBIND_TOKEN`, or one generated on first start and kept in `<home>/server-token`
(mode 0600) so that a restart does not invalidate clients. Ingest paths must resolve, symlinks
followed, inside one of the configured roots.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from omnibind.collection import omnibind_home

TOKEN_ENV = "OMNIBIND_TOKEN"
TOKEN_FILE = "server-token"


@dataclass
class ServerSettings:
    collection: str = "default"
    space: str | None = None  # a new collection's space; an existing one uses its own
    home: Path | None = None  # where collections live; None: omnibind_home() ($OMNIBIND_HOME or the user data dir)
    roots: list[Path] = field(default_factory=list)  # where ingest may read; empty: ingest disabled
    token: str | None = None  # None: from the environment or the token file (created if missing)
    max_upload_bytes: int = 50 * 1024 * 1024  # per request body
    max_files: int = 8  # per request
    max_k: int = 100
    max_texts: int = 256  # per embed / classify request

    def __post_init__(self) -> None:
        self.roots = [Path(r).expanduser().resolve() for r in self.roots]
        if self.home is not None:
            self.home = Path(self.home).expanduser().resolve()


def token_path(home: Path | None = None) -> Path:
    """Where the server's write token is saved (mode 0600)."""
    return (home or omnibind_home()) / TOKEN_FILE


def load_token(explicit: str | None = None, home: Path | None = None) -> tuple[str, bool]:
    """(token, created): the explicit one, $OMNIBIND_TOKEN, the saved one, or a new saved one."""
    if explicit:
        return explicit, False
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env, False
    path = token_path(home)
    if path.exists():
        saved = path.read_text("utf-8").strip()
        if saved:
            return saved, False
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token, True


def confine(path: str, roots: list[Path]) -> Path:
    """The real path of `path` if it lies inside a root (after resolving `..` and symlinks),
    else PermissionError naming why."""
    if not roots:
        raise PermissionError("ingest is disabled: start the server with --root DIR to allow folders under DIR")
    if not path or "\x00" in path:
        raise PermissionError("empty or invalid path")
    real = Path(path).expanduser().resolve()
    for root in roots:
        if real == root or root in real.parents:
            return real
    raise PermissionError(f"{path} resolves to {real}, outside the allowed roots ({', '.join(map(str, roots))})")
