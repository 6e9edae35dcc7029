"""End to end with both agents at once: the real Claude Code and the real Codex app-server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dev_sessions.selftest.fakes.anthropic import FakeAnthropic
from dev_sessions.selftest.fakes.openai_responses import FakeResponses
from tests.conftest import DevSessions, eventually
from tests.fakes.agents import AgentSet

pytestmark = pytest.mark.e2e


def bridge_said(needle: str) -> bool:
    log = Path(os.environ["DEV_SESSIONS_HOME"]) / "codex" / "bridge.log"
    return log.exists() and needle in log.read_text()


def test_one_wait_on_a_claude_and_a_codex_session(
    cli: DevSessions, claude: FakeAnthropic, codex: FakeResponses
) -> None:
    cx = cli.ok("create", "--cli", "codex", "-q").strip()
    cl = cli.ok("create", "-q").strip()
    cli.ok("send", cx, "codex part <<hold:codex>>")
    cli.ok("send", cl, "claude part <<hold:claude>>")
    eventually(lambda: codex.holding("codex") == 1 and claude.holding("claude") == 1)
    waiter = cli.start("wait", cx, cl, "--timeout", "120", debug=True)
    waiter.said(f"{cl}: waiting for the turn to end")
    eventually(lambda: bridge_said(f"{cx}: waiting for the turn to end"))
    # Both ends must come before it returns: the first one alone is not enough.
    claude.release("claude")
    cli.ok("wait", cl, "--timeout", "60")
    assert waiter.process.poll() is None, "one of the two turns still runs"
    codex.release("codex")
    result = waiter.finish(60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [cx, cl], "in the order the ids were given"
    assert all(": completed in " in line for line in lines)
    assert cli.ok("last-message", cx) == "codex part <<hold:codex>>\n"
    assert cli.ok("last-message", cl) == "claude part <<hold:claude>>\n"


def test_doctor_on_the_host(
    cli: DevSessions, claude: FakeAnthropic, codex: FakeResponses, agents: AgentSet
) -> None:
    result = cli("doctor")
    assert result.returncode == 0, result.stdout
    checks = {c["check"]: c for c in json.loads(cli.ok("doctor", "--json"))}
    assert {name: c["level"] for name, c in checks.items()} == {
        "tmux": "ok", "claude": "ok", "claude setup": "ok", "codex": "ok", "store": "ok",
        "codex app-server": "ok",
    }  # fmt: skip
    assert checks["claude"]["message"].startswith(agents.claude_version)
    assert agents.codex_version in checks["codex"]["message"]
    assert checks["codex app-server"]["message"].startswith("not running")
    assert f"ok    claude: {agents.claude_version}" in result.stdout
    # With a Codex session, it reports the app-server and the bridge it finds.
    cli.ok("create", "--cli", "codex", "-q")
    running = {c["check"]: c for c in json.loads(cli.ok("doctor", "--json"))}["codex app-server"]
    assert running["level"] == "ok" and "bridge on" in running["message"]


def test_doctor_says_what_to_fix(
    cli: DevSessions, claude: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEV_SESSIONS_CLAUDE_BIN", "/nowhere/claude")
    monkeypatch.setenv("DEV_SESSIONS_CODEX_BIN", "/nowhere/codex")
    (Path(os.environ["HOME"]) / ".claude.json").unlink()
    result = cli("doctor")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert (
        "fail  claude: /nowhere/claude not found; install it with "
        "`npm install -g @anthropic-ai/claude-code`, or set DEV_SESSIONS_CLAUDE_BIN"
    ) in lines
    assert any(line.startswith("warn  codex: /nowhere/codex not found;") for line in lines), lines
    assert any(line.startswith("warn  claude setup:") and "run `claude` once" in line for line in lines)
