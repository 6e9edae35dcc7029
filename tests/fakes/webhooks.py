"""A webhook endpoint for the tests: a real HTTP server on 127.0.0.1 (port 0), scripted up front.

Every POST is recorded whole (its path, headers and exact body) and answered with the next status
queued with ``enqueue`` (204 when none is). ``hold()`` makes the next requests wait, unanswered, until
``release()``: what a slow endpoint looks like to its caller; ``held`` says how many wait now.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.conftest import SLOW


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.statuses: deque[int] = deque()
        self.condition = threading.Condition()
        self.holding = False
        self.held = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.condition:
                    status = receiver.statuses.popleft() if receiver.statuses else 204
                    if receiver.holding:
                        receiver.held += 1
                        receiver.condition.notify_all()
                        receiver.condition.wait_for(lambda: not receiver.holding, timeout=120 * SLOW)
                        receiver.held -= 1
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.requests.append(Received(self.path, headers, body, status))
                    receiver.condition.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook/secret-path"

    def enqueue(self, *statuses: int) -> None:
        with self.condition:
            self.statuses.extend(statuses)

    def hold(self) -> None:
        with self.condition:
            self.holding = True

    def release(self) -> None:
        with self.condition:
            self.holding = False
            self.condition.notify_all()

    def wait_held(self, count: int = 1, timeout: float = 30.0) -> None:
        """Until ``count`` requests wait unanswered."""
        with self.condition:
            if not self.condition.wait_for(lambda: self.held >= count, timeout=timeout * SLOW):
                raise AssertionError(
                    f"{self.held} request(s) held within {timeout * SLOW:.0f} s, not {count}"
                )

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """The requests answered, once there are ``count`` of them."""
        with self.condition:
            if not self.condition.wait_for(lambda: len(self.requests) >= count, timeout=timeout * SLOW):
                raise AssertionError(
                    f"{len(self.requests)} request(s) within {timeout * SLOW:.0f} s, not {count}"
                )
            return list(self.requests)

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
