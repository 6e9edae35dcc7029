"""What the fake model servers share: an HTTP server on 127.0.0.1 in a background thread that keeps
every request it was sent."""

from __future__ import annotations

import http.server
import threading
from typing import Any, TypeVar

Self = TypeVar("Self", bound="FakeServer")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: Any


class FakeServer:
    """Serves ``handler`` on 127.0.0.1 and a free port (or ``port``) until ``stop``."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler], port: int = 0) -> None:
        self._server = _Server(("127.0.0.1", port), handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def record(self, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append({"path": path, "body": body})

    def recorded(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.requests)

    def start(self: Self) -> Self:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self: Self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
