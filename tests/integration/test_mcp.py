"""`dev-sessions mcp` through the official SDK's own client over stdio: the tools, their schemas, errors,
progress, cancellation, resources, and the same server in sandbox mode through a real gateway.

(The agents' own sessions through it, with the real `claude` and `codex`, are tests/e2e/test_mcp.py.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import jsonschema
import pytest
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError

from dev_sessions.api import calls, library
from dev_sessions.messaging.messenger import MAX_BODY
from tests.conftest import DevSessions, GatewayProcess
from tests.fakes.mcp_client import error, result, run


def test_every_call_of_the_api_is_a_tool_with_a_valid_schema(workdir: Path) -> None:
    every = [spec for api in ("sessions", "messages") for spec in calls(library(api)).values()]
    # A stream (`follow`) is no tool: a tool answers once (its backlog is the `logs` tool).
    expected = {spec.tool: spec for spec in every if not spec.stream}
    assert {spec.tool for spec in every if spec.stream} == {"follow"}

    async def scenario(session: ClientSession) -> None:
        listed = {t.name: t for t in (await session.list_tools()).tools}
        assert set(listed) == set(expected)
        for name in (
            "create",
            "send",
            "wait",
            "ask",
            "last_message",
            "status",
            "respond",
            "interrupt",
            "goal",
        ):
            assert name in listed
        for name in ("list", "logs", "kill", "send_message", "read_messages", "reply", "thread", "mark_read"):
            assert name in listed
        for name in ("wait_for_message", "search_messages", "feed", "spaces", "agents"):
            assert name in listed
        for name in ("react", "unreact", "reactions", "pin_message", "unpin_message", "pinned_messages"):
            assert name in listed
        for name in ("conversations", "prune_messages", "context", "stats", "register_agent", "heartbeat"):
            assert name in listed
        for name, tool in listed.items():
            jsonschema.Draft202012Validator.check_schema(tool.input_schema)
            assert tool.input_schema["additionalProperties"] is False
            assert set(tool.input_schema["properties"]) == set(
                expected[name].args
            )  # never a gateway-only one
            assert tool.description and len(tool.description) <= 120 and "\n" not in tool.description
        send = listed["send_message"].input_schema
        assert send["required"] == ["to", "body"] and send["properties"]["priority"]["default"] == "normal"
        assert listed["wait"].input_schema["properties"]["session_ids"]["type"] == "array"

    run(workdir, scenario)


def test_bad_input_gets_the_command_lines_one_line_and_the_server_goes_on(
    workdir: Path, cli: DevSessions
) -> None:
    async def scenario(session: ClientSession) -> None:
        unknown = error(await session.call_tool("status", {"session_id": "nope-top"}))
        local = cli("status", "nope-top")
        assert (unknown["type"], unknown["exitCode"]) == ("SessionNotFound", local.returncode)
        assert f"dev-sessions: {unknown['message']}\n" == local.stderr
        extra = error(await session.call_tool("status", {"session_id": "nope-top", "colour": "red"}))
        assert extra == {
            "type": "UsageError",
            "message": "status: no argument colour (see the tool's schema)",
            "exitCode": 2,
        }
        typed = error(await session.call_tool("last_message", {"session_id": "nope-top", "count": "two"}))
        assert typed["message"] == "last_message: count must be an integer" and typed["exitCode"] == 2
        missing = error(await session.call_tool("send_message", {"to": "user"}))
        assert missing["message"] == "send_message: missing body"
        big = error(await session.call_tool("send_message", {"to": "user", "body": "x" * (MAX_BODY + 1)}))
        assert big["message"] == f"the message is over {MAX_BODY // 1024} KB; send a file path instead"
        with pytest.raises(MCPError, match="no tool named 'frobnicate'"):
            await session.call_tool("frobnicate", {})
        assert result(await session.call_tool("list", {})) == []  # still serving

    run(workdir, scenario)


def test_messages_through_the_tools_and_the_inbox_resource(workdir: Path, cli: DevSessions) -> None:
    async def scenario(session: ClientSession) -> None:
        result(await session.call_tool("register_agent", {"name": "boss"}))
        sent = result(await session.call_tool("send_message", {"to": "boss", "body": "hello boss"}))
        assert (sent["from"], sent["body"]) == ("user", "hello boss")
        inbox = await session.read_resource("dev-sessions://agents/boss/inbox")
        (content,) = inbox.contents
        assert [m["body"] for m in json.loads(content.text)] == ["hello boss"]  # type: ignore[union-attr]
        got = result(await session.call_tool("wait_for_message", {"reader": "boss", "timeout": 5}))
        assert [m["id"] for m in got] == [sent["id"]]
        answer = result(await session.call_tool("reply", {"message_id": sent["id"], "body": "hello user"}))
        thread = result(await session.call_tool("thread", {"message_id": sent["id"]}))
        assert [m["id"] for m in thread] == [sent["id"], answer["id"]]
        templates = {t.uri_template for t in (await session.list_resource_templates()).resource_templates}
        assert templates == {
            "dev-sessions://sessions/{id}/conversation",
            "dev-sessions://agents/{name}/inbox",
        }
        with pytest.raises(MCPError, match="no such session"):
            await session.read_resource("dev-sessions://sessions/nope-top/conversation")
        # Issue 16's calls are tools like the others, with the --json shapes.
        assert result(await session.call_tool("react", {"message_id": answer["id"], "emoji": "👍"})) is True
        reactions = result(await session.call_tool("reactions", {"message_id": answer["id"]}))
        assert reactions == [{"emoji": "👍", "count": 1, "agents": ["user"]}]
        assert result(await session.call_tool("pin_message", {"message_id": sent["id"]})) is True
        pinned = result(await session.call_tool("pinned_messages", {"peer": "boss"}))
        assert [(p["id"], p["pinnedBy"]) for p in pinned] == [(sent["id"], "user")]
        talks = result(await session.call_tool("conversations", {}))
        # The reply went to its sender, the user itself: a note to self, apart from the one with boss.
        assert [(c["name"], c["messages"], c["unread"]) for c in talks] == [("user", 1, 1), ("boss", 1, 0)]
        assert result(await session.call_tool("context", {}))["unread"] == 1
        assert result(await session.call_tool("stats", {}))["pinned"] == 1
        bad = error(await session.call_tool("react", {"message_id": sent["id"], "emoji": "nice"}))
        assert bad["exitCode"] == 2 and "is not an emoji" in bad["message"]

    run(workdir, scenario)
    # The command line sees what the tools did: one store, one API.
    assert [m["body"] for m in json.loads(cli.ok("msg", "read", "--json"))] == ["hello user"]
    assert json.loads(cli.ok("msg", "reactions", "2", "--json"))[0]["agents"] == ["user"]


def test_a_long_call_reports_progress_and_a_cancelled_one_leaves_nothing_behind(
    workdir: Path, cli: DevSessions
) -> None:
    cli.ok("agents", "register", "boss")
    reports: list[tuple[float, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        reports.append((done, message))

    async def scenario(session: ClientSession) -> None:
        timed_out = await session.call_tool(
            "wait_for_message", {"reader": "boss", "timeout": 2.5}, progress_callback=progress
        )
        assert error(timed_out)["exitCode"] == 124
        assert len(reports) >= 2 and [r[0] for r in reports] == sorted(r[0] for r in reports)
        assert reports[0][1] == "1 s: waiting for a message for boss"
        first = anyio.Event()

        async def noticed(done: float, total: float | None, message: str | None) -> None:
            first.set()

        with anyio.move_on_after(30) as scope:
            async with anyio.create_task_group() as group:

                async def waiting() -> None:
                    await session.call_tool("wait_for_message", {"reader": "boss"}, progress_callback=noticed)

                group.start_soon(waiting)
                await first.wait()  # the wait is running on the server
                group.cancel_scope.cancel()  # the client cancels it (notifications/cancelled)
        assert not scope.cancelled_caught
        # Nothing of the cancelled wait is left on the server: a message now stays unread.
        sent = cli.ok("msg", "send", "--to", "boss", "after the cancel").strip()
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            unread = result(await session.call_tool("read_messages", {"reader": "boss", "unread": True}))
            assert [m["id"] for m in unread] == [int(sent)]
            await anyio.sleep(0.2)

    run(workdir, scenario)


def test_in_sandbox_mode_the_same_server_reaches_the_host_through_the_gateway(
    workdir: Path, cli: DevSessions, gateway: GatewayProcess, isolated: Path
) -> None:
    container = isolated / "container-workspace"
    container.mkdir()
    env = {
        "DEV_SESSIONS_SANDBOX": "1",
        "DEV_SESSIONS_GATEWAY_URL": gateway.url,
        "DEV_SESSIONS_GATEWAY_TOKEN": gateway.token,
        "CONTAINER_WORKSPACE": str(container),
        "HOST_PATH": str(isolated / "work"),
        "DEV_SESSIONS_HOME": str(isolated / "container-state"),  # nothing of the host's store in here
    }

    async def scenario(session: ClientSession) -> None:
        result(await session.call_tool("register_agent", {"name": "boss"}))
        sent = result(await session.call_tool("send_message", {"to": "boss", "body": "from the container"}))
        unknown = error(await session.call_tool("status", {"session_id": "nope-top"}))
        assert unknown["type"] == "SessionNotFound"
        assert sent["from"] == "user"

    run(container, scenario, env)
    (message,) = json.loads(cli.ok("msg", "read", "--as", "boss", "--json"))
    assert message["body"] == "from the container"
    assert not (isolated / "container-state" / "messages.db").exists()
