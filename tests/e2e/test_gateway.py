"""End to end through the gateway: a sandboxed command line drives a real Claude session on the host."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dev_sessions.selftest.fakes.anthropic import FakeAnthropic
from dev_sessions.selftest.fakes.openai_responses import FakeResponses
from tests.conftest import DevSessions, GatewayProcess, eventually, start_gateway

pytestmark = pytest.mark.e2e


def in_container(
    gw: GatewayProcess, isolated: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> DevSessions:
    """The command line as inside a container whose /workspace is the host's work directory."""
    workspace = isolated / "container" / "workspace"
    (workspace / "repo").mkdir(parents=True)
    (workdir / "repo").mkdir()
    monkeypatch.setenv("DEV_SESSIONS_SANDBOX", "1")
    monkeypatch.setenv("DEV_SESSIONS_GATEWAY_URL", gw.url)
    monkeypatch.setenv("DEV_SESSIONS_GATEWAY_TOKEN", gw.token)
    monkeypatch.setenv("CONTAINER_WORKSPACE", str(workspace))
    monkeypatch.setenv("HOST_PATH", str(workdir))
    return DevSessions(workspace / "repo")


@pytest.fixture
def container(
    claude: FakeAnthropic,
    gateway: GatewayProcess,
    isolated: Path,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> DevSessions:
    return in_container(gateway, isolated, workdir, monkeypatch)


def same(text: str) -> str:
    """Output with what differs between two runs (ids, timings) blanked."""
    return re.sub(r"\b[a-z]+-(top|jg|mid|adc|sup)\b", "ID", re.sub(r"\d+\.\d s", "N s", text))


def test_full_round_trip_is_the_same_as_local(
    container: DevSessions, cli: DevSessions, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = container.ok("create", "-q").strip()
    session = json.loads(container.ok("inspect", sid))["session"]
    assert session["path"] == str((workdir / "repo").resolve()), "the container path was translated"
    remote = [
        container.ok("send", sid, "hello from a container"),
        container.ok("wait", sid, "--timeout", "60"),
        container.ok("last-message", sid),
        container.ok("status", sid),
        container.ok("ask", sid, "and once more", "--timeout", "60"),
    ]
    monkeypatch.delenv("DEV_SESSIONS_SANDBOX")
    local_sid = cli.ok("create", "-q", "--path", str(workdir / "repo")).strip()
    local = [
        cli.ok("send", local_sid, "hello from a container"),
        cli.ok("wait", local_sid, "--timeout", "60"),
        cli.ok("last-message", local_sid),
        cli.ok("status", local_sid),
        cli.ok("ask", local_sid, "and once more", "--timeout", "60"),
    ]
    assert [same(out) for out in remote] == [same(out) for out in local]
    assert remote[2] == "hello from a container\n"


def test_twenty_concurrent_waits_through_the_gateway(
    claude: FakeAnthropic, isolated: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With debug on, the gateway logs each wait as it starts to block.
    log = isolated / "gateway.log"
    gw = start_gateway("--root", str(isolated), env={"DEV_SESSIONS_DEBUG": "1"}, log=log)
    try:
        container = in_container(gw, isolated, workdir, monkeypatch)
        sid = container.ok("create", "-q").strip()
        container.ok("send", sid, "take a moment <<hold>>")  # runs until the test lets it end
        eventually(lambda: claude.holding() == 1)
        with ThreadPoolExecutor(20) as pool:
            waits = [pool.submit(container, "wait", sid, "--timeout", "120") for _ in range(20)]
            eventually(lambda: gw.said().count(f"{sid}: waiting for the turn to end") == 20, timeout=60)
            assert container.ok("status", sid).strip() == "working", "all twenty wait on the running turn"
            claude.release()
            results = [w.result() for w in waits]
        assert [r.returncode for r in results] == [0] * 20, [r.stderr for r in results if r.returncode]
        assert all(r.stdout.startswith(f"{sid}: completed") for r in results)
        assert container.ok("last-message", sid) == "take a moment <<hold>>\n"
    finally:
        gw.process.terminate()
        gw.process.wait(timeout=10)


def test_a_waiting_question_is_answered_through_the_gateway(
    container: DevSessions, claude: FakeAnthropic
) -> None:
    sid = container.ok("create", "-q").strip()
    container.ok("send", sid, "choose <<ask>>")
    result = container("wait", sid, "--timeout", "60")
    assert result.returncode == 1
    assert "Which colour?" in result.stderr
    container.ok("respond", sid, "red")
    container.ok("wait", sid, "--timeout", "60")
    assert '"Which colour?"="Red"' in container.ok("last-message", sid)


def test_codex_plan_mode_and_its_question_through_the_gateway(
    codex: FakeResponses,
    gateway: GatewayProcess,
    isolated: Path,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container = in_container(gateway, isolated, workdir, monkeypatch)
    sid = container.ok("create", "--cli", "codex", "-q", "--plan").strip()
    container.ok("send", sid, "choose <<ask>>")
    result = container("wait", sid, "--timeout", "60")
    assert result.returncode == 1
    assert "Which colour?" in result.stderr
    container.ok("respond", sid, "blue")
    container.ok("wait", sid, "--timeout", "60")
    assert container.ok("last-message", sid) == 'ANSWER: {"answers":{"colour":{"answers":["Blue"]}}}\n'
    container.ok("send", sid, "--no-plan", "no more questions <<ask>>")
    container.ok("wait", sid, "--timeout", "60")
    assert container.ok("last-message", sid) == "ANSWER: request_user_input is unavailable in Default mode\n"


def test_logs_follow_is_streamed_through_the_gateway(container: DevSessions) -> None:
    """`logs --follow --json` in a container: the events come as the gateway streams them (one call,
    NDJSON lines), the turn's included, and the stream ends when the session is killed."""
    sid = container.ok("create", "-q").strip()
    follower = container.start("logs", sid, "--follow", "--json")
    eventually(lambda: '"kind":"tokens"' in follower.stdout, 30)
    container.ok("send", sid, "streamed <<bash:echo through-the-gateway>>")
    eventually(lambda: '"kind":"turn"' in follower.stdout, 60)
    container.ok("kill", sid)
    result = follower.finish(30)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    talk = [e["kind"] for e in events if e["kind"] in ("prompt", "reply", "tool", "result", "turn")]
    assert talk == ["prompt", "tool", "result", "reply", "turn"]
    tool = next(e for e in events if e["kind"] == "tool")
    assert tool["tool"] == "Bash" and "echo through-the-gateway" in tool["target"]
    assert events[-1] == {**events[-1], "kind": "status", "state": "exited"}
