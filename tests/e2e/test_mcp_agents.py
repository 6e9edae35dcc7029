"""The real agents see the dev-sessions MCP server once ``install-mcp`` has registered it: Claude Code
offers its tools to the (fake) model, the Codex app-server reports the server and its tools, and a
model turn that calls ``send_message`` delivers a message to another session."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from dev_sessions.codex.client import AppServerClient
from dev_sessions.codex.daemon import AppServer
from dev_sessions.selftest.fakes.anthropic import FakeAnthropic
from dev_sessions.selftest.fakes.openai_responses import FakeResponses
from tests.conftest import DevSessions, eventually

pytestmark = pytest.mark.e2e

# The tools issue 13 names (the server has a few more).
TOOLS = [
    *("create", "send", "wait", "ask", "last_message", "status", "respond", "interrupt", "goal"),
    *("list", "logs", "inspect", "kill", "send_message", "read_messages", "reply", "thread"),
    *("mark_read", "wait_for_message", "search_messages", "feed", "spaces", "agents"),
]
NOTICE = "[dev-sessions] Message "


def claude_offered(claude: FakeAnthropic) -> set[str]:
    # 2.1.197 puts MCP tools in the request's tools; 2.1.332 names them for ToolSearch (deferred).
    return set(claude.tool_names()) | set(claude.deferred_tool_names())


def connected(cli: DevSessions, claude: FakeAnthropic, sid: str) -> set[str]:
    """Turns until Claude offers our tools: it connects MCP servers in the background (about a
    second here), and a request made before that names the server as "still connecting"."""

    def offered() -> set[str]:
        cli.ok("ask", sid, "are the tools there?", "--timeout", "60")
        names = claude_offered(claude)
        return names if "mcp__dev-sessions__send_message" in names else set()

    return set(eventually(offered, timeout=60, interval=0.2))  # type: ignore[arg-type]


def prompts_seen(cli: DevSessions, sid: str) -> list[str]:
    return [i["text"] for i in json.loads(cli.ok("logs", sid, "--json")) if i["role"] == "user"]


def test_claude_code_offers_the_dev_sessions_tools(cli: DevSessions, claude: FakeAnthropic) -> None:
    sid = cli.ok("create", "-q").strip()
    cli.ok("ask", sid, "before", "--timeout", "60")
    assert not any(name.startswith("mcp__dev-sessions__") for name in claude_offered(claude))
    cli.ok("kill", sid)

    cli.ok("install-mcp", "--claude")
    sid = cli.ok("create", "-q").strip()
    names = connected(cli, claude, sid)
    missing = [tool for tool in TOOLS if f"mcp__dev-sessions__{tool}" not in names]
    assert missing == []


def test_codex_app_server_reports_the_server_and_its_tools(
    cli: DevSessions, codex: FakeResponses, workdir: Path
) -> None:
    cli.ok("install-mcp", "--codex")
    app = AppServer(Path(os.environ["DEV_SESSIONS_HOME"]), os.environ["DEV_SESSIONS_CODEX_BIN"], os.environ)
    state = app.ensure()

    async def statuses() -> dict[str, dict[str, object]]:
        client = AppServerClient(state.url, app.token())
        await client.connect()
        try:
            result = await client.call("mcpServerStatus/list", {})
        finally:
            await client.close()
        return {entry["name"]: entry for entry in result["data"]}

    servers = asyncio.run(statuses())
    assert list(servers) == ["dev-sessions"]
    tools = servers["dev-sessions"]["tools"]
    assert isinstance(tools, dict)
    assert [tool for tool in TOOLS if tool not in tools] == []
    assert servers["dev-sessions"]["serverInfo"] == {
        **servers["dev-sessions"]["serverInfo"],
        "name": "dev-sessions",
    }  # type: ignore[dict-item]


def test_a_claude_turn_calling_send_message_delivers_it_to_another_session(
    cli: DevSessions, claude: FakeAnthropic
) -> None:
    cli.ok("install-mcp", "--claude")
    receiver = cli.ok("create", "-q", "-d", "receiver").strip()
    sender = cli.ok("create", "-q", "-d", "sender").strip()
    connected(cli, claude, sender)
    call = json.dumps({"to": receiver, "body": "hello through the MCP tool"})
    reply = cli.ok("ask", sender, f"<<tool:mcp__dev-sessions__send_message:{call}>>", "--timeout", "60")
    assert reply.startswith("OUTPUT: "), reply
    notice = eventually(lambda: next((p for p in prompts_seen(cli, receiver) if p.startswith(NOTICE)), None))
    assert f" from {sender}" in str(notice)
    assert "hello through the MCP tool" in str(notice)


def test_a_codex_turn_calling_send_message_delivers_it_to_another_session(
    cli: DevSessions, codex: FakeResponses
) -> None:
    cli.ok("install-mcp", "--codex")
    receiver = cli.ok("create", "--cli", "codex", "-q").strip()
    sender = cli.ok("create", "--cli", "codex", "-q").strip()

    def offered() -> str | None:
        # Turns until one offers our tool: Codex starts its MCP servers alongside the first turn (a
        # second of the SDK's import here, longer on a busy machine), and the last request recorded
        # may be a side one (a title) without tools.
        cli.ok("ask", sender, "which tools?", "--timeout", "60")
        found = [n for n in codex.tool_names() if n.endswith("send_message") and "dev_sessions" in n]
        return found[0] if found else None

    tool = str(eventually(offered, timeout=90, interval=0.5))
    call = json.dumps({"to": receiver, "body": "hello through the MCP tool"})
    reply = cli.ok("ask", sender, f"<<tool:{tool}:{call}>>", "--timeout", "60")
    assert reply.startswith("OUTPUT: "), reply
    cli.ok("wait", receiver, "--timeout", "60")
    notice = eventually(lambda: next((p for p in prompts_seen(cli, receiver) if p.startswith(NOTICE)), None))
    assert "hello through the MCP tool" in str(notice)
    # From the session whose turn called the tool: one server serves every Codex thread, and each
    # call names its thread (its _meta), which is the sending session's.
    assert f" from {sender} " in str(notice), notice
