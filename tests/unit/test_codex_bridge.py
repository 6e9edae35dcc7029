"""The Codex bridge in-process, driven over its real Unix socket against a scripted app-server.

Each test runs a ``Bridge`` on the test's event loop with ``tests/fakes/app_server.py`` as its
app-server (process and client): no codex, no WebSocket, no other process. The test sends the
requests a command would send (one JSON line per connection), plays the app-server's side by pushing
notifications and server requests (in recorded shapes, ``tests/fixtures/codex_notifications.py``),
and checks the answers and the calls the bridge made.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from dev_sessions import __version__
from dev_sessions.codex import model, turns
from dev_sessions.codex.bridge import Bridge
from dev_sessions.codex.link import code_stamp
from dev_sessions.codex.protocol import JsonObject, Notification, ServerRequest
from dev_sessions.config import Settings
from tests.conftest import SLOW
from tests.fakes.app_server import FakeAppServer, Reply, refused
from tests.fixtures.codex_notifications import (
    APPROVAL,
    ELICITATION,
    ERROR_TEXT,
    NEXT,
    QUESTIONS,
    THREAD,
    TURN,
    agent,
    command,
    ended,
    failed,
    goal,
    note,
    started,
    status,
    token_usage,
    turn,
    user,
)

SESSION = "fizz-top"
SPEC = {"id": THREAD, "cwd": "/work", "approvals": "never", "model": "fake-model", "session": SESSION}
CONFIG = {"shell_environment_policy": {"set": {"DEV_SESSIONS_ID": SESSION, "IS_SANDBOX": "1"}}}


def on_thread(**params: Any) -> dict[str, Any]:
    """A request about the session's thread, as ``CodexBackend`` sends it."""
    return {"thread": SPEC, "session": SESSION, **params}


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll without blocking the loop the bridge runs on."""
    deadline = time.monotonic() + timeout * SLOW
    while not predicate():
        assert time.monotonic() < deadline, f"condition not met within {timeout * SLOW:.1f} s"
        await asyncio.sleep(0.01)


@dataclass
class Running:
    bridge: Bridge
    app: FakeAppServer
    path: Path
    served: asyncio.Future[None]
    caplog: pytest.LogCaptureFixture

    async def raw(self, data: bytes) -> bytes:
        """What the bridge answers to ``data`` on one connection (b"" if it closes without a word)."""
        reader, writer = await asyncio.open_unix_connection(str(self.path))
        try:
            writer.write(data)
            await writer.drain()
            return await asyncio.wait_for(reader.readline(), 30 * SLOW)
        finally:
            writer.close()

    async def ask(self, op: str, **params: Any) -> JsonObject:
        answer: JsonObject = json.loads(await self.raw(json.dumps({"op": op, **params}).encode() + b"\n"))
        return answer

    async def ok(self, op: str, **params: Any) -> JsonObject:
        answer = await self.ask(op, **params)
        assert "ok" in answer, answer
        result: JsonObject = answer["ok"]
        return result

    def start(self, op: str, **params: Any) -> asyncio.Future[JsonObject]:
        return asyncio.ensure_future(self.ask(op, **params))

    async def blocked(self, what: str = "the turn", times: int = 1) -> None:
        """Until the bridge says a wait blocks (it logs this once per wait, as it starts to sleep)."""
        line = f"{SESSION}: waiting for {what} to end"
        await until(lambda: self.caplog.text.count(line) >= times)

    def push(self, *events: Notification | ServerRequest) -> None:
        self.app.push(*events)


@pytest.fixture
async def bridge(caplog: pytest.LogCaptureFixture) -> AsyncIterator[Running]:
    caplog.set_level(logging.INFO, logger="dev_sessions")
    app = FakeAppServer()
    directory = Path(tempfile.mkdtemp(prefix="ds-bridge-", dir="/tmp"))  # a socket path must be short
    path = directory / "bridge.sock"
    server = Bridge(Settings.from_env(), os.environ, app=app, connect=app.connect)
    served = asyncio.ensure_future(server.serve(path))
    try:
        await until(lambda: path.exists() or served.done())
        yield Running(server, app, path, served, caplog)
    finally:
        server.stopping.set()
        await asyncio.wait_for(served, 10 * SLOW)
        shutil.rmtree(directory, ignore_errors=True)


def resumed(state: dict[str, Any], *replayed: ServerRequest, app: FakeAppServer) -> Callable[..., Any]:
    """``thread/resume`` of a thread in ``state``, replaying the requests it waits on as it answers."""

    def answer(params: JsonObject) -> JsonObject:
        app.push(*replayed)
        return {"thread": {"id": THREAD, "status": state}}

    return answer


def running(app: FakeAppServer, turn_id: str = TURN) -> None:
    """The thread runs a turn: so says its status, and its newest turn."""
    app.answer("thread/resume", {"thread": {"id": THREAD, "status": {"type": "active", "activeFlags": []}}})
    app.answer("thread/turns/list", {"data": [turn(turn_id, "inProgress", user("c-0", "first"))]})


# -- the bridge itself ---------------------------------------------------------------------------------


async def test_ping_says_which_code_runs_and_never_calls_the_app_server(bridge: Running) -> None:
    assert await bridge.ok("ping") == {
        "version": __version__,
        "code": code_stamp(),
        "pid": os.getpid(),
        "appServer": bridge.app.state.__dict__,
    }
    bridge.app.up = False
    assert (await bridge.ok("ping"))["appServer"] is None
    assert bridge.app.calls == [] and bridge.app.clients == []


async def test_the_socket_is_private(bridge: Running) -> None:
    assert bridge.path.stat().st_mode & 0o777 == 0o600
    assert bridge.path.parent.stat().st_mode & 0o777 == 0o700


class Garbled(NamedTuple):
    test_id: str
    request: bytes
    message: str
    exit: int


GARBLED = [
    Garbled("not json", b"hello bridge\n", "bad bridge request: JSONDecodeError(", 2),
    Garbled("unknown op", b'{"op": "format-disk"}\n', "unknown bridge operation 'format-disk'", 2),
    Garbled("no op", b"{}\n", "unknown bridge operation ''", 2),
    Garbled("no thread", b'{"op": "send", "text": "hi"}\n', "bad bridge request: KeyError('thread')", 2),
    Garbled("no text", b'{"op": "send", "thread": {"id": "t"}}\n', "bad bridge request: KeyError('text')", 2),
    Garbled("bad count", b'{"op": "messages", "thread": {"id": "t"}, "count": "x"}\n', "ValueError(", 2),
    Garbled("a list", b"[1, 2]\n", "bad bridge request: ValueError('a request is a JSON object')", 2),
    Garbled("a number", b"42\n", "bad bridge request: ValueError('a request is a JSON object')", 2),
]


@pytest.mark.parametrize("case", GARBLED, ids=[c.test_id for c in GARBLED])
async def test_a_garbled_request_gets_an_error_answer_and_the_bridge_goes_on(
    bridge: Running, case: Garbled
) -> None:
    answer = json.loads(await bridge.raw(case.request))
    assert set(answer) == {"error"}
    assert case.message in answer["error"]["message"]
    assert answer["error"]["exit"] == case.exit
    assert (await bridge.ok("ping"))["pid"] == os.getpid()


async def test_a_request_cut_short_gets_an_error_answer(bridge: Running) -> None:
    reader, writer = await asyncio.open_unix_connection(str(bridge.path))
    writer.write(b'{"op": "pi')
    writer.write_eof()
    answer = json.loads(await asyncio.wait_for(reader.readline(), 10 * SLOW))
    writer.close()
    assert answer["error"]["exit"] == 2
    assert answer["error"]["message"].startswith("bad bridge request: JSONDecodeError(")
    assert (await bridge.ok("ping"))["pid"] == os.getpid()


async def test_an_app_server_refusal_is_an_error_answer(bridge: Running) -> None:
    bridge.app.answer("thread/goal/set", refused("thread/goal/set", "goals are disabled"))
    answer = await bridge.ask("goal", **on_thread(action="set", objective="x"))
    assert answer["error"]["exit"] == 1
    assert answer["error"]["message"] == "codex app-server refused thread/goal/set: goals are disabled"


async def test_a_command_that_goes_away_cancels_its_operation(bridge: Running) -> None:
    running(bridge.app)
    _, writer = await asyncio.open_unix_connection(str(bridge.path))
    writer.write(json.dumps({"op": "wait", **on_thread(turnId=TURN, clientId="c-1")}).encode() + b"\n")
    await writer.drain()
    await bridge.blocked()
    assert bridge.bridge.busy == 1
    writer.close()
    await until(lambda: bridge.bridge.busy == 0)
    assert (await bridge.ok("ping"))["pid"] == os.getpid()


async def test_shutdown_stops_the_app_server_and_the_bridge(bridge: Running) -> None:
    await bridge.ok("status", **on_thread())  # connects
    assert await bridge.ok("shutdown") == {"stopped": True}
    await asyncio.wait_for(bridge.served, 10 * SLOW)
    assert not bridge.path.exists()
    assert bridge.app.stopped == 1 and bridge.app.connected() == []


async def test_exit_stops_only_the_bridge(bridge: Running) -> None:
    await bridge.ok("status", **on_thread())
    assert await bridge.ok("exit") == {}
    await asyncio.wait_for(bridge.served, 10 * SLOW)
    assert not bridge.path.exists()
    assert bridge.app.stopped == 0 and bridge.app.up


# -- the app-server connection ---------------------------------------------------------------------


async def test_an_app_server_that_refuses_the_connection_is_replaced(bridge: Running) -> None:
    bridge.app.refuse_next = 1
    bridge.app.answer("turn/start", {"turn": {"id": TURN, "status": "inProgress"}})
    await bridge.ok("send", **on_thread(text="hi"))
    assert (bridge.app.stopped, bridge.app.started) == (1, 1)
    assert len(bridge.app.clients) == 2 and len(bridge.app.connected()) == 1


async def test_looking_never_starts_the_app_server(bridge: Running) -> None:
    bridge.app.up = False
    assert await bridge.ok("status", **on_thread()) == turns.at_rest()
    assert await bridge.ok("interrupt", **on_thread()) == {"interrupted": False}
    assert bridge.app.started == 0 and bridge.app.clients == []


async def test_a_wait_outlives_a_lost_connection(bridge: Running) -> None:
    bridge.app.answer("turn/start", {"turn": {"id": TURN, "status": "inProgress"}})
    await bridge.ok("send", **on_thread(text="hello", clientId="c-1"))
    waiting = bridge.start("wait", **on_thread(turnId=TURN, clientId="c-1", mode="started"))
    await bridge.blocked()
    bridge.app.drop()
    # It connects again and subscribes the thread again, then sleeps on the new connection.
    await until(lambda: len(bridge.app.called("thread/resume")) == 2 and bridge.app.connected())
    await until(lambda: len(bridge.app.called("thread/turns/list")) >= 2)
    bridge.push(*started(TURN, "c-1", "hello"), *ended(TURN, "completed", agent("hello")))
    assert await waiting == {"ok": {"outcome": "completed", "error": None}}
    assert len(bridge.app.clients) == 2


# -- create and send -------------------------------------------------------------------------------


async def test_create_starts_a_named_thread_in_plan_mode(bridge: Running) -> None:
    bridge.app.answer(
        "thread/start",
        {"thread": {"id": THREAD, "status": {"type": "idle"}, "path": "/r.jsonl"}, "model": "fake-model"},
    )
    answer = await bridge.ok(
        "create",
        cwd="/work",
        approvals="on-request",
        model=None,
        session=SESSION,
        collaboration="plan",
        name=f"dev-sessions {SESSION}",
    )
    assert answer == {"threadId": THREAD, "model": "fake-model", "rollout": "/r.jsonl"}
    assert bridge.app.methods() == ["thread/start", "thread/settings/update", "thread/name/set"]
    assert bridge.app.called("thread/start") == [
        {"cwd": "/work", "approvalPolicy": "on-request", "sandbox": "workspace-write", "config": CONFIG}
    ]
    assert bridge.app.called("thread/settings/update") == [
        {"threadId": THREAD, "collaborationMode": model.collaboration_mode("plan", "fake-model")}
    ]
    assert bridge.app.called("thread/name/set") == [{"threadId": THREAD, "name": f"dev-sessions {SESSION}"}]
    # The thread it started is subscribed already: a send does not resume it.
    await bridge.ok("send", **on_thread(text="hi"))
    assert "thread/resume" not in bridge.app.methods()


async def test_send_to_an_idle_thread_starts_a_turn(bridge: Running) -> None:
    bridge.app.answer("turn/start", {"turn": {"id": TURN, "status": "inProgress", "items": []}})
    answer = await bridge.ok("send", **on_thread(text="hello", clientId="c-1"))
    assert answer == {"mode": "started", "turnId": TURN, "clientId": "c-1"}
    assert bridge.app.methods() == ["thread/resume", "turn/start"]
    assert bridge.app.called("thread/resume") == [
        {
            "threadId": THREAD,
            "excludeTurns": True,
            "approvalPolicy": "never",
            "sandbox": "danger-full-access",
            "config": CONFIG,
        }
    ]
    assert bridge.app.called("turn/start") == [
        {"threadId": THREAD, "input": [{"type": "text", "text": "hello"}], "clientUserMessageId": "c-1"}
    ]


async def test_send_while_a_turn_runs_is_queued_or_steered(bridge: Running) -> None:
    running(bridge.app)
    queued = await bridge.ok("send", **on_thread(text="next", clientId="c-2"))
    assert queued == {"mode": "queued", "turnId": None, "clientId": "c-2"}
    assert bridge.app.called("thread/queue/add") == [
        {"threadId": THREAD, "clientUserMessageId": "c-2", "input": [{"type": "text", "text": "next"}]}
    ]
    bridge.app.answer("turn/steer", {"turnId": TURN})
    steered = await bridge.ok("send", **on_thread(text="faster", clientId="c-3", steer=True))
    assert steered == {"mode": "steered", "turnId": TURN, "clientId": "c-3"}
    assert bridge.app.called("turn/steer") == [
        {
            "threadId": THREAD,
            "expectedTurnId": TURN,
            "input": [{"type": "text", "text": "faster"}],
            "clientUserMessageId": "c-3",
        }
    ]
    assert "turn/start" not in bridge.app.methods()


async def test_steering_needs_a_running_turn_and_keeps_its_mode(bridge: Running) -> None:
    idle = await bridge.ask("send", **on_thread(text="x", steer=True))
    assert idle["error"]["exit"] == 2
    assert idle["error"]["message"] == f"{SESSION}: no running turn to steer; send without --steer"
    mode = await bridge.ask("send", **on_thread(text="x", steer=True, collaboration="plan"))
    assert mode["error"]["exit"] == 2 and "keeps the running turn's mode" in mode["error"]["message"]
    assert "turn/steer" not in bridge.app.methods()


async def test_send_refuses_while_the_thread_waits_on_a_question(bridge: Running) -> None:
    waiting = {"type": "active", "activeFlags": ["waitingOnApproval"]}
    bridge.app.answer("thread/resume", resumed(waiting, APPROVAL, app=bridge.app))
    answer = await bridge.ask("send", **on_thread(text="hi"))
    assert answer["error"]["exit"] == 1
    assert f"{SESSION}: waiting for an answer to 'Run this command?'" in answer["error"]["message"]
    assert bridge.app.methods() == ["thread/resume"]


# -- wait ------------------------------------------------------------------------------------------


class WaitCase(NamedTuple):
    test_id: str
    events: list[Notification | ServerRequest]
    answer: JsonObject


def asking(flag: str, request: ServerRequest) -> list[Notification | ServerRequest]:
    return [*started(TURN, "c-1", "x"), status("active", flag), request]


WAITS = [
    WaitCase(
        "completed",
        [*started(TURN, "c-1", "hello"), *ended(TURN, "completed", agent("hello"))],
        {"outcome": "completed", "error": None},
    ),
    WaitCase(
        "interrupted",
        [*started(TURN, "c-1", "<<hold:a>>"), *ended(TURN, "interrupted")],
        {"outcome": "interrupted", "error": None},
    ),
    WaitCase(
        "failed",
        [*started(TURN, "c-1", "<<error:500>>"), *failed(TURN)],
        {"outcome": "failed", "error": ERROR_TEXT},
    ),
    WaitCase(
        "approval",
        asking("waitingOnApproval", APPROVAL),
        {
            "outcome": "waiting_for_input",
            "dialog": model.dialog_for(APPROVAL).to_json(),
            "error": "waitingOnApproval",
        },
    ),
    WaitCase(
        "question",
        asking("waitingOnUserInput", QUESTIONS),
        {
            "outcome": "waiting_for_input",
            "dialog": model.dialog_for(QUESTIONS).to_json(),
            "error": "waitingOnUserInput",
        },
    ),
    WaitCase(
        "elicitation",
        asking("waitingOnUserInput", ELICITATION),
        {
            "outcome": "waiting_for_input",
            "dialog": model.dialog_for(ELICITATION).to_json(),
            "error": "waitingOnUserInput",
        },
    ),
]


@pytest.mark.parametrize("case", WAITS, ids=[c.test_id for c in WAITS])
async def test_wait_answers_when_the_notifications_say(bridge: Running, case: WaitCase) -> None:
    bridge.app.answer("turn/start", {"turn": {"id": TURN, "status": "inProgress"}})
    await bridge.ok("send", **on_thread(text="hello", clientId="c-1"))
    waiting = bridge.start("wait", **on_thread(turnId=TURN, clientId="c-1", mode="started", timeout=60))
    await bridge.blocked()
    assert not waiting.done()
    bridge.push(*case.events)
    assert await waiting == {"ok": case.answer}


async def test_wait_finds_a_turn_that_ended_before_the_bridge_saw_it(bridge: Running) -> None:
    bridge.app.answer(
        "thread/turns/list", {"data": [turn(TURN, "completed", user("c-1", "hi"), agent("hi"))]}
    )
    answer = await bridge.ok("wait", **on_thread(turnId=TURN, clientId="c-1", mode="started"))
    assert answer == {"outcome": "completed", "error": None}


async def test_wait_with_nothing_sent_returns_once_the_thread_is_idle(bridge: Running) -> None:
    assert await bridge.ok("wait", **on_thread(timeout=5)) == {"outcome": "idle"}
    assert "thread/turns/list" not in bridge.app.methods()
    await bridge.ok("archive", **on_thread())  # forget the thread: the next look resumes it
    running(bridge.app)
    waiting = bridge.start("wait", **on_thread(timeout=60))
    await bridge.blocked()  # it follows the turn that runs
    bridge.push(*ended(TURN, "completed", agent("done")))
    # Then it looks again for a running turn, and finds the thread idle (not how that turn ended).
    assert await waiting == {"ok": {"outcome": "idle"}}


async def test_wait_times_out(bridge: Running) -> None:
    running(bridge.app)
    answer = await bridge.ok("wait", **on_thread(turnId=TURN, clientId="c-1", timeout=0.05))
    assert answer == {"outcome": "timeout"}


async def test_wait_for_a_queued_prompt_follows_it_into_its_turn(bridge: Running) -> None:
    running(bridge.app)
    await bridge.ok("send", **on_thread(text="next", clientId="c-7"))
    bridge.app.answer("thread/queue/list", {"data": [{"clientUserMessageId": "c-7"}], "nextCursor": None})
    waiting = bridge.start("wait", **on_thread(turnId=None, clientId="c-7", mode="queued", timeout=60))
    await bridge.blocked()
    bridge.app.answer("thread/turns/list", {"data": [turn(TURN, "completed", user("c-0", "first"))]})
    bridge.push(*ended(TURN, "completed"))  # idle between the two turns: it is still queued
    await until(lambda: bridge.app.called("thread/queue/list"))
    assert not waiting.done()
    bridge.push(*started(NEXT, "c-7", "next"), *ended(NEXT, "completed", agent("next")))
    assert await waiting == {"ok": {"outcome": "completed", "error": None}}


async def test_a_queued_prompt_that_leaves_the_queue_without_running_ends_the_wait(bridge: Running) -> None:
    running(bridge.app)
    await bridge.ok("send", **on_thread(text="next", clientId="c-7"))
    waiting = bridge.start("wait", **on_thread(turnId=None, clientId="c-7", mode="queued", timeout=60))
    await bridge.blocked()
    bridge.app.answer("thread/turns/list", {"data": [turn(TURN, "interrupted", user("c-0", "first"))]})
    bridge.push(*ended(TURN, "interrupted"))  # interrupted: the queue is dropped
    assert await waiting == {"ok": turns.left_queue()}
    assert len(bridge.app.called("thread/queue/list")) == 2, "looked twice, a moment apart"


async def test_wait_for_the_goal(bridge: Running) -> None:
    bridge.app.answer("thread/goal/get", {"goal": goal("active")})
    waiting = bridge.start("wait", **on_thread(goal=True, timeout=60))
    await bridge.blocked("the goal")
    bridge.app.answer("thread/goal/get", {"goal": goal("complete")})
    bridge.push(note("thread/goal/updated", turnId=TURN, goal=goal("complete")))
    assert await waiting == {"ok": {"outcome": "completed", "goal": goal("complete")}}
    bridge.app.answer("thread/goal/get", {"goal": goal("paused")})
    assert await bridge.ok("wait", **on_thread(goal=True)) == {
        "outcome": "interrupted",
        "goal": goal("paused"),
    }


# -- status, respond, interrupt, goal --------------------------------------------------------------


async def test_status_of_a_thread(bridge: Running) -> None:
    bridge.app.answer(
        "thread/read", {"thread": {"id": THREAD, "status": {"type": "active", "activeFlags": []}}}
    )
    assert await bridge.ok("status", **on_thread()) == {"state": "working", "detail": ""}
    assert "thread/resume" not in bridge.app.methods(), "status only reads"
    bridge.push(note("error", turnId=TURN, willRetry=False, error={"message": ERROR_TEXT}))
    bridge.app.answer("thread/read", {"thread": {"id": THREAD, "status": {"type": "systemError"}}})
    assert await bridge.ok("status", **on_thread()) == {"state": "error", "detail": ERROR_TEXT}
    bridge.app.answer("thread/read", refused("thread/read", "thread not loaded: x"))
    assert await bridge.ok("status", **on_thread()) == turns.unknown_thread("thread not loaded: x")


async def test_status_of_a_thread_that_waits_shows_the_question_replayed_on_resume(bridge: Running) -> None:
    waiting = {"type": "active", "activeFlags": ["waitingOnUserInput"]}
    bridge.app.answer("thread/read", {"thread": {"id": THREAD, "status": waiting}})
    bridge.app.answer("thread/resume", resumed(waiting, QUESTIONS, app=bridge.app))
    assert await bridge.ok("status", **on_thread()) == {
        "state": "waiting_for_input",
        "detail": "waitingOnUserInput",
        "dialog": model.dialog_for(QUESTIONS).to_json(),
    }


async def test_respond_to_an_approval(bridge: Running) -> None:
    waiting = {"type": "active", "activeFlags": ["waitingOnApproval"]}
    bridge.app.answer("thread/resume", resumed(waiting, APPROVAL, app=bridge.app))
    bad = await bridge.ask("respond", **on_thread(answer="9"))
    assert bad["error"]["exit"] == 2 and "'9' matches none of: 1. Yes;" in bad["error"]["message"]
    assert await bridge.ok("respond", **on_thread(answer="2")) == {
        "chosen": "2. Yes, and don't ask again for this session"
    }
    assert bridge.app.replies == [Reply(0, result={"decision": "acceptForSession"})]
    nothing = await bridge.ask("respond", **on_thread(answer="1"))
    assert nothing["error"]["exit"] == 1 and f"{SESSION}: nothing to answer" in nothing["error"]["message"]


async def test_respond_answers_questions_one_at_a_time(bridge: Running) -> None:
    waiting = {"type": "active", "activeFlags": ["waitingOnUserInput"]}
    bridge.app.answer("thread/resume", resumed(waiting, QUESTIONS, app=bridge.app))
    assert await bridge.ok("respond", **on_thread(answer="blue")) == {"chosen": "2. Blue", "more": True}
    assert bridge.app.replies == []
    assert await bridge.ok("respond", **on_thread(answer="huge, really")) == {"chosen": "3. huge, really"}
    assert bridge.app.replies == [
        Reply(1, result={"answers": {"colour": {"answers": ["Blue"]}, "size": {"answers": ["huge, really"]}}})
    ]


async def test_respond_declines_what_it_cannot_answer(bridge: Running) -> None:
    waiting = {"type": "active", "activeFlags": ["waitingOnUserInput"]}
    bridge.app.answer("thread/resume", resumed(waiting, ELICITATION, app=bridge.app))
    assert await bridge.ok("respond", **on_thread(answer="1")) == {"chosen": "1. Decline"}
    assert bridge.app.replies == [Reply(2, error=(-32000, turns.DECLINED))]


async def test_interrupt_stops_the_running_turn_and_waits_for_it_to_end(bridge: Running) -> None:
    running(bridge.app)

    def interrupted(params: JsonObject) -> JsonObject:
        bridge.push(*ended(TURN, "interrupted"))
        return {}

    bridge.app.answer("turn/interrupt", interrupted)
    assert await bridge.ok("interrupt", **on_thread()) == {"interrupted": True, "turnId": TURN}
    assert bridge.app.called("turn/interrupt") == [{"threadId": THREAD, "turnId": TURN}]
    bridge.app.answer("thread/turns/list", {"data": [turn(TURN, "interrupted")]})
    assert await bridge.ok("interrupt", **on_thread()) == {"interrupted": False}
    assert len(bridge.app.called("turn/interrupt")) == 1


async def test_goal_set_pause_resume_get_and_clear(bridge: Running) -> None:
    bridge.app.answer("thread/goal/set", lambda params: {"goal": {**goal("active"), **params}})
    set_goal = await bridge.ok("goal", **on_thread(action="set", objective="All tests pass", budget=200000))
    assert set_goal["goal"]["objective"] == "All tests pass"
    await bridge.ok("goal", **on_thread(action="pause"))
    await bridge.ok("goal", **on_thread(action="resume", budget=None))
    assert bridge.app.called("thread/goal/set") == [
        {"threadId": THREAD, "objective": "All tests pass", "tokenBudget": 200000, "status": "active"},
        {"threadId": THREAD, "status": "paused"},
        {"threadId": THREAD, "status": "active"},
    ]
    bridge.app.answer("thread/goal/get", {"goal": goal("paused")})
    assert await bridge.ok("goal", **on_thread()) == {"goal": goal("paused")}
    assert await bridge.ok("goal", **on_thread(action="clear")) == {"goal": None}
    assert bridge.app.called("thread/goal/clear") == [{"threadId": THREAD}]


async def test_messages_and_log_read_the_turns_page_by_page(bridge: Running) -> None:
    pages = {
        None: {"data": [turn(NEXT, "completed", agent("two"))], "nextCursor": "p2"},
        "p2": {"data": [turn(TURN, "completed", user("c-1", "hi"), agent("one"))], "nextCursor": None},
    }
    bridge.app.answer("thread/turns/list", lambda params: pages[params.get("cursor")])
    assert await bridge.ok("messages", **on_thread(count=2)) == {"messages": ["one", "two"]}
    assert await bridge.ok("messages", **on_thread()) == {"messages": ["two"]}
    items = (await bridge.ok("log", **on_thread()))["items"]
    assert [(i["role"], i["text"]) for i in items][:2] == [
        ("assistant", "two"),
        ("turn", "turn completed after 0.1 s"),
    ]


async def test_archive_forgets_the_thread_even_when_the_app_server_had(bridge: Running) -> None:
    await bridge.ok("send", **on_thread(text="hi"))
    bridge.app.answer("thread/archive", refused("thread/archive", "no rollout found"))
    assert await bridge.ok("archive", **on_thread()) == {}
    await bridge.ok("send", **on_thread(text="again"))
    assert len(bridge.app.called("thread/resume")) == 2, "an archived thread is resumed afresh"


# -- usage ------------------------------------------------------------------------------------------------


async def test_usage_is_the_last_token_total_and_the_finished_turns(bridge: Running) -> None:
    bridge.app.answer("turn/start", {"turn": {"id": TURN, "status": "inProgress"}})
    await bridge.ok("send", **on_thread(text="hello", clientId="c-1"))
    bridge.app.answer("thread/turns/list", {"data": []})
    assert await bridge.ok("usage", **on_thread()) == {"tokens": None, "turns": 0, "seconds": 0.0}
    # Two updates: the total is the thread's running sum, so the last one counts, not their sum.
    bridge.push(token_usage(TURN, 10, 0, 5), token_usage(TURN, 30, 8, 12, reasoning=2))
    bridge.push(*ended(TURN, "completed", agent("hello")))
    finished = [turn(NEXT, "interrupted"), turn(TURN, "completed"), turn("t-run", "inProgress")]
    bridge.app.answer("thread/turns/list", {"data": finished})
    await until(lambda: bridge.bridge.conn.watch(THREAD).tokens is not None)
    answer = await bridge.ok("usage", **on_thread())
    assert answer == {
        "tokens": {
            "inputTokens": 30,
            "cachedInputTokens": 8,
            "outputTokens": 12,
            "reasoningOutputTokens": 2,
            "totalTokens": 42,
        },
        "turns": 2,
        "seconds": 0.128,
    }


# -- follow ---------------------------------------------------------------------------------------------


class MidTurn(NamedTuple):
    test_id: str
    lands_during_the_read: bool
    """Whether the running command ends while the follower reads the thread's turns."""


