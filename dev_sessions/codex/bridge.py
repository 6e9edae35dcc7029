"""The Codex bridge: one background process per state dir that talks to the app-server for every command.

Why a bridge: a command that spoke WebSocket itself would import asyncio and websockets (about 65 ms)
and shake hands on every call; through the bridge a command is a line of JSON over a Unix socket, and
``wait`` is answered the moment the bridge sees ``turn/completed``. The bridge holds one connection to
the app-server, subscribed to the threads it has been asked about; it keeps no state that the
app-server does not also have, so after its own crash the next command starts a new one and loses
nothing (pending approvals are replayed by the app-server on ``thread/resume``).

It listens on ``$DEV_SESSIONS_HOME/codex/bridge.sock`` (0600, in a 0700 directory, and on Linux it
checks that the peer runs as the same user) and exits after ``DEV_SESSIONS_BRIDGE_LINGER`` seconds
(default 600) without requests, or at once on ``shutdown``, which also stops the app-server.

Wire format: one request per connection, ``{"op": ..., **params}\\n``, one reply ``{"ok": {...}}\\n``
or ``{"error": {"message", "exit"}}\\n``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import logging.handlers
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dev_sessions import __version__
from dev_sessions.backend import Dialog, choose
from dev_sessions.codex import model
from dev_sessions.codex.client import AppServerClient
from dev_sessions.codex.daemon import AppServer
from dev_sessions.codex.link import code_stamp, socket_path
from dev_sessions.codex.protocol import JsonObject, Notification, ServerRequest
from dev_sessions.config import Settings
from dev_sessions.errors import (
    AppServerError,
    AppServerUnavailable,
    DevSessionsError,
    DialogOpen,
    NoDialog,
    UsageError,
)
from dev_sessions.files import check_not_link, private_dir
from dev_sessions.peers import peer_uid

log = logging.getLogger("dev_sessions.codex.bridge")

_REPLAY_GRACE = 1.0
_TURN_SCAN = 50
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


@dataclass
class Watch:
    """What the bridge knows of one thread from the notifications it received."""

    id: str
    subscribed: bool = False
    status: JsonObject = field(default_factory=lambda: {"type": "notLoaded"})
    requests: dict[Any, ServerRequest] = field(default_factory=dict)
    partial: dict[Any, list[JsonObject]] = field(default_factory=dict)
    finished: dict[str, JsonObject] = field(default_factory=dict)
    client_turns: dict[str, str] = field(default_factory=dict)
    last_error: str | None = None
    goal: JsonObject | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    version: int = 0

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


class Bridge:
    def __init__(self, settings: Settings, environ: dict[str, str]) -> None:
        self.settings = settings
        self.app = AppServer(settings.home, settings.codex_bin, environ)
        self.client: AppServerClient | None = None
        self.watches: dict[str, Watch] = {}
        self.linger = settings.bridge_linger
        self.busy = 0
        self.last_activity = time.monotonic()
        self.stopping = asyncio.Event()
        self.code = code_stamp()
        self._connecting = asyncio.Lock()
        self.ops: dict[str, Callable[[JsonObject], Awaitable[JsonObject]]] = {
            "ping": self.op_ping,
            "create": self.op_create,
            "send": self.op_send,
            "wait": self.op_wait,
            "status": self.op_status,
            "messages": self.op_messages,
            "log": self.op_log,
            "interrupt": self.op_interrupt,
            "respond": self.op_respond,
            "goal": self.op_goal,
            "archive": self.op_archive,
            "shutdown": self.op_shutdown,
            "exit": self.op_exit,
        }

    # -- the app-server connection ----------------------------------------------------------------------

    async def connection(self, *, start: bool) -> AppServerClient | None:
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
            client = AppServerClient(state.url, self.app.token(), listeners=[self.on_event])
            try:
                await client.connect()
            except AppServerUnavailable:
                if not start:
                    return None
                # Recorded as running but refusing us: start a fresh one.
                await loop.run_in_executor(None, self.app.stop)
                state = await loop.run_in_executor(None, self.app.ensure)
                client = AppServerClient(state.url, self.app.token(), listeners=[self.on_event])
                await client.connect()
            self.client = client
            log.info("connected to app-server pid %d", state.pid)
            return client

    async def call(self, method: str, params: JsonObject, *, start: bool = True) -> JsonObject:
        client = await self.connection(start=start)
        if client is None:
            raise AppServerUnavailable(url="(not running)", detail="not running")
        return await client.call(method, params)

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
                watch.subscribed = False
                watch.requests.clear()
                watch.poke()
            return
        params = event.params
        thread_id = params.get("threadId") or (params.get("thread") or {}).get("id")
        if not thread_id:
            return
        watch = self.watch(str(thread_id))
        if log.isEnabledFor(logging.DEBUG) and not event.method.endswith("/delta"):
            log.debug("%s %s %s", event.method, thread_id, json.dumps(params)[:300])
        if isinstance(event, ServerRequest):
            watch.requests[event.id] = event
            watch.poke()
            return
        method = event.method
        if method == "thread/status/changed":
            watch.status = params.get("status") or watch.status
        elif method == "turn/completed":
            turn = params.get("turn") or {}
            watch.finished[str(turn.get("id"))] = turn
        elif method == "item/started":
            item = params.get("item") or {}
            if item.get("type") == "userMessage" and item.get("clientId"):
                watch.client_turns[str(item["clientId"])] = str(params.get("turnId"))
            return
        elif method == "serverRequest/resolved":
            watch.requests.pop(params.get("requestId"), None)
        elif method == "error":
            error = params.get("error") or {}
            if not params.get("willRetry"):
                watch.last_error = str(error.get("message") or "error")
            return
        elif method == "thread/goal/updated":
            watch.goal = params.get("goal")
        elif method == "thread/goal/cleared":
            watch.goal = None
        elif method not in ("turn/started", "thread/archived", "thread/closed"):
            return
        watch.poke()

    # -- turns ------------------------------------------------------------------------------------------

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
        """The turn that carries a send's message, finished or running, from notifications or the thread.

        The message's client id decides: ``turn/start`` may answer with the id of a turn that was
        running (or left "in progress" by an app-server that died) rather than the turn that runs it.
        """
        if client_id is not None:
            turn_id = watch.client_turns.get(client_id)
        if turn_id is not None and turn_id in watch.finished:
            return watch.finished[turn_id]
        scanned = 0
        async for turns in self.turn_pages(watch.id):
            for turn in turns:
                matches = (
                    model.turn_carries(turn, client_id)
                    if client_id is not None
                    else turn.get("id") == turn_id
                )
                if matches:
                    return dict(turn)
            scanned += len(turns)
            if scanned >= _TURN_SCAN:
                break
        return None

    async def active_turn(self, watch: Watch) -> str | None:
        async for turns in self.turn_pages(watch.id, page=1):
            for turn in turns[:1]:
                if turn.get("status") == "inProgress":
                    return str(turn.get("id"))
            break
        return None

    def pending(self, watch: Watch) -> ServerRequest | None:
        return next(iter(watch.requests.values()), None)

    async def waiting_dialog(self, watch: Watch) -> Dialog | None:
        """The question the thread waits on; the app-server replays it shortly after a resume."""
        deadline = time.monotonic() + _REPLAY_GRACE
        while (request := self.pending(watch)) is None and time.monotonic() < deadline:
            await watch.changed_since(watch.version, deadline - time.monotonic())
        if request is None:
            return None
        return model.dialog_for(request, len(watch.partial.get(request.id, [])))

    # -- operations ------------------------------------------------------------------------------------

    async def op_ping(self, p: JsonObject) -> JsonObject:
        state = self.app.running()
        return {
            "version": __version__,
            "code": self.code,
            "pid": os.getpid(),
            "appServer": state.__dict__ if state else None,
        }

    async def op_create(self, p: JsonObject) -> JsonObject:
        approvals = str(p.get("approvals") or "never")
        params: JsonObject = {
            "cwd": p["cwd"],
            "approvalPolicy": approvals,
            "sandbox": SANDBOX_FOR.get(approvals),
        }
        if p.get("model"):
            params["model"] = p["model"]
        config = thread_config(p.get("session"))
        if config:
            params["config"] = config
        result = await self.call("thread/start", params)
        thread = result.get("thread") or {}
        watch = self.watch(str(thread["id"]))
        watch.subscribed = True
        watch.status = thread.get("status") or {"type": "idle"}
        if p.get("collaboration"):
            # thread/start takes no mode: it is a thread setting, kept in the rollout from the first turn.
            model_name = result.get("model") or p.get("model")
            await self.set_collaboration(str(thread["id"]), str(p["collaboration"]), model_name)
        if p.get("name"):
            await self.call("thread/name/set", {"threadId": thread["id"], "name": str(p["name"])})
        return {"threadId": thread["id"], "model": result.get("model"), "rollout": thread.get("path")}

    async def set_collaboration(self, thread_id: str, mode: str, model_name: str | None) -> None:
        """Put the thread in a collaboration mode for the turns that start from now on."""
        if not model_name:
            # The mode's settings must name a model: keep the one the thread has.
            read = await self.call("thread/read", {"threadId": thread_id})
            model_name = (read.get("thread") or {}).get("model")
        if not model_name:
            raise UsageError(f"{thread_id}: cannot set the collaboration mode: the thread names no model")
        await self.call(
            "thread/settings/update",
            {"threadId": thread_id, "collaborationMode": model.collaboration_mode(mode, str(model_name))},
        )

    async def op_send(self, p: JsonObject) -> JsonObject:
        spec = ThreadSpec.from_json(p["thread"])
        watch = await self.subscribe(spec)
        client_id = str(p.get("clientId") or uuid.uuid4())
        text_input = [{"type": "text", "text": p["text"]}]
        state, detail = model.thread_state(watch.status)
        if state == "waiting_for_input":
            # Text sent now would be queued behind a turn that cannot move until someone answers.
            dialog = await self.waiting_dialog(watch)
            raise DialogOpen(
                session_id=str(p.get("session") or spec.id),
                question=dialog.question if dialog else detail,
                options=[str(o) for o in dialog.options] if dialog else [],
            )
        active = await self.active_turn(watch) if state != "idle" else None
        collaboration = p.get("collaboration")
        if collaboration and p.get("steer"):
            raise UsageError(f"{p.get('session', spec.id)}: a steered prompt keeps the running turn's mode")
        if collaboration:
            await self.set_collaboration(spec.id, str(collaboration), spec.model)
        if p.get("steer"):
            if active is None:
                raise UsageError(
                    f"{p.get('session', spec.id)}: no running turn to steer; send without --steer"
                )
            result = await self.call(
                "turn/steer",
                {
                    "threadId": spec.id,
                    "expectedTurnId": active,
                    "input": text_input,
                    "clientUserMessageId": client_id,
                },
            )
            return {"mode": "steered", "turnId": result.get("turnId") or active, "clientId": client_id}
        if active is not None:
            await self.call(
                "thread/queue/add",
                {"threadId": spec.id, "clientUserMessageId": client_id, "input": text_input},
            )
            return {"mode": "queued", "turnId": None, "clientId": client_id}
        result = await self.call(
            "turn/start", {"threadId": spec.id, "input": text_input, "clientUserMessageId": client_id}
        )
        turn = result.get("turn") or {}
        return {"mode": "started", "turnId": turn.get("id"), "clientId": client_id}

    async def op_wait(self, p: JsonObject) -> JsonObject:
        spec = ThreadSpec.from_json(p["thread"])
        timeout = p.get("timeout")
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        turn_id, client_id = p.get("turnId"), p.get("clientId")
        queued = p.get("mode") == "queued"
        goal = bool(p.get("goal"))
        announced = False
        while True:
            watch = self.watch(spec.id)
            seen = watch.version
            try:
                watch = await self.subscribe(spec)
                if goal:
                    found = await self.goal_outcome(watch)
                else:
                    found = await self.turn_outcome(watch, turn_id, client_id, queued)
            except AppServerUnavailable:
                found = None  # it died under us: the next round restarts it and looks again
                await asyncio.sleep(0.2)
            if found is not None:
                return found
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return {"outcome": "timeout"}
            if not announced:
                # Once, as the wait starts to block: tests wait for it before they act.
                what = "the goal" if goal else "the turn"
                log.info("%s: waiting for %s to end", p.get("session") or spec.id, what)
                announced = True
            await watch.changed_since(seen, remaining if remaining is not None else 30.0)

    async def turn_outcome(
        self, watch: Watch, turn_id: str | None, client_id: str | None, queued: bool = False
    ) -> JsonObject | None:
        if turn_id is None and client_id is None:
            # Nothing sent through us: follow whatever turn runs now.
            state, _ = model.thread_state(watch.status)
            if state == "idle":
                return {"outcome": "idle"}
            turn_id = await self.active_turn(watch)
            if turn_id is None:
                return {"outcome": "idle"}
        turn = await self.find_turn(watch, turn_id, client_id)
        if turn is not None:
            ended = model.turn_outcome(turn)
            if ended is not None:
                outcome, error = ended
                if outcome == "failed" and watch.last_error and not error:
                    error = watch.last_error
                return {"outcome": outcome, "error": error}
        state, detail = model.thread_state(watch.status)
        if state == "waiting_for_input":
            dialog = await self.waiting_dialog(watch)
            return {"outcome": "waiting_for_input", "dialog": _dialog_json(dialog), "error": detail}
        if state == "error":
            return {"outcome": "failed", "error": watch.last_error or detail}
        if (
            turn is None
            and queued  # only a queued prompt can leave without running
            and state == "idle"
            and client_id is not None
            and not await self.queued(watch, client_id)
        ):
            # Between leaving the queue and showing as a turn, a prompt is in neither: look once more.
            await watch.changed_since(watch.version, _REPLAY_GRACE)
            if await self.find_turn(watch, turn_id, client_id) is None and not await self.queued(
                watch, client_id
            ):
                return {"outcome": "interrupted", "error": "the queued prompt left the queue without running"}
        return None

    async def queued(self, watch: Watch, client_id: str) -> bool:
        listed = await self.call("thread/queue/list", {"threadId": watch.id})
        return any(entry.get("clientUserMessageId") == client_id for entry in listed.get("data") or [])

    async def goal_outcome(self, watch: Watch) -> JsonObject | None:
        result = await self.call("thread/goal/get", {"threadId": watch.id})
        goal = result.get("goal")
        if goal is None:
            return {"outcome": "completed", "goal": None}
        if goal.get("status") != "active":
            return {
                "outcome": "completed" if goal.get("status") == "complete" else "interrupted",
                "goal": goal,
            }
        state, detail = model.thread_state(watch.status)
        if state == "waiting_for_input":
            dialog = await self.waiting_dialog(watch)
            return {"outcome": "waiting_for_input", "dialog": _dialog_json(dialog), "error": detail}
        return None

    async def op_status(self, p: JsonObject) -> JsonObject:
        spec = ThreadSpec.from_json(p["thread"])
        client = await self.connection(start=False)
        if client is None:
            return {"state": "idle", "detail": "the codex app-server is not running; the thread is at rest"}
        try:
            result = await client.call("thread/read", {"threadId": spec.id})
        except AppServerError as err:
            return {"state": "exited", "detail": f"the app-server does not know the thread ({err.detail})"}
        status = (result.get("thread") or {}).get("status") or {}
        watch = self.watch(spec.id)
        watch.status = status
        state, detail = model.thread_state(status)
        if state == "waiting_for_input":
            watch = await self.subscribe(spec, start=False)
            return {
                "state": state,
                "detail": detail,
                "dialog": _dialog_json(await self.waiting_dialog(watch)),
            }
        if state == "error":
            detail = watch.last_error or detail
        return {"state": state, "detail": detail}

    async def op_messages(self, p: JsonObject) -> JsonObject:
        spec = ThreadSpec.from_json(p["thread"])
        count = int(p.get("count") or 1)
        found: list[str] = []
        async for turns in self.turn_pages(spec.id):
            found = model.agent_messages(reversed(turns)) + found
            if len(found) >= count:
                break
        return {"messages": found[-count:]}

    async def op_log(self, p: JsonObject) -> JsonObject:
        spec = ThreadSpec.from_json(p["thread"])
        turns: list[JsonObject] = []
        async for page in self.turn_pages(spec.id, newest_first=False, full=True, page=50):
            turns += page
        return {"items": [item.__dict__ for item in model.log_items(turns)]}

    async def op_interrupt(self, p: JsonObject) -> JsonObject:
        spec = ThreadSpec.from_json(p["thread"])
        client = await self.connection(start=False)
        if client is None:
            return {"interrupted": False}
        watch = await self.subscribe(spec, start=False)
        turn_id = await self.active_turn(watch)
        if turn_id is None:
            return {"interrupted": False}
        await self.call("turn/interrupt", {"threadId": spec.id, "turnId": turn_id})
        deadline = time.monotonic() + 5.0
        while turn_id not in watch.finished and time.monotonic() < deadline:
            await watch.changed_since(watch.version, deadline - time.monotonic())
        return {"interrupted": True, "turnId": turn_id}

    async def op_respond(self, p: JsonObject) -> JsonObject:
        spec = ThreadSpec.from_json(p["thread"])
        watch = await self.subscribe(spec)
        session = str(p.get("session") or spec.id)
        dialog = await self.waiting_dialog(watch)
        request = self.pending(watch)
        if dialog is None or request is None:
            raise NoDialog(session_id=session, status=model.thread_state(watch.status)[0])
        option, typed = choose(session, dialog, str(p["answer"]))
        client = await self.connection(start=True)
        assert client is not None
        if request.method in model.APPROVALS:
            await client.reply(request.id, model.approval_reply(option))
        elif request.method == model.USER_INPUT:
            answers = watch.partial.setdefault(request.id, [])
            answers.append({"answers": [typed if typed is not None else option.label]})
            questions = request.params.get("questions") or []
            if len(answers) < len(questions):
                return {"chosen": f"{option.number}. {typed or option.label}", "more": True}
            reply = {str(q.get("id")): a for q, a in zip(questions, answers, strict=False)}
            await client.reply(request.id, {"answers": reply})
            watch.partial.pop(request.id, None)
        else:
            await client.reply_error(request.id, -32000, "declined by the dev-sessions user")
        watch.requests.pop(request.id, None)
        return {"chosen": f"{option.number}. {typed if typed is not None else option.label}"}

    async def op_goal(self, p: JsonObject) -> JsonObject:
        spec = ThreadSpec.from_json(p["thread"])
        await self.subscribe(spec)
        action = p.get("action") or "get"
        if action == "get":
            return {"goal": (await self.call("thread/goal/get", {"threadId": spec.id})).get("goal")}
        if action == "clear":
            await self.call("thread/goal/clear", {"threadId": spec.id})
            return {"goal": None}
        params: JsonObject = {"threadId": spec.id}
        if p.get("objective"):
            params["objective"] = p["objective"]
        if p.get("budget") is not None:
            params["tokenBudget"] = int(p["budget"])
        params["status"] = {"set": "active", "resume": "active", "pause": "paused"}.get(str(action), "active")
        return {"goal": (await self.call("thread/goal/set", params)).get("goal")}

    async def op_archive(self, p: JsonObject) -> JsonObject:
        spec = ThreadSpec.from_json(p["thread"])
        try:
            await self.call("thread/archive", {"threadId": spec.id})
        except AppServerError as err:
            # Already archived or never persisted: nothing left to tidy.
            log.info("archive %s: %s", spec.id, err.detail)
        self.watches.pop(spec.id, None)
        return {}

    async def op_shutdown(self, p: JsonObject) -> JsonObject:
        """Stop the app-server (the last Codex session is gone) and then this bridge."""
        if self.client is not None:
            await self.client.close()
            self.client = None
        stopped = await asyncio.get_running_loop().run_in_executor(None, self.app.stop)
        self.stopping.set()
        return {"stopped": stopped}

    async def op_exit(self, p: JsonObject) -> JsonObject:
        """Stop this bridge only (a newer dev-sessions wants its own)."""
        self.stopping.set()
        return {}

    # -- serving ---------------------------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.busy += 1
        started = time.monotonic()
        op = "?"
        try:
            if not _same_user(writer):
                return
            line = await reader.readline()
            request = json.loads(line or b"{}")
            op = str(request.pop("op", ""))
            handler = self.ops.get(op)
            if handler is None:
                reply: JsonObject = {"error": UsageError(f"unknown bridge operation {op!r}").to_wire()}
            else:
                task = asyncio.ensure_future(handler(request))
                closed = asyncio.ensure_future(reader.read())  # EOF: the command went away
                done, _ = await asyncio.wait({task, closed}, return_when=asyncio.FIRST_COMPLETED)
                if task not in done:
                    task.cancel()
                    return
                closed.cancel()
                reply = {"ok": task.result()}
        except DevSessionsError as err:
            reply = {"error": err.to_wire()}
        except (ValueError, KeyError, TypeError) as err:
            reply = {"error": UsageError(f"bad bridge request: {err!r}").to_wire()}
        except Exception as err:
            # The one broad catch: a bug in one request must not take the bridge down for everyone.
            log.exception("bridge op %s failed", op)
            reply = {"error": DevSessionsError(f"internal error in the codex bridge: {err!r}").to_wire()}
        finally:
            self.busy -= 1
            self.last_activity = time.monotonic()
        log.info("op %s in %.0f ms", op, (time.monotonic() - started) * 1000)
        with contextlib.suppress(ConnectionError, RuntimeError):
            writer.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
            await writer.drain()
            writer.close()

    async def serve(self, path: Path) -> None:
        private_dir(path.parent)
        path.unlink(missing_ok=True)
        old_umask = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self.handle, path=str(path), limit=64 * 1024 * 1024)
        finally:
            os.umask(old_umask)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        log.info("bridge %s pid %d listening on %s", __version__, os.getpid(), path)
        try:
            while not self.stopping.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), 5.0)
                idle = time.monotonic() - self.last_activity
                if self.busy == 0 and idle > self.linger:
                    log.info("idle for %.0f s; exiting", idle)
                    break
        finally:
            server.close()
            with contextlib.suppress(FileNotFoundError):
                if path.exists():
                    path.unlink()
            if self.client is not None:
                await self.client.close()


def _dialog_json(dialog: Dialog | None) -> JsonObject | None:
    return dialog.to_json() if dialog is not None else None


def _same_user(writer: asyncio.StreamWriter) -> bool:
    """On Linux, refuse a peer that runs as another user (the socket's mode already should)."""
    sock = writer.get_extra_info("socket")
    uid = None if sock is None else peer_uid(sock)
    if uid is not None and uid != os.getuid():
        log.warning("refused a connection from uid %d", uid)
        writer.close()
        return False
    return True


def main() -> None:
    environ = dict(os.environ)
    settings = Settings.from_env(environ)
    directory = settings.home / "codex"
    private_dir(directory)
    check_not_link(directory / "bridge.log")
    handler = logging.handlers.RotatingFileHandler(directory / "bridge.log", maxBytes=1 << 20, backupCount=2)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    root = logging.getLogger("dev_sessions")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if settings.debug else logging.INFO)
    bridge = Bridge(settings, environ)
    try:
        asyncio.run(bridge.serve(socket_path(settings.home)))
    except Exception:
        log.exception("bridge stopped by an error")
        sys.exit(1)


if __name__ == "__main__":
    main()
