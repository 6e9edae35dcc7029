"""End to end with both agents at once: the real Claude Code and the real Codex app-server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dev_sessions.selftest.fakes.anthropic import FakeAnthropic
from dev_sessions.selftest.fakes.openai_responses import FakeResponses
from tests.conftest import DevSessions, eventually, git_repo
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
        "codex app-server": "ok", "warm commands": "ok",
    }  # fmt: skip
    # The tests run their commands in-process unless they ask (tests/conftest.py: isolated).
    assert checks["warm commands"]["message"].startswith("off (DEV_SESSIONS_WARM=0)")
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


def test_each_agent_works_in_a_worktree_of_its_own(
    cli: DevSessions, claude: FakeAnthropic, codex: FakeResponses, workdir: Path
) -> None:
    repo = workdir / "repo"
    git_repo(repo)
    cl = cli.ok("create", "-q", "--worktree", "-p", str(repo)).strip()
    if cli.ok("status", cl).strip() == "waiting_for_input":  # Claude 2.1.332 asks to trust a new folder
        assert "trust" in json.loads(cli.ok("status", cl, "--json"))["dialog"]["question"]
        cli.ok("respond", cl, "Yes, I trust this folder")
        eventually(lambda: cli.ok("status", cl).strip() == "idle")
    cx = cli.ok("create", "--cli", "codex", "-q", "--worktree", "-p", str(repo)).strip()
    rows = {r["championId"]: r for r in json.loads(cli.ok("list", "--json"))}
    for sid in (cl, cx):
        place = workdir / ".worktrees" / sid
        assert rows[sid]["worktree"] == str(place) and rows[sid]["branch"] == f"dev-sessions/{sid}"
        # A relative path: the agent runs in its worktree, not in the repository.
        cli.ok("send", sid, f"<<bash:touch made-by-{sid} && echo made>>")
    cli.ok("wait", cl, cx, "--timeout", "120")
    for sid in (cl, cx):
        assert (workdir / ".worktrees" / sid / f"made-by-{sid}").exists()
        assert not (repo / f"made-by-{sid}").exists()
    killed = cli("kill", cl, cx)
    assert killed.returncode == 0, killed.stderr
    for sid in (cl, cx):  # the files the agents made are not committed: the worktrees stay
        assert f"{sid}: worktree kept at {workdir / '.worktrees' / sid}" in killed.stderr
