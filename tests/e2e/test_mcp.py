"""End to end through `dev-sessions mcp`: the SDK's own client drives the real Claude Code and Codex
(offline, against the fake model servers) with the tools alone."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp.client.session import ClientSession

from dev_sessions.selftest.fakes.anthropic import FakeAnthropic
from dev_sessions.selftest.fakes.openai_responses import FakeResponses
from tests.conftest import DevSessions, eventually
from tests.fakes.mcp_client import result, run

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("agent", ["claude", "codex"])
def test_create_send_wait_last_message_with_progress(
    agent: str, claude: FakeAnthropic, codex: FakeResponses, workdir: Path
) -> None:
    reports: list[tuple[float, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        reports.append((done, message))

    async def scenario(session: ClientSession) -> None:
        created = result(await session.call_tool("create", {"cli": agent, "description": "via mcp"}))
        sid = created["session"]["championId"]
        sent = result(await session.call_tool("send", {"session_id": sid, "text": "slowly <<slow:3>>"}))
        assert sent["championId"] == sid
        (waited,) = result(
            await session.call_tool(
                "wait", {"session_ids": [sid], "timeout": 120}, progress_callback=progress
            )
        )
        assert waited["outcome"] == "completed", waited
        assert result(await session.call_tool("last_message", {"session_id": sid})) == ["slowly <<slow:3>>"]
        # It reported while the turn ran, naming the session and its state.
        assert any(message and f"{sid} working" in message for _, message in reports), reports
        outcome, reply = result(await session.call_tool("ask", {"session_id": sid, "text": "and now?"}))
        assert (outcome["outcome"], reply) == ("completed", ["and now?"])
        conversation = await session.read_resource(f"dev-sessions://sessions/{sid}/conversation")
        assert "and now?" in conversation.contents[0].text  # type: ignore[union-attr]
        (killed,) = result(await session.call_tool("kill", {"session_ids": [sid]}))
        assert killed["killed"] is True

    run(workdir, scenario)


def test_a_cancelled_wait_leaves_the_session_untouched(
    claude: FakeAnthropic, workdir: Path, cli: DevSessions
) -> None:
    sid = cli.ok("create", "-q").strip()
    cli.ok("send", sid, "a long job <<hold>>")
    eventually(lambda: claude.holding() == 1)

    async def scenario(session: ClientSession) -> None:
        started = anyio.Event()

        async def noticed(done: float, total: float | None, message: str | None) -> None:
            started.set()

        async with anyio.create_task_group() as group:

            async def waiting() -> None:
                await session.call_tool("wait", {"session_ids": [sid]}, progress_callback=noticed)

            group.start_soon(waiting)
            await started.wait()
            group.cancel_scope.cancel()
        assert result(await session.call_tool("status", {"session_id": sid}))["state"] == "working"

    run(workdir, scenario)
    claude.release()
    assert cli.ok("wait", sid, "--timeout", "60").startswith(f"{sid}: completed")
    assert cli.ok("last-message", sid) == "a long job <<hold>>\n"


def test_codex_through_mcp_answers_like_the_command_line(
    codex: FakeResponses, workdir: Path, cli: DevSessions
) -> None:
    async def scenario(session: ClientSession) -> None:
        sid = result(await session.call_tool("create", {"cli": "codex"}))["session"]["championId"]
        outcome, reply = result(await session.call_tool("ask", {"session_id": sid, "text": "hello codex"}))
        assert (outcome["outcome"], reply) == ("completed", ["hello codex"])
        assert cli.ok("last-message", sid) == "hello codex\n"  # one store, one API

    run(workdir, scenario)
