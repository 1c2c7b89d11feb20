"""A real webhook receiver for tests: ``http.server`` on loopback in a thread, recording
every request (headers, body, when, the status it answered) and answering with the
statuses a test scripts (e.g. three 500s, then 200s)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kanade.core.notify.signature import verify


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()
    answered: int

    @property
    def doc(self) -> Any:
        return json.loads(self.body)

    @property
    def key(self) -> str:
        return self.headers.get("idempotency-key", "")

    @property
    def event(self) -> str:
        return self.headers.get("x-kanade-event", "")

    def signed_with(self, secret: str) -> bool:
        return verify(
            secret,
            self.headers.get("x-kanade-timestamp", ""),
            self.body,
            self.headers.get("x-kanade-signature", ""),
            now=time.time(),
        )


class Receiver:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[Received] = []
        self._script: list[int] = []
        self.default = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    code = receiver._script.pop(0) if receiver._script else receiver.default
                    receiver._requests.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            time.monotonic(),
                            code,
                        )
                    )
                answer = b"ok" if code < 300 else b"receiver says no"
                self.send_response(code)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def answer(self, *codes: int, then: int = 200) -> None:
        """Answer the next requests with ``codes``, every later one with ``then``."""
        with self._lock:
            self._script = list(codes)
            self.default = then

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._requests)

    def accepted(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.answered < 300]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def receiving() -> Iterator[Receiver]:
    """Fixture body: a receiver, closed afterwards."""
    r = Receiver()
    try:
        yield r
    finally:
        r.close()
