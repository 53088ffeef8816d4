"""Who may talk to the server, and what every answer carries.

* `HostCheck`: the Host header must name this server (`ServerSettings.host_names()`: localhost,
  127.0.0.1, ::1, the bound host, `allowed_hosts`), else 400: a DNS-rebinding page (evil.example
  resolving to 127.0.0.1) is refused before it reads anything. A request that carries an
  `Origin` must come from this very origin (`scheme://` + the Host header), else 403:
  another site's page (or another local port) cannot post forms or read answers.
* `SecurityHeaders`: CSP, nosniff, X-Frame-Options, Referrer-Policy, CORP/COOP on every answer
  that has not set its own (`server/headers.py`).
* `Caller`: the peer address and whether the request carries the server's token; computed once
  per request (`caller_of`) for the rate limit, the model queue and the listing.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omnibind.server.headers import security_headers

Scope = dict[str, Any]


@dataclass(frozen=True)
class Caller:
    client: str  # the peer's address (proxy headers are not trusted)
    trusted: bool  # sent `Authorization: Bearer <the server's token>`


def bearer_ok(authorization: str | None, token: str) -> bool:
    """Whether an Authorization header value is `Bearer <token>` (compared in constant time)."""
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and bool(given) and hmac.compare_digest(given.strip().encode(), token.encode())


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def caller_of(scope: Scope, token: str) -> Caller:
    """The request's `Caller`, computed once and kept in the scope's state."""
    state = scope.setdefault("state", {})
    if "caller" not in state:
        client = scope.get("client")
        trusted = bearer_ok(header(scope, b"authorization"), token)
        state["caller"] = Caller(str(client[0]) if client else "unknown", trusted)
    return state["caller"]


def host_name(value: str) -> str:
    """The name part of a Host header value: 'a.b:8000' -> 'a.b', '[::1]:8000' -> '::1'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def host_allowed(name: str, allowed: set[str]) -> bool:
    name = name.rstrip(".")
    return bool(name) and ("*" in allowed or name in allowed
                           or any(a.startswith("*.") and name.endswith(a[1:]) for a in allowed))


async def send_json(send: Callable, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    """A whole JSON answer straight from a middleware (before the app has seen the request)."""
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


class HostCheck:
    """400 unless the Host header names this server; 403 if an Origin header names another origin."""

    def __init__(self, app: Any, allowed: set[str]) -> None:
        self.app, self.allowed = app, {a.lower() for a in allowed}

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = header(scope, b"host") or ""
        if not host_allowed(host_name(host), self.allowed):
            await send_json(send, 400, {"error": f"unknown Host {host[:100]!r}: this server answers to "
                                        f"{', '.join(sorted(self.allowed))} (add names with --allowed-host)"})
            return
        origin = header(scope, b"origin")
        if origin is not None and origin.strip().lower() != f"{scope.get('scheme', 'http')}://{host}".lower():
            await send_json(send, 403, {"error": f"cross-origin request from {origin[:100]!r} refused"})
            return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Adds `security_headers(path)` to every answer, except the ones a response set itself."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = security_headers(scope.get("path", ""))

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers") or [])
                present = {k.lower() for k, _ in raw}
                raw += [(k.lower().encode(), v.encode()) for k, v in extra.items() if k.lower().encode() not in present]
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, with_headers)
