"""End to end: messages reach the conversations of real Claude and Codex sessions, on both engines.

Every test runs once per pinned agent set on SQLite (the default store), and once more on PostgreSQL
with one set only (the newest asked for: ``current`` unless ``DEV_SESSIONS_TEST_AGENTS`` says
otherwise). The two questions do not cross: what the agent set changes (how a notice is pasted into,
or steered into, each CLI's conversation) is the same code on either engine, and what the engine
changes (the store, its push waking ``msg wait`` and the deliverer, the deliverer's claim, retries on
the clock) is the same code for either set. A full cross (2 sets x 2 engines) would double this file
(~55 s of real agents on two cores, the CI suite's slowest kind of test); one more run per test adds
about half that, and still puts each engine under both CLIs, Claude and Codex.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dev_sessions.config import Settings
from dev_sessions.messaging.store import store_for
from dev_sessions.selftest.fakes.anthropic import FakeAnthropic
from dev_sessions.selftest.fakes.openai_responses import FakeResponses
from tests.conftest import ROOT, DevSessions, eventually, stop_codex
from tests.fakes.agents import agent_sets


def _runs() -> list[Any]:
    sets = agent_sets()
    runs = [pytest.param(s, "sqlite", id=f"{s.id}-sqlite") for s in sets]
    return [*runs, pytest.param(sets[-1], "postgres", id=f"{sets[-1].id}-postgres")]


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize(("agents", "messages_url"), _runs(), indirect=True),
]


@pytest.fixture(autouse=True)
def engine(messages_url: str | None) -> Iterator[str | None]:
    """Every test here on the engine of its run (``messages_url`` sets it for every command, and the
    sessions' own commands inherit it): on a server, nothing was stored in a local file."""
    yield messages_url
    if messages_url is not None:
        assert not (Settings.from_env().home / "messages.db").exists()


NOTICE = "[dev-sessions] Message {id} from {sender}"


def state_of(cli: DevSessions, message_id: str, recipient: str) -> str:
    receipts = json.loads(cli.ok("msg", "status", message_id, "--json"))["recipients"]
    return str(next(r["state"] for r in receipts if r["recipient"] == recipient))


def prompts_seen(cli: DevSessions, sid: str) -> list[str]:
    return [i["text"] for i in json.loads(cli.ok("logs", sid, "--json")) if i["role"] == "user"]


def prompt_seen(cli: DevSessions, sid: str, starts: str) -> str:
    """The first prompt in the transcript that starts with ``starts``, once it is there: Claude writes
    the user entry a moment after it takes the Enter (and a delivered notice is one taken)."""
    found = eventually(lambda: next((p for p in prompts_seen(cli, sid) if p.startswith(starts)), None))
    return str(found)


def test_dm_to_an_idle_claude_session_arrives_as_a_framed_notice(
    cli: DevSessions, claude: FakeAnthropic
) -> None:
    sid = cli.ok("create", "-q").strip()
    mid = cli.ok("msg", "send", "--to", sid, "--priority", "high", "please rerun the tests").strip()
    eventually(lambda: state_of(cli, mid, sid) == "delivered")
    notice = prompt_seen(cli, sid, NOTICE.format(id=mid, sender="user"))
    assert "(priority high, for " + sid + ")" in notice
    assert "please rerun the tests" in notice
    assert f'dev-sessions msg reply {mid} "..."' in notice
    cli.ok("wait", sid, "--timeout", "60")  # the notice started a turn; it ends like any other


def test_dm_to_a_working_claude_session_waits_for_the_turn_to_end(
    cli: DevSessions, claude: FakeAnthropic
) -> None:
    sid = cli.ok("create", "-q").strip()
    cli.ok("send", sid, "busy for a while <<hold>>")
    eventually(lambda: claude.holding() == 1)  # the turn runs until the test lets it end
    mid = cli.ok("msg", "send", "--to", sid, "when you are free").strip()
    assert state_of(cli, mid, sid) == "queued"
    claude.release()
    cli.ok("wait", sid, "--timeout", "60")
    eventually(lambda: state_of(cli, mid, sid) == "delivered", timeout=15)
    prompt_seen(cli, sid, NOTICE.format(id=mid, sender="user"))
    prompts = prompts_seen(cli, sid)
    assert prompts[0] == "busy for a while <<hold>>"
    assert prompts[1].startswith(NOTICE.format(id=mid, sender="user"))


def test_dm_to_codex_idle_busy_and_urgent(cli: DevSessions, codex: FakeResponses) -> None:
    sid = cli.ok("create", "--cli", "codex", "-q").strip()
    first = cli.ok("msg", "send", "--to", sid, "hello codex").strip()
    eventually(lambda: state_of(cli, first, sid) == "delivered")
    cli.ok("wait", sid, "--timeout", "60")
    assert cli.ok("last-message", sid).startswith(NOTICE.format(id=first, sender="user"))

    cli.ok("send", sid, "long job <<hold>>")  # runs until the urgent message is steered into it
    eventually(lambda: codex.holding() == 1)
    later = cli.ok("msg", "send", "--to", sid, "after the job").strip()
    urgent = cli.ok("msg", "send", "--to", sid, "--priority", "urgent", "stop and look").strip()
    eventually(lambda: state_of(cli, later, sid) == "delivered", timeout=30)

    def delivered_at(message_id: str) -> str:
        receipts = json.loads(cli.ok("msg", "status", message_id, "--json"))["recipients"]
        return str(receipts[0]["deliveredAt"])

    # The urgent one was steered into the running job; the other waited for it to end.
    assert delivered_at(urgent) < delivered_at(later)
    steered = [p for p in codex.prompts() if f"Message {urgent} from user" in p]
    assert steered, "the urgent notice reached the model"
    cli.ok("wait", sid, "--timeout", "60")


def test_child_session_reports_to_its_parent(
    cli: DevSessions, claude: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEV_SESSIONS_AGENT", "boss")
    cli.ok("agents", "register", "boss")
    child = cli.ok("create", "-q").strip()
    assert json.loads(cli.ok("inspect", child))["session"]["parent"] == "boss"
    # The fake model makes the child run the command, as a real model would when told to report.
    report = f"{sys.executable} -m dev_sessions msg send --to parent 'the answer is 42'"
    cli.ok("send", child, f"work, then report <<bash:{report}>>")
    (message,) = json.loads(cli.ok("msg", "wait", "--as", "boss", "--timeout", "60", "--json"))
    assert (message["from"], message["body"]) == (child, "the answer is 42")
    cli.ok("wait", child, "--timeout", "60")


def test_codex_session_reports_to_its_parent(
    cli: DevSessions, codex: FakeResponses, monkeypatch: pytest.MonkeyPatch, workdir: Path
) -> None:
    monkeypatch.setenv("DEV_SESSIONS_AGENT", "boss")
    cli.ok("agents", "register", "boss")
    child = cli.ok("create", "--cli", "codex", "-q").strip()
    report = f"{sys.executable} -m dev_sessions msg send --to parent done-from-codex"
    cli.ok("send", child, f"report <<bash:{report}>>")
    (message,) = json.loads(cli.ok("msg", "wait", "--as", "boss", "--timeout", "60", "--json"))
    assert (message["from"], message["body"]) == (child, "done-from-codex")


def test_queued_messages_survive_a_crashed_deliverer(cli: DevSessions, claude: FakeAnthropic) -> None:
    sid = cli.ok("create", "-q").strip()
    cli.ok("send", sid, "busy <<hold>>")
    eventually(lambda: claude.holding() == 1)
    mid = cli.ok("msg", "send", "--to", sid, "do not lose me").strip()
    lock = Settings.from_env().home / "deliverer.lock"
    pid = int(eventually(lambda: lock.exists() and lock.read_text().strip()))  # type: ignore[arg-type]
    os.kill(pid, signal.SIGKILL)
    claude.release()
    cli.ok("wait", sid, "--timeout", "60")
    assert state_of(cli, mid, sid) == "queued", "nobody delivered it: the deliverer is dead"
    # Any messaging command that sees work left starts a new deliverer, which carries on.
    eventually(lambda: state_of(cli, mid, sid) == "delivered", timeout=20)
    assert "do not lose me" in prompt_seen(cli, sid, NOTICE.format(id=mid, sender="user"))


def receipt(cli: DevSessions, message_id: str) -> dict[str, object]:
    (only,) = json.loads(cli.ok("msg", "status", message_id, "--json"))["recipients"]
    return dict(only)


def test_a_failed_delivery_keeps_its_reason_and_is_retried(cli: DevSessions, codex: FakeResponses) -> None:
    sid = cli.ok("create", "--cli", "codex", "-q").strip()
    cli.ok("ask", sid, "before the trouble", "--timeout", "60")
    # The app-server goes, and Codex's configuration breaks: the deliverer's attempt to bring the
    # thread back (thread/resume) is refused.
    stop_codex(Path(os.environ["DEV_SESSIONS_HOME"]))
    config = Path(os.environ["CODEX_HOME"]) / "config.toml"
    good = config.read_text()
    config.write_text("this is [not toml\n")
    mid = cli.ok("msg", "send", "--to", sid, "please retry me").strip()
    failed = eventually(lambda: (r := receipt(cli, mid))["state"] == "failed" and r, timeout=30)
    assert isinstance(failed, dict)
    assert "failed to load configuration" in str(failed["reason"])
    assert (failed["attempts"], failed["retrying"]) == (1, True)
    shown = cli.ok("msg", "status", mid)
    assert f"  {sid}: failed: " in shown and "failed to load configuration" in shown
    assert "(retrying)" in shown
    config.write_text(good)
    # The deliverer tries again by itself (after 5 s): nobody sends anything.
    delivered = eventually(lambda: (r := receipt(cli, mid))["state"] == "delivered" and r, timeout=30)
    assert isinstance(delivered, dict)
    assert delivered["attempts"] == 2
    cli.ok("wait", sid, "--timeout", "60")
    assert cli.ok("last-message", sid).startswith(NOTICE.format(id=mid, sender="user"))


# -- a deliverer killed in the middle of a delivery ------------------------------------------------------

DYING_DELIVERER = textwrap.dedent(
    """
    import os, signal, sys
    from dev_sessions import tmux
    from dev_sessions.claude.backend import ClaudeBackend
    from dev_sessions.codex.backend import CodexBackend
    from dev_sessions.messaging import deliver

    # The real deliverer (its lock, its log), killed -9 at one point of its first delivery.
    if sys.argv[1] == "before-enter":  # the notice is in Claude's input box, Enter not pressed
        send_keys = tmux.Tmux.send_keys

        def dying_keys(self, session, keys, **options):
            keys = list(keys)
            if keys == ["Enter"]:
                os.kill(os.getpid(), signal.SIGKILL)
            return send_keys(self, session, keys, **options)

        tmux.Tmux.send_keys = dying_keys
    else:  # "after-typing": the backend has put it into the conversation; the receipt is not marked
        for backend in (ClaudeBackend, CodexBackend):
            def dying_deliver(self, *args, _deliver=backend.deliver, **options):
                if _deliver(self, *args, **options):
                    os.kill(os.getpid(), signal.SIGKILL)
                return False

            backend.deliver = dying_deliver
    deliver.main()
    """
)


@contextlib.contextmanager
def dying_deliverer(point: str) -> Iterator[subprocess.Popen[bytes]]:
    """This machine's deliverer, to be killed -9 at ``point`` of its first delivery. It holds the
    deliverer's lock before the test creates a session (on a shared store ``create`` starts one) or
    sends anything, so that it is the one that delivers."""
    lock = Settings.from_env().home / "deliverer.lock"
    environ = {**os.environ, "DEV_SESSIONS_DELIVERER_LINGER": "600", "PYTHONPATH": str(ROOT)}
    with (lock.parent.parent / f"dying-deliverer-{point}.out").open("w") as out:
        dying = subprocess.Popen(
            [sys.executable, "-c", DYING_DELIVERER, point], cwd=ROOT, env=environ, stdout=out, stderr=out
        )
    try:
        eventually(lambda: lock.exists() and lock.read_text().strip() == str(dying.pid), timeout=30)
        yield dying
        assert dying.wait(timeout=120) == -signal.SIGKILL
    finally:
        if dying.poll() is None:
            dying.kill()
            dying.wait()


def left_marked(mid: str, sid: str, killed: subprocess.Popen[bytes]) -> None:
    """The receipt the killed deliverer left: queued, with the mark of its typing."""
    store = store_for(Settings.from_env())  # not through a command: one would start a deliverer
    try:
        receipt = store.receipt(int(mid), sid)
    finally:
        store.close()
    assert receipt is not None and receipt.state == "queued"
    assert receipt.pasting_by is not None and receipt.pasting_by.endswith(f" pid {killed.pid}")


def notices_in(cli: DevSessions, sid: str, mid: str) -> list[str]:
    return [p for p in prompts_seen(cli, sid) if p.startswith(NOTICE.format(id=mid, sender="user"))]


def deliverer_said() -> str:
    return (Settings.from_env().home / "deliverer.log").read_text()


def test_a_deliverer_killed_after_pasting_into_claude_delivers_it_once_after_restart(
    cli: DevSessions, claude: FakeAnthropic, messages_url: str | None
) -> None:
    with dying_deliverer("after-typing") as dying:
        sid = cli.ok("create", "-q").strip()
        mid = cli.ok("msg", "send", "--to", sid, "only once, please").strip()
    left_marked(mid, sid, dying)
    # Any messaging command that sees work left starts a new deliverer; it finds the notice in the
    # transcript and does not paste it again.
    eventually(lambda: state_of(cli, mid, sid) == "delivered", timeout=60)
    cli.ok("wait", sid, "--timeout", "60")
    assert len(notices_in(cli, sid, mid)) == 1
    assert f"message {mid} to {sid}: in its conversation already; not typed again" in deliverer_said()
    receipt = json.loads(cli.ok("msg", "status", mid, "--json"))["recipients"][0]
    assert (receipt["pastingAt"], receipt["attempts"]) == (None, 1)


def test_a_notice_left_in_claudes_input_box_is_sent_once_after_restart(
    cli: DevSessions, claude: FakeAnthropic
) -> None:
    with dying_deliverer("before-enter") as dying:
        sid = cli.ok("create", "-q").strip()
        mid = cli.ok("msg", "send", "--to", sid, "only once, please").strip()
    left_marked(mid, sid, dying)
    # Not in the transcript: once its mark settles, the new deliverer types it again through the
    # editor key, whose text replaces the box's (the same text: the box shows no change), and Enter.
    eventually(lambda: state_of(cli, mid, sid) == "delivered", timeout=60)
    cli.ok("wait", sid, "--timeout", "60")
    (notice,) = notices_in(cli, sid, mid)
    assert "only once, please" in notice
    assert f"{sid}: the input box held this text already; the editor's copy replaced it" in deliverer_said()


def test_a_deliverer_killed_after_starting_a_codex_turn_delivers_it_once_after_restart(
    cli: DevSessions, codex: FakeResponses, messages_url: str | None
) -> None:
    with dying_deliverer("after-typing") as dying:
        sid = cli.ok("create", "--cli", "codex", "-q").strip()
        mid = cli.ok("msg", "send", "--to", sid, "only once, please").strip()
    left_marked(mid, sid, dying)
    eventually(lambda: state_of(cli, mid, sid) == "delivered", timeout=60)
    cli.ok("wait", sid, "--timeout", "60")
    assert len(notices_in(cli, sid, mid)) == 1
    assert len([p for p in codex.prompts() if f"Message {mid} from user" in p]) == 1
    assert f"message {mid} to {sid}: in its conversation already; not typed again" in deliverer_said()
