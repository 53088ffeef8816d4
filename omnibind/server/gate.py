"""Model work under a budget: the model lock, the anonymous queue and the time limit.

* `FairLock`: the model lock, first come first served (a `threading.Lock` lets the thread that
  releases it take it straight back, so a long request would starve short ones).
* `MeteredSpace`: the space as one request's model work sees it. `embed()` runs in small chunks,
  each under the model lock, checking the request's deadline before each: a big classify or
  embed lets searches in between its chunks, and stops at the next chunk once abandoned.
* `ModelGate.run`: anonymous requests are admitted while fewer than `max_model_queue` wait or
  work (503 + Retry-After otherwise) and fewer than `max_client_model_requests` from the same
  address (429). Their work gets `model_timeout_s`: the lock not obtained in time is a 503, the
  time spent a 504. The answer comes even if a chunk cannot be interrupted (the thread is
  abandoned and stops at its next chunk). Token holders wait in the same FIFO, with no limit.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import numpy as np

from omnibind.server.errors import ApiError, retry_later
from omnibind.server.security import Caller
from omnibind.server.settings import ServerSettings

T = TypeVar("T")
CHUNK_ITEMS = 16  # inputs per locked embed() call
CHUNK_CHARS = 4000  # text characters per locked embed() call (a file counts as MEDIA_CHARS)
MEDIA_CHARS = 2000


class FairLock:
    """A FIFO lock (`acquire(blocking, timeout)`, `release`, `locked`, a context manager)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[object] = deque()
        self._held = False

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        with self._cond:
            if not self._held and not self._queue:
                self._held = True
                return True
            if not blocking:
                return False
            me = object()
            self._queue.append(me)
            end = None if timeout is None or timeout < 0 else time.monotonic() + timeout
            while self._held or self._queue[0] is not me:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    self._queue.remove(me)
                    self._cond.notify_all()
                    return False
                self._cond.wait(left)
            self._queue.popleft()
            self._held = True
            return True

    def release(self) -> None:
        with self._cond:
            if not self._held:
                raise RuntimeError("release of an unlocked FairLock")
            self._held = False
            self._cond.notify_all()

    def locked(self) -> bool:
        return self._held

    def __enter__(self) -> "FairLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class Job:
    """One request's model work: its deadline (None: none), and whether it has been abandoned."""

    def __init__(self, lock: FairLock, deadline: float | None) -> None:
        self.lock, self.deadline, self.started, self.abandoned = lock, deadline, False, False

    def locked(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` holding the model lock, if the deadline allows."""
        left = None if self.deadline is None else self.deadline - time.monotonic()
        if self.abandoned or (left is not None and left <= 0):
            raise self.out_of_time()
        if not self.lock.acquire(timeout=-1 if left is None else left):
            raise self.out_of_time()
        try:
            self.started = True
            return fn(*args, **kwargs)
        finally:
            self.lock.release()

    def out_of_time(self) -> ApiError:
        if not self.started:
            return retry_later(503, "the server is busy with other requests' model work: retry later", 5)
        return ApiError(504, "this request's model work ran out of time (model_timeout_s); send less at once, "
                        "or use the server's token")


class MeteredSpace:
    """A read-only view of a `Space` whose `embed()` works in locked chunks under a `Job`."""

    def __init__(self, space: Any, job: Job) -> None:
        self._space, self._job = space, job

    def __getattr__(self, name: str) -> Any:
        return getattr(self._space, name)

    def embed(self, inputs: Any, batch_size: int = 32, dim: int | None = None, **kwargs: Any) -> Any:
        if not isinstance(inputs, (list, tuple)) or kwargs.get("on_error", "raise") != "raise" or not inputs:
            return self._job.locked(self._space.embed, inputs, batch_size=batch_size, dim=dim, **kwargs)
        parts = [self._job.locked(self._space.embed, chunk, batch_size=batch_size, dim=dim, **kwargs)
                 for chunk in chunks(list(inputs))]
        return np.concatenate(parts)


def chunks(items: list[Any]) -> list[list[Any]]:
    """Consecutive runs of at most CHUNK_ITEMS inputs and about CHUNK_CHARS characters."""
    out: list[list[Any]] = [[]]
    size = 0
    for x in items:
        cost = len(x) if isinstance(x, str) else MEDIA_CHARS
        if out[-1] and (len(out[-1]) >= CHUNK_ITEMS or size + cost > CHUNK_CHARS):
            out.append([])
            size = 0
        out[-1].append(x)
        size += cost
    return out


class ModelGate:
    """Admission and time budget of model work (see the module docstring)."""

    def __init__(self, lock: FairLock, settings: ServerSettings) -> None:
        self.lock, self.settings = lock, settings
        self.active = 0
        self.per_client: dict[str, int] = {}

    async def run(self, caller: Caller, fn: Callable[[Job], T]) -> T:
        """`fn(job)` in a worker thread; `fn` takes the lock through `job.locked` (or `MeteredSpace`)."""
        if caller.trusted:
            return await anyio.to_thread.run_sync(fn, Job(self.lock, None))
        self._admit(caller.client)
        timeout = self.settings.model_timeout_s
        job = Job(self.lock, time.monotonic() + timeout)
        try:
            with anyio.fail_after(timeout + 1.0):  # a chunk that cannot stop: answer anyway, leave it behind
                return await anyio.to_thread.run_sync(fn, job, abandon_on_cancel=True)
        except TimeoutError:
            job.abandoned = True
            raise job.out_of_time() from None
        finally:
            self._leave(caller.client)

    def _admit(self, client: str) -> None:
        if self.active >= self.settings.max_model_queue:
            raise retry_later(503, f"the server is busy ({self.active} requests wait for the model): retry later", 5)
        if self.per_client.get(client, 0) >= self.settings.max_client_model_requests:
            raise retry_later(429, f"{client} already has {self.per_client[client]} model requests in progress", 2)
        self.active += 1
        self.per_client[client] = self.per_client.get(client, 0) + 1

    def _leave(self, client: str) -> None:
        self.active -= 1
        left = self.per_client.get(client, 1) - 1
        if left > 0:
            self.per_client[client] = left
        else:
            self.per_client.pop(client, None)
