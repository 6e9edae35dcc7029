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

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dev_sessions.config import Settings
from dev_sessions.selftest.fakes.anthropic import FakeAnthropic
from dev_sessions.selftest.fakes.openai_responses import FakeResponses
from tests.conftest import DevSessions, eventually, stop_codex
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
