"""What the fake model servers share: an HTTP server on 127.0.0.1 in a background thread that keeps
every request it was sent, and holds (answers kept waiting until the test releases them)."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any, TypeVar

Self = TypeVar("Self", bound="FakeServer")
# A held answer is let go after this long even if nobody releases it, so that no test hangs forever.
HOLD_LIMIT_S = 300.0


class FakeHandler(http.server.BaseHTTPRequestHandler):
    """The HTTP plumbing both fake APIs share: quiet, HEAD/GET answered, JSON in and out, and a
    chunked server-sent-event stream (``begin_stream``, ``chunk``, ``end_stream``)."""

    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.do_HEAD()

    def read_json(self) -> dict[str, Any]:
        """The request's JSON body, recorded with its path."""
        length = int(self.headers.get("content-length", 0))
        body: dict[str, Any] = json.loads(self.rfile.read(length) or b"{}")
        self.server.owner.record(self.path, body)
        return body

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def begin_stream(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

    def sse(self, name: str, data: dict[str, Any]) -> None:
        """One server-sent event, as one chunk."""
        payload = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        self.wfile.flush()

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def pieces(text: str, steps: int) -> list[str]:
    """``text`` cut into ``steps`` pieces (one empty piece for an empty text), for a slow stream."""
    size = max(1, -(-len(text) // steps))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


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
        self._holds: dict[str, threading.Event] = {}
        self._holding: dict[str, int] = {}

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

    def prompts(self) -> list[str]:
        """The user prompts seen so far (each fake knows where they are in its API's requests)."""
        raise NotImplementedError

    def _hold_event(self, name: str) -> threading.Event:
        with self._lock:
            return self._holds.setdefault(name, threading.Event())

    def hold(self, name: str) -> None:
        """Keep the answer being streamed waiting until ``release(name)`` (called by the handler)."""
        event = self._hold_event(name)
        with self._lock:
            self._holding[name] = self._holding.get(name, 0) + 1
        try:
            event.wait(HOLD_LIMIT_S)
        finally:
            with self._lock:
                self._holding[name] -= 1

    def holding(self, name: str = "") -> int:
        """How many answers are being held under ``name`` right now."""
        with self._lock:
            return self._holding.get(name, 0)

    def release(self, name: str = "") -> None:
        """Let the answers held under ``name`` (and any held under it later) finish."""
        self._hold_event(name).set()

    def start(self: Self) -> Self:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        with self._lock:
            held = list(self._holds.values())
        for event in held:
            event.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self: Self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_from_shell(make: Any, description: str) -> None:
    """``python -m <fake> --port N``: serve one fake in the foreground, its URL on the first line."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0)
    server = make(parser.parse_args().port)
    print(server.url, flush=True)
    server.serve_forever()
