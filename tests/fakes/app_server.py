"""A scripted codex app-server as the Codex bridge sees it, for running a ``Bridge`` in-process.

``FakeAppServer`` is both sides the bridge is given (``connection.Process`` and ``connection.Connect``):
the app-server process (``alive``, ``ensure``, ``stop``, ...: a flag, no process) and the clients that
connect to it (``FakeClient``, in place of ``client.AppServerClient``). Calls are answered from a
script set up front (``answer``: a result, a function of the params, or an error to raise) and
recorded (``calls``, ``called``); replies to server requests are recorded (``replies``). The test
plays the app-server's side with ``push`` (a notification or a server request, to every connected
client's listener, as the reader task would) and ``drop`` (the connection is lost).

Everything runs on the test's event loop: a listener is called directly, as the real client calls
it from its reader task.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

from dev_sessions.codex.client import Listener
from dev_sessions.codex.daemon import DaemonState
from dev_sessions.codex.protocol import JsonObject, Notification, ServerRequest
from dev_sessions.errors import AppServerError, AppServerUnavailable

Answer = JsonObject | Callable[[JsonObject], JsonObject] | Exception

URL = "ws://127.0.0.1:1"


def refused(method: str, message: str) -> AppServerError:
    """An error answer from the app-server, as ``AppServerClient.call`` raises it."""
    return AppServerError(method=method, code=-32600, message=message)


@dataclass
class Reply:
    request_id: int | str
    result: JsonObject | None = None
    error: tuple[int, str] | None = None


@dataclass
class FakeAppServer:
    up: bool = True
    refuse_next: int = 0
    answers: dict[str, Answer] = field(default_factory=dict)
    calls: list[tuple[str, JsonObject]] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    clients: list[FakeClient] = field(default_factory=list)
    started: int = 0
    stopped: int = 0

    def __post_init__(self) -> None:
        self.state = DaemonState(
            pid=4242, port=1, url=URL, startedAt="2026-11-29T00:00:00Z", binary="codex", procStart="1"
        )
        defaults: dict[str, Answer] = {
            "thread/resume": {"thread": {"status": {"type": "idle"}}},
            "thread/turns/list": {"data": [], "nextCursor": None},
            "thread/queue/list": {"data": [], "nextCursor": None},
        }
        self.answers = {**defaults, **self.answers}

    # -- the test's side ----------------------------------------------------------------------------

    def answer(self, method: str, answer: Answer) -> None:
        self.answers[method] = answer

    def called(self, method: str) -> list[JsonObject]:
        return [params for name, params in self.calls if name == method]

    def methods(self) -> list[str]:
        return [name for name, _ in self.calls]

    def push(self, *events: Notification | ServerRequest) -> None:
        for event in events:
            for client in self.connected():
                client.listener(event)

    def drop(self) -> None:
        """The connection is lost: every client hears so, and calls on it fail."""
        for client in self.connected():
            client.is_connected = False
            client.listener(None)

    def connected(self) -> list[FakeClient]:
        return [c for c in self.clients if c.is_connected]

    # -- what the bridge uses: the process... ----------------------------------------------------

    def alive(self) -> DaemonState | None:
        return self.state if self.up else None

    def running(self) -> DaemonState | None:
        return self.alive()

    def ensure(self) -> DaemonState:
        if not self.up:
            self.up = True
            self.started += 1
        return self.state

    def stop(self) -> bool:
        was_up, self.up = self.up, False
        self.stopped += was_up
        return was_up

    def token(self) -> str:
        return "fake-token-" + "x" * 32

    # -- ... and its connections ------------------------------------------------------------------

    def connect(self, url: str, token: str, listener: Listener) -> FakeClient:
        client = FakeClient(self, url, token, listener)
        self.clients.append(client)
        return client

    def _call(self, method: str, params: JsonObject) -> JsonObject:
        self.calls.append((method, copy.deepcopy(params)))
        answer = self.answers.get(method, {})
        if callable(answer):
            answer = answer(params)
        if isinstance(answer, Exception):
            raise answer
        return copy.deepcopy(answer)


@dataclass
class FakeClient:
    server: FakeAppServer
    url: str
    token: str
    listener: Listener
    is_connected: bool = False

    @property
    def connected(self) -> bool:
        return self.is_connected

    async def connect(self) -> None:
        if self.server.refuse_next > 0 or not self.server.up:
            self.server.refuse_next = max(0, self.server.refuse_next - 1)
            raise AppServerUnavailable(url=self.url, detail="refused the connection (401)")
        self.is_connected = True

    async def call(
        self, method: str, params: JsonObject | None = None, timeout: float | None = None
    ) -> JsonObject:
        if not self.is_connected:
            raise AppServerUnavailable(url=self.url, detail="not connected")
        return self.server._call(method, params or {})

    async def reply(self, request_id: int | str, result: JsonObject) -> None:
        self.server.replies.append(Reply(request_id, result=copy.deepcopy(result)))

    async def reply_error(self, request_id: int | str, code: int, message: str) -> None:
        self.server.replies.append(Reply(request_id, error=(code, message)))

    async def close(self) -> None:
        self.is_connected = False
