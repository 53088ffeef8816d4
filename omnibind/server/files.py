"""Media files as they are at serve time, not as they were at ingest.

The rule: an item's file is served only if its stored path is absolute and normalised, lies
beneath one of the `--root` folders when some are configured, and is reached without a single
symbolic link. The file is opened one path component at a time from `/`, each with
`O_NOFOLLOW` (directories with `O_DIRECTORY`), so a file or folder swapped for a symlink after
ingest (to /etc/shadow, say) is refused rather than read, and nothing can change between the
check and the open: what is streamed is the descriptor that was checked (`OpenFileResponse`,
one HTTP byte range supported).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

import anyio
from starlette.responses import Response

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_WALK = bool(_NOFOLLOW) and os.open in os.supports_dir_fd


def open_confined(source: str, roots: list[Path]) -> int:
    """A read-only descriptor on the regular file `source`; PermissionError (with the reason)
    if the rule above refuses it, FileNotFoundError if it is gone."""
    if not os.path.isabs(source) or os.path.normpath(source) != source or "\x00" in source:
        raise PermissionError("not a normalised absolute path")
    path = Path(source)
    if roots and not any(root in path.parents for root in roots):
        raise PermissionError("outside the allowed roots")
    fd = _walk(path) if _WALK else _open_resolved(path)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise PermissionError("not a regular file")
    return fd


def _walk(path: Path) -> int:
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    parts = path.parts[1:]
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | os.O_CLOEXEC | _NOFOLLOW | (os.O_NONBLOCK if last else os.O_DIRECTORY)
            fd, parent = os.open(part, flags, dir_fd=fd), fd
            os.close(parent)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise PermissionError("the path has a symbolic link in it") from None
        raise
    return fd


def _open_resolved(path: Path) -> int:  # pragma: no cover - systems without O_NOFOLLOW / dir_fd
    if os.path.realpath(path) != str(path):
        raise PermissionError("the path has a symbolic link in it")
    return os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single `bytes=` range; None to send the whole file (no range,
    several ranges or one we do not parse); ValueError if it starts past the end."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if not first:  # the last N bytes
            n = int(last)
            return (max(0, size - n), size) if n > 0 else None
        start, end = int(first), (int(last) + 1 if last else size)
    except ValueError:
        return None
    if start >= size:
        raise ValueError("range not satisfiable")
    return (start, min(end, size)) if end > start else None


class OpenFileResponse(Response):
    """Streams an open descriptor (closed when done, also on a client disconnect); a single
    byte range answers 206, one starting past the end 416."""

    chunk_size = 256 * 1024

    def __init__(self, fd: int, media_type: str, range_header: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        st = os.fstat(fd)
        self.fd, self.background, self.media_type = fd, None, media_type
        self.start, self.end, self.status_code = 0, st.st_size, 200
        extra = {"accept-ranges": "bytes", "last-modified": formatdate(st.st_mtime, usegmt=True), **(headers or {})}
        try:
            span = byte_range(range_header, st.st_size)
        except ValueError:
            span, self.status_code, self.end = None, 416, 0
            extra["content-range"] = f"bytes */{st.st_size}"
        if span is not None:
            self.start, self.end, self.status_code = span[0], span[1], 206
            extra["content-range"] = f"bytes {span[0]}-{span[1] - 1}/{st.st_size}"
        extra["content-length"] = str(self.end - self.start)
        self.init_headers(extra)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        try:
            async with anyio.create_task_group() as group:
                async def watch() -> None:  # stop reading when the client goes away
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                await self._stream(send)
                group.cancel_scope.cancel()
        finally:
            os.close(self.fd)

    async def _stream(self, send: Callable) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        pos, more = self.start, self.end > self.start
        while more:
            data: Any = await anyio.to_thread.run_sync(os.pread, self.fd, min(self.chunk_size, self.end - pos), pos)
            pos += len(data)
            more = bool(data) and pos < self.end
            await send({"type": "http.response.body", "body": data, "more_body": more})
        if self.end <= self.start:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
