"""A notice reaches its session once, however its deliverer is stopped: killed -9 before it types,
after it typed and before it marked the receipt delivered, or its typing failing after the text went
in. On both engines.

The deliverer is the real ``Deliverer`` in a process of its own, with a scripted agent backend whose
conversation is a file: every notice typed is its first line there, and the backend's ``log`` reads
it back, as Claude's transcript or a Codex thread would show it. ``DIE`` makes the process kill itself
(SIGKILL, no clean-up) at one exact point of a delivery, so the test needs no timing to stop it there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev_sessions.messaging.store import MessageStore, open_store
from dev_sessions.store import Session, SessionStore
from tests.conftest import ROOT, eventually

SID = "fizz-top"

DELIVERER = textwrap.dedent(
    """
    import logging, os, signal, sys
    from pathlib import Path
    from dev_sessions.backend import LogItem
    from dev_sessions.config import Settings
    from dev_sessions.errors import NotReady
    from dev_sessions.messaging import deliver
    from dev_sessions.sessions import SessionManager
    from tests.fakes.backend import FakeBackend

    CONVERSATION = Path(sys.argv[1])
    DIE = os.environ.get("DIE", "")
    deliver.SETTLE_S = float(os.environ.get("SETTLE", deliver.SETTLE_S))

    class Typing(FakeBackend):
        # The session's conversation is a file: each notice typed is its first line there.
        failed = False

        def deliver(self, session, text, *, urgent=False, check=None):
            verdict = check() if check is not None else "type"
            if verdict != "type":
                return verdict == "there"
            if DIE == "before-typing":
                os.kill(os.getpid(), signal.SIGKILL)
            with CONVERSATION.open("a") as conversation:
                conversation.write(text.splitlines()[0] + "\\n")
            if DIE == "after-typing":
                os.kill(os.getpid(), signal.SIGKILL)
            if DIE == "typing-fails" and not self.failed:  # the text went in, then the backend gave up
                self.failed = True
                raise NotReady(session_id=session.id, waited=2, screen_hint="the prompt is still in the box")
            return True

        def log(self, session):
            lines = CONVERSATION.read_text().splitlines() if CONVERSATION.exists() else []
            return [LogItem("2026-11-29T10:00:00Z", "user", line) for line in lines]

    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(message)s")
    settings = Settings.from_env()
    deliverer = deliver.Deliverer(settings, os.environ)
    deliverer.manager = SessionManager(settings, backends={"claude": Typing()})
    print("ready", flush=True)
    deliverer.run()
    """
)


@pytest.fixture
def machine(tmp_path: Path, messages_url: str | None) -> dict[str, str]:
    """An environment with its own state dir that knows one Claude session, on the engine under test."""
    home = tmp_path / "machine"
    home.mkdir(mode=0o700)
    with SessionStore(home / "sessions.json").transaction() as document:
        document.put(Session(id=SID, internal_id=f"{SID}-uuid", cli="claude", path=str(tmp_path)))
    env = {
        **os.environ,
        "DEV_SESSIONS_HOME": str(home),
        "DEV_SESSIONS_DELIVERER_LINGER": "30",
        "DEV_SESSIONS_MACHINE": "alpha",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("DEV_SESSIONS_MESSAGES_URL", None)
    if messages_url is not None:
        env["DEV_SESSIONS_MESSAGES_URL"] = messages_url
    return env


@pytest.fixture
def store(machine: dict[str, str], messages_url: str | None) -> Iterator[MessageStore]:
    opened = open_store(messages_url or Path(machine["DEV_SESSIONS_HOME"]) / "messages.db")
    yield opened
    opened.close()


def _deliverer(env: dict[str, str], conversation: Path, **extra: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", DELIVERER, str(conversation)],
        cwd=ROOT, env={**env, **extra}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stdout.readline() == "ready\n", process.stderr
    return process


@contextlib.contextmanager
def _reaped(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def _typed(conversation: Path) -> list[str]:
    return conversation.read_text().splitlines() if conversation.exists() else []


def _killed_then_restarted(
    store: MessageStore, machine: dict[str, str], conversation: Path, point: str
) -> tuple[int, str]:
    """A message sent, its deliverer killed at ``point``, a new one started: (the message, what the
    new deliverer logged) once the receipt is delivered."""
    with _reaped(_deliverer(machine, conversation, DIE=point)) as killed:
        sent = store.send("user", {SID: "conversation"}, "only once").id
        killed.wait(timeout=60)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
    receipt = store.receipts(sent)[0]
    assert receipt.state == "queued", "killed before it marked the receipt"
    assert receipt.pasting_at is not None and receipt.pasting_by == f"alpha pid {killed.pid}"
    with _reaped(_deliverer(machine, conversation, SETTLE="1")) as restarted:
        # It says what it did just after it records the delivery: read until it has said it.
        lines: list[str] = []
        assert restarted.stderr is not None
        reader = threading.Thread(target=lambda: lines.extend(restarted.stderr), daemon=True)  # type: ignore[arg-type]
        reader.start()
        eventually(lambda: store.receipts(sent)[0].state == "delivered", timeout=60)
        eventually(lambda: any(f"message {sent} " in line for line in lines), timeout=30)
        restarted.kill()
        restarted.wait(timeout=10)
        reader.join(timeout=10)
    return sent, "".join(lines)


def test_killed_after_typing_the_notice_is_not_typed_again(
    store: MessageStore, machine: dict[str, str], tmp_path: Path
) -> None:
    conversation = tmp_path / "conversation"
    sent, said = _killed_then_restarted(store, machine, conversation, "after-typing")
    head = f"[dev-sessions] Message {sent} from user (priority normal, for {SID}):"
    assert _typed(conversation) == [head], "in the conversation once"
    assert f"message {sent} to {SID}: in its conversation already; not typed again" in said
    receipt = store.receipts(sent)[0]
    assert (receipt.state, receipt.pasting_at, receipt.pasting_by) == ("delivered", None, None)


def test_killed_before_typing_the_notice_types_it_once_its_mark_settles(
    store: MessageStore, machine: dict[str, str], tmp_path: Path
) -> None:
    conversation = tmp_path / "conversation"
    sent, said = _killed_then_restarted(store, machine, conversation, "before-typing")
    head = f"[dev-sessions] Message {sent} from user (priority normal, for {SID}):"
    assert _typed(conversation) == [head], "typed by the new deliverer, once"
    assert "not in its conversation, looking again in 1 s" in said
    assert f"message {sent} delivered to {SID}" in said


def test_typing_that_failed_after_the_text_went_in_is_not_retried_blindly(
    store: MessageStore, machine: dict[str, str], tmp_path: Path
) -> None:
    conversation = tmp_path / "conversation"
    with _reaped(_deliverer(machine, conversation, DIE="typing-fails", SETTLE="1")) as deliverer:
        sent = store.send("user", {SID: "conversation"}, "only once").id
        failed = eventually(lambda: (r := store.receipts(sent)[0]).state == "failed" and r)
        assert failed.reason is not None and "the prompt is still in the box" in failed.reason  # type: ignore[union-attr]
        # Its retry (5 s later) finds the notice there, and does not type it again.
        eventually(lambda: store.receipts(sent)[0].state == "delivered", timeout=60)
        assert deliverer.poll() is None, deliverer.stderr
    head = f"[dev-sessions] Message {sent} from user (priority normal, for {SID}):"
    assert _typed(conversation) == [head]
    receipt = store.receipts(sent)[0]
    assert (receipt.attempts, receipt.pasting_at) == (2, None)
