"""One writer per collection, across processes: an exclusive `flock` on `<collection>/write.lock`.

Two ingests of one folder used to interleave their merge-inserts against stale table versions and
store every row twice. Now a writer holds the lock for its whole job (an ingest, a delete, a
re-embed, a repair); a second writer waits for it, then starts from the latest table version.
Readers never take the lock. The lock is released by the kernel when its holder dies, so a
SIGKILLed ingest never leaves a collection locked.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

LOCK_FILE = "write.lock"


class WriterLock:
    """Re-entrant within one process (the same object), exclusive across processes."""

    def __init__(self, path: Path, on_acquire: Callable[[], None] | None = None) -> None:
        self.path = Path(path)
        self.on_acquire = on_acquire  # e.g. check out the latest table version
        self.on_wait: Callable[[str], None] | None = None  # told who holds the lock, once, before waiting
        self._thread = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self) -> "WriterLock":
        self._thread.acquire()
        try:
            if self._depth == 0:
                self._fd = self._acquire()
                if self.on_acquire:
                    self.on_acquire()
            self._depth += 1
        except BaseException:
            self._thread.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None
        finally:
            self._thread.release()

    def _acquire(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if self.on_wait:
                    self.on_wait(self.holder())
                fcntl.flock(fd, fcntl.LOCK_EX)  # blocks until the other writer finishes or dies
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {time.time():.0f}\n".encode())
            return fd
        except BaseException:
            os.close(fd)
            raise

    def holder(self) -> str:
        """Who holds (or last held) the lock: 'pid N', from the lock file."""
        try:
            pid = self.path.read_text("utf-8").split()[0]
            return f"pid {pid}"
        except (OSError, IndexError):
            return "another process"