MID_TURN = [MidTurn("an-item-that-ends-while-the-turns-are-read", True), MidTurn("a-command-running", False)]


@pytest.mark.parametrize("case", MID_TURN, ids=[c.test_id for c in MID_TURN])
async def test_a_follow_started_mid_turn_shows_each_item_once(bridge: Running, case: MidTurn) -> None:
    """``logs --follow`` of a thread whose turn runs: the turn's items so far, then the rest as they
    land, each once. An item that ends between where the stream stood and the read of the thread's
    turns is in both (it was printed twice); a command still running is in neither the listed turns
    (Codex lists an item once it is done) nor the events after that point (it was never printed)."""
    from dev_sessions.codex.backend import CodexBackend
    from dev_sessions.follow import Event, drive
    from dev_sessions.store import Session

    bridge.app.answer("turn/start", {"turn": {"id": TURN, "status": "inProgress"}})
    await bridge.ok("send", **on_thread(text="hello", clientId="c-1"))
    running_command = command("call-1", "make test")
    done_command = command("call-1", "make test", output="ok\n")
    bridge.push(*started(TURN, "c-1", "hello"), note("item/started", turnId=TURN, item=running_command))

    def listed(params: JsonObject) -> JsonObject:
        if not case.lands_during_the_read:
            return {"data": [turn(TURN, "inProgress", user("c-1", "hello"))], "nextCursor": None}
        bridge.push(note("item/completed", turnId=TURN, item=done_command))
        return {"data": [turn(TURN, "inProgress", user("c-1", "hello"), done_command)], "nextCursor": None}

    bridge.app.answer("thread/turns/list", listed)
    backend = CodexBackend(Settings.from_env())
    backend.link.path = bridge.path
    backend.link._checked = True  # the bridge in this test runs this code
    session = Session(id=SESSION, internal_id=THREAD, cli="codex", path="/work", model="fake-model")
    seen: list[Event] = []
    rounds = backend.events(session, "all", None)
    follower = asyncio.ensure_future(asyncio.to_thread(lambda: seen.extend(drive(rounds))))
    await until(lambda: any(e.kind == "status" for e in seen) or follower.done())
    if not case.lands_during_the_read:
        bridge.push(note("item/completed", turnId=TURN, item=done_command))
    bridge.push(note("item/completed", turnId=TURN, item=agent("all green")))
    bridge.push(*ended(TURN, "completed", user("c-1", "hello"), done_command, agent("all green")))
    await until(lambda: any(e.kind == "turn" for e in seen) or follower.done())
    await bridge.ok("archive", **on_thread())
    await asyncio.wait_for(follower, 30 * SLOW)
    talk = [(e.kind, e.text or e.target or e.outcome) for e in seen if e.kind not in ("status", "tokens")]
    assert talk == [
        ("prompt", "hello"),
        ("tool", "/bin/bash -lc 'make test'"),
        ("result", "ok"),
        ("reply", "all green"),
        ("turn", "completed"),
    ]
    assert seen[-1] == Event("status", SESSION, seen[-1].timestamp, state="exited")
