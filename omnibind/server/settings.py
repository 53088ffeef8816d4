"""Server settings and the write token: secure by default.

The server binds 127.0.0.1 unless told otherwise; write endpoints (ingest, delete) need a bearer
token: `OMNIBIND_TOKEN`, or one generated on first start and kept in `<home>/server-token`
(mode 0600) so that a restart does not invalidate clients. Ingest paths must resolve, symlinks
followed, inside one of the configured roots. `ServerSettings` also holds what one request may
cost (items, characters, labels, pixels, seconds; the anonymous time budget, queue and rate) and
the Host names the server answers to.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

from omnibind.paths import omnibind_home
from omnibind.inputs import Limits

TOKEN_ENV = "OMNIBIND_TOKEN"
TOKEN_FILE = "server-token"


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")  # the names a browser on this machine uses
WILDCARD_BINDS = ("", "0.0.0.0", "::")


@dataclass
class ServerSettings:
    """Where the server reads and what one request may cost. Every cap applies to every client;
    the queue, time and rate limits only to anonymous ones (a valid bearer token is exempt)."""

    collection: str = "default"  # the default collection: the unscoped routes serve it
    others: list[str] = field(default_factory=list)  # more existing collections to serve (`-c a -c b`: ["b"])
    serve_all: bool = False  # `--all`: every collection under the home, also those created later
    space: str | None = None  # a new collection's space; an existing one uses its own
    home: Path | None = None  # where collections live; None: omnibind_home() ($OMNIBIND_HOME or the user data dir)
    roots: list[Path] = field(default_factory=list)  # where ingest may read (and media be served); empty: no ingest
    token: str | None = None  # None: from the environment or the token file (created if missing)
    host: str = "127.0.0.1"  # the bound interface: a name the Host header may carry (unless a wildcard)
    allowed_hosts: list[str] = field(default_factory=list)  # more Host names ("*.lan", "*": any), beside LOCAL_HOSTS
    # -- request size, checked before any work (413 naming the limit)
    max_upload_bytes: int = 50 * 1024 * 1024  # per request body
    max_json_bytes: int = 2 * 1024 * 1024  # per JSON body (JSON carries texts and labels only)
    max_files: int = 8  # per request
    max_k: int = 100
    max_texts: int = 256  # items (texts + files) per embed / classify request
    max_text_chars: int = 10_000  # per text (JSON text, form text, uploaded text file)
    max_request_chars: int = 200_000  # all texts of a request together
    max_labels: int = 1000  # per classify request
    max_label_chars: int = 200  # per label
    max_image_pixels: int = 4096 * 4096  # per uploaded image (or video frame), checked from its header
    max_request_pixels: int = 2 * 4096 * 4096  # all uploaded images of a request together
    max_media_seconds: float = 120.0  # per uploaded sound or video, checked from its header
    max_request_seconds: float = 300.0  # all uploaded sounds and videos of a request together
    # -- anonymous clients: model queue, time budget, rate
    model_timeout_s: float = 30.0  # model work of one request; past it: 504 (and the work stops at its next chunk)
    max_model_queue: int = 32  # anonymous requests waiting for or doing model work; more: 503 + Retry-After
    max_client_model_requests: int = 8  # of those, from one client address; more: 429 + Retry-After
    rate_per_s: float = 20.0  # requests per second and client address to /v1/ (token bucket; 0: no limit)
    rate_burst: int = 100  # the bucket's size
    max_tracked_clients: int = 10_000  # client addresses remembered by the rate limiter (least recent dropped)

    def __post_init__(self) -> None:
        self.roots = [Path(r).expanduser().resolve() for r in self.roots]
        if self.home is not None:
            self.home = Path(self.home).expanduser().resolve()

    def host_names(self) -> set[str]:
        """The names the Host header may carry: LOCAL_HOSTS, the bound host and `allowed_hosts`."""
        names = {*LOCAL_HOSTS, *(h.strip().lower().strip("[]") for h in self.allowed_hosts if h.strip())}
        if self.host.strip("[]") not in WILDCARD_BINDS:
            names.add(self.host.lower().strip("[]"))
        return names

    def upload_limits(self, base: Limits) -> Limits:
        """Decoding limits for one upload: the space's, tightened by this server's per-item caps."""
        return replace(base, max_file_bytes=min(base.max_file_bytes, self.max_upload_bytes),
                       max_image_pixels=min(base.max_image_pixels, self.max_image_pixels),
                       max_text_chars=min(base.max_text_chars, self.max_text_chars),
                       max_audio_seconds=min(base.max_audio_seconds, self.max_media_seconds),
                       max_video_seconds=min(base.max_video_seconds, self.max_media_seconds))


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
