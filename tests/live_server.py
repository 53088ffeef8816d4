"""An app served by uvicorn in a thread on a free loopback port: what the tests that need a real
HTTP server (browsers, the openai client, `omnibind search` finding a server) share."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Live:
    """`app` served on `url` (started at once unless `start=False`: a test may advertise the port
    first); `stop()` ends it (the 'server down' tests stop it)."""

    def __init__(self, app: Any, start: bool = True) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        if start:
            self.start()

    def start(self) -> "Live":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
