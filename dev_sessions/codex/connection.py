"""The bridge's side of the app-server: one connection, the threads it follows, and the looks it takes.

``Connection`` holds one client connection to the app-server (started, restarted and reconnected on
demand), subscribes it to the threads that commands ask about (``thread/resume``) and keeps a ``Watch``
per thread: the ``turns.Thread`` its notifications build, and a way to sleep until it changes. It
also takes the looks that the decisions of ``turns.py`` need: a thread's turns a page at a time, the
turn a wait follows, the running turn, the question a thread waits on, whether a prompt is queued.
It reads the app-server and never decides what an answer means.

The app-server process and the client are given to it (``Process``, ``Connect``): by default
``daemon.AppServer`` and ``client.AppServerClient``; the bridge's tests give fakes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from dev_sessions.backend import Dialog
from dev_sessions.codex import model, turns
from dev_sessions.codex.client import AppServerClient, Listener
from dev_sessions.codex.daemon import DaemonState
from dev_sessions.codex.protocol import JsonObject, Notification, ServerRequest
from dev_sessions.errors import AppServerError, AppServerUnavailable

log = logging.getLogger(__name__)

REPLAY_GRACE = 1.0
"""Seconds to give the app-server to replay a thread's open requests after ``thread/resume``."""
FEED_KEPT = 1000
"""Events a thread keeps for its followers (``follow``), the newest."""

SANDBOX_FOR = {"never": "danger-full-access", "on-request": "workspace-write", "untrusted": "workspace-write"}


@dataclass
class ThreadSpec:
    """How a thread must be (re)loaded: sent by the command from the session record."""

    id: str
    cwd: str | None = None
    approvals: str = "never"
    model: str | None = None
    session: str | None = None

    @classmethod
    def from_json(cls, data: JsonObject) -> ThreadSpec:
        approvals = str(data.get("approvals") or "never")
        return cls(str(data["id"]), data.get("cwd"), approvals, data.get("model"), data.get("session"))

    @property
    def sandbox(self) -> str:
        return SANDBOX_FOR.get(self.approvals, "workspace-write")


def thread_config(session: str | None) -> JsonObject | None:
    """Per-thread config: the commands the agent runs know which session they belong to."""
    if not session:
        return None
    return {"shell_environment_policy": {"set": {"DEV_SESSIONS_ID": session, "IS_SANDBOX": "1"}}}


class Client(Protocol):
    """What the bridge uses of ``client.AppServerClient``."""

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None: ...

    async def call(
        self, method: str, params: JsonObject | None = None, timeout: float | None = None
    ) -> JsonObject: ...

    async def reply(self, request_id: int | str, result: JsonObject) -> None: ...

    async def reply_error(self, request_id: int | str, code: int, message: str) -> None: ...

    async def close(self) -> None: ...


class Process(Protocol):
    """What the bridge uses of ``daemon.AppServer``: the app-server process, its state and token."""

    def alive(self) -> DaemonState | None: ...

    def ensure(self) -> DaemonState: ...

    def running(self) -> DaemonState | None: ...

    def stop(self) -> bool: ...

    def token(self) -> str: ...


Connect = Callable[[str, str, Listener], Client]
"""Makes an unconnected client for (url, token, listener)."""


def websocket_client(url: str, token: str, listener: Listener) -> Client:
    return AppServerClient(url, token, listeners=[listener])


@dataclass
class Watch(turns.Thread):
    """A thread's state, and a way to sleep until a notification changes it."""

    changed: asyncio.Event = field(default_factory=asyncio.Event)
    version: int = 0
    # The thread's event stream for followers (``follow``): the last FEED_KEPT events, numbered.
    feed: deque[tuple[int, JsonObject]] = field(default_factory=lambda: deque(maxlen=FEED_KEPT))
    seq: int = 0
    fed: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, events: list[JsonObject]) -> None:
        for event in events:
            self.seq += 1
            self.feed.append((self.seq, event))
        if events:
            self.fed.set()

    def events_after(self, seq: int) -> list[JsonObject]:
        return [event for number, event in self.feed if number > seq]

    def last_turn(self) -> list[JsonObject] | None:
        """The events from the last prompt this bridge saw on (the last turn's, as they came), or None
        when it saw none."""
        prompts = [number for number, event in self.feed if event.get("kind") == "prompt"]
        return self.events_after(prompts[-1] - 1) if prompts else None

    async def fed_since(self, seq: int, timeout: float) -> None:
        """Sleep until an event after ``seq`` is recorded, or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while self.seq <= seq:
            self.fed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self.fed.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def poke(self) -> None:
        self.version += 1
        self.changed.set()

    async def changed_since(self, seen: int, timeout: float | None) -> bool:
        """Sleep until something relevant happened after ``version`` was ``seen``; False on timeout.

        Comparing versions (not just an event) means a change that came while the caller was busy
        looking is not missed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.version <= seen:
            self.changed.clear()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except asyncio.TimeoutError:
                return False
        return True


