"""Rate limit for anonymous clients: a token bucket per client address (in memory, the least
recently seen addresses dropped past `max_tracked_clients`), on `/v1/` requests only (the page,
its static files and /healthz are free). A request with the server's token is never limited.
Over the rate: 429 with `Retry-After`."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from omnibind.server.security import caller_of, send_json


class TokenBuckets:
    """`rate` tokens a second up to `burst`, per key; `take(key)` -> seconds to wait (0: go)."""

    def __init__(self, rate: float, burst: int, max_keys: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.max_keys, self.clock = rate, max(1, burst), max(1, max_keys), clock
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, when)

    def take(self, key: str) -> float:
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        tokens, then = self.buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self.buckets[key] = (tokens - 1 if not wait else tokens, now)  # most recent last
        while len(self.buckets) > self.max_keys:
            self.buckets.popitem(last=False)
        return wait


class RateLimit:
    """429 + Retry-After for an anonymous client over its rate on `/v1/` (runs on the event
    loop: the buckets need no lock)."""

    def __init__(self, app: Any, token: str, buckets: TokenBuckets) -> None:
        self.app, self.token, self.buckets = app, token, buckets

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith("/v1/"):
            caller = caller_of(scope, self.token)
            wait = 0.0 if caller.trusted else self.buckets.take(caller.client)
            if wait:
                after = max(1, int(wait + 0.999))
                await send_json(send, 429, {"error": f"too many requests from {caller.client}: retry in {after} s "
                                            "(a client with the server's token is not limited)",
                                            "retry_after": after}, {"Retry-After": str(after)})
                return
        await self.app(scope, receive, send)