class Connection:
    """The bridge's one connection to the app-server, and a ``Watch`` per thread it has been asked about."""

    def __init__(self, app: Process, connect: Connect = websocket_client) -> None:
        self.app = app
        self.connect = connect
        self.client: Client | None = None
        self.watches: dict[str, Watch] = {}
        self._connecting = asyncio.Lock()

    # -- the app-server connection ----------------------------------------------------------------------

    async def connection(self, *, start: bool) -> Client | None:
        """The live connection; with ``start``, the app-server is (re)started if it is not running."""
        async with self._connecting:
            if self.client is not None and self.client.connected:
                return self.client
            loop = asyncio.get_running_loop()
            state = await loop.run_in_executor(None, self.app.alive)
            if state is None:
                if not start:
                    return None
                state = await loop.run_in_executor(None, self.app.ensure)
            client = self.connect(state.url, self.app.token(), self.on_event)
            try:
                await client.connect()
            except AppServerUnavailable:
                if not start:
                    return None
                # Recorded as running but refusing us: start a fresh one.
                await loop.run_in_executor(None, self.app.stop)
                state = await loop.run_in_executor(None, self.app.ensure)
                client = self.connect(state.url, self.app.token(), self.on_event)
                await client.connect()
            self.client = client
            log.info("connected to app-server pid %d", state.pid)
            return client

    async def call(self, method: str, params: JsonObject, *, start: bool = True) -> JsonObject:
        client = await self.connection(start=start)
        if client is None:
            raise AppServerUnavailable(url="(not running)", detail="not running")
        return await client.call(method, params)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None

    def watch(self, thread_id: str) -> Watch:
        if thread_id not in self.watches:
            self.watches[thread_id] = Watch(thread_id)
        return self.watches[thread_id]

    async def subscribe(self, spec: ThreadSpec, *, start: bool = True) -> Watch:
        """Make sure this connection gets the thread's notifications (and loads it if it is at rest).

        The sandbox and approval policy are given again: after a restart the app-server restores the
        policy but not the sandbox.
        """
        watch = self.watch(spec.id)
        client = await self.connection(start=start)
        if client is None:
            return watch
        if not watch.subscribed:
            params: JsonObject = {
                "threadId": spec.id,
                "excludeTurns": True,
                "approvalPolicy": spec.approvals,
                "sandbox": spec.sandbox,
            }
            config = thread_config(spec.session)
            if config:
                params["config"] = config
            result = await client.call("thread/resume", params)
            watch.subscribed = True
            watch.status = (result.get("thread") or {}).get("status") or watch.status
        return watch

    def on_event(self, event: Notification | ServerRequest | None) -> None:
        """Keep each thread's watch up to date; runs in the client's reader task."""
        if event is None:
            log.warning("lost the app-server connection")
            for watch in self.watches.values():
                watch.disconnected()
                watch.poke()
            return
        thread_id = turns.thread_of(event)
        if thread_id is None:
            return
        watch = self.watch(thread_id)
        if log.isEnabledFor(logging.DEBUG) and not event.method.endswith("/delta"):
            log.debug("%s %s %s", event.method, thread_id, json.dumps(event.params)[:300])
        if not event.method.endswith("/delta"):
            watch.record(model.follow_events(event, model.stamp_now()))
        if watch.apply(event):
            watch.poke()

    # -- looking ----------------------------------------------------------------------------------------

    async def turn_pages(
        self, thread_id: str, *, newest_first: bool = True, full: bool = False, page: int = 20
    ) -> AsyncIterator[list[JsonObject]]:
        """The thread's turns, a page at a time, read from the app-server (never from a cache)."""
        params: JsonObject = {
            "threadId": thread_id,
            "limit": page,
            "sortDirection": "desc" if newest_first else "asc",
        }
        if full:
            params["itemsView"] = "full"
        while True:
            try:
                listed = await self.call("thread/turns/list", params)
            except AppServerError as err:
                if "not supported yet" not in err.detail:
                    raise
                # A thread whose first turn has only just started: nothing to list yet, and the
                # turn's notifications (this connection is subscribed) tell the rest.
                log.info("turns of %s not listable yet: %s", thread_id, err.detail)
                return
            yield list(listed.get("data") or [])
            cursor = listed.get("nextCursor")
            if not cursor:
                return
            params["cursor"] = cursor

    async def find_turn(self, watch: Watch, turn_id: str | None, client_id: str | None) -> JsonObject | None:
        """The turn that carries a send's message, finished or running (``turns.TurnSearch``)."""
        search = turns.TurnSearch(watch, turn_id, client_id)
        if search.found is None:
            async for page in self.turn_pages(watch.id):
                if search.feed(page):
                    break
        return search.found

    async def active_turn(self, watch: Watch) -> str | None:
        async for page in self.turn_pages(watch.id, page=1):
            return turns.running_turn(page)
        return None

    async def waiting_dialog(self, watch: Watch) -> Dialog | None:
        """The question the thread waits on; the app-server replays it shortly after a resume."""
        deadline = time.monotonic() + REPLAY_GRACE
        while watch.pending() is None and time.monotonic() < deadline:
            await watch.changed_since(watch.version, deadline - time.monotonic())
        return watch.dialog()

    async def queued(self, watch: Watch, client_id: str) -> bool:
        listed = await self.call("thread/queue/list", {"threadId": watch.id})
        return turns.in_queue(listed, client_id)
