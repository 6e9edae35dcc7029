"""``dev-sessions mcp``: the API as an MCP server over stdio, on the official SDK's low-level server.

Tools are :mod:`dev_sessions.mcp.tools`' (one per ``@call``). A call runs on a fresh library object
(the local library, or in a sandbox the same calls on the host through the gateway: the command
line's own choice, :mod:`dev_sessions.cli.context`), in a worker thread so that the server keeps
answering; a long call (``wait``, ``ask``, ``wait_for_message``) runs its coroutine twin where the
library has one, reports progress every second while it waits (elapsed seconds, and each session's
state), and is cancelled by the client's ``notifications/cancelled``: a cancelled wait changes
nothing. A bad argument, an unknown id or an oversized body is a tool error carrying the same one
line as the command line (``isError``, and ``{"error": {"type", "message", "exitCode"}}``); an
unknown tool is a protocol error; nothing a client sends stops the server.

Who acts is the command line's rule (``DEV_SESSIONS_AGENT``, else ``DEV_SESSIONS_ID``, else ``user``),
with one addition: a Codex thread calling names itself in each call's ``_meta`` (one server serves
every thread of the app-server), and the session of that thread acts.

Resources: a session's conversation (``dev-sessions://sessions/{id}/conversation``) and an agent's
inbox (``dev-sessions://agents/{name}/inbox``), as JSON.

Nothing may write to stdout but the SDK: stdout is the protocol. The SDK is imported only here, by
this command.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from dev_sessions import __version__
from dev_sessions.errors import BadRequest, DevSessionsError, UsageError
from dev_sessions.mcp.tools import Tool, as_text, plain, tools

PROGRESS_EVERY_S = 1.0
INSTRUCTIONS = (
    "dev-sessions: start, instruct, wait on and read other coding-agent sessions (Claude Code, Codex), "
    "and message other agents. create, then send and wait (or ask); last_message reads the reply. "
    "Messages: send_message, read_messages, wait_for_message, reply."
)
_CONVERSATION = re.compile(r"dev-sessions://sessions/([^/]+)/conversation")
_INBOX = re.compile(r"dev-sessions://agents/([^/]+)/inbox")


def _target(api: str) -> Any:
    """A fresh library object for one call (or the host's, through the gateway, in a sandbox)."""
    from dev_sessions.cli.context import messages_api, sessions_api

    return sessions_api() if api == "sessions" else messages_api()


def _error(err: DevSessionsError) -> types.CallToolResult:
    data = {"error": {"type": type(err).__name__, "message": str(err), "exitCode": err.exit_code}}
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=str(err))], structured_content=data, is_error=True
    )


def _arguments(tool: Tool, given: dict[str, Any] | None) -> dict[str, Any]:
    """The arguments as the library takes them, checked as the gateway checks them."""
    from dev_sessions.gateway import checks

    args = dict(given or {})
    unknown = sorted(set(args) - tool.call.args)
    if unknown:
        raise UsageError(f"{tool.name}: no argument {', '.join(unknown)} (see the tool's schema)")
    try:
        checks.check_args(tool.function, args, tool.name)
    except BadRequest as err:
        raise UsageError(str(err)) from None
    return args


async def _run(tool: Tool, args: dict[str, Any], ctx: ServerRequestContext[Any]) -> object:
    target = _target(tool.api)
    method = getattr(target, tool.call.name)
    if not tool.call.long:
        return await anyio.to_thread.run_sync(lambda: method(**args))
    twin = getattr(target, f"{tool.call.name}_async", None)
    result: list[object] = []
    failed: list[DevSessionsError] = []

    async def work() -> None:
        try:
            if twin is not None:
                result.append(await twin(**args))
            else:  # the host's, through the gateway: a blocking call, left to finish if cancelled
                result.append(await anyio.to_thread.run_sync(lambda: method(**args), abandon_on_cancel=True))
        except DevSessionsError as err:
            failed.append(err)
        finally:
            group.cancel_scope.cancel()  # the progress reports end with it

    async with anyio.create_task_group() as group:
        group.start_soon(work)
        group.start_soon(_progress, tool, args, ctx)
    if failed:
        raise failed[0]
    return result[0]


async def _progress(tool: Tool, args: dict[str, Any], ctx: ServerRequestContext[Any]) -> None:
    """Every second of a long call: how long so far, and what it waits on (each session's state)."""
    started = time.monotonic()
    ids = args.get("session_ids") or ([args["session_id"]] if "session_id" in args else [])
    while True:
        await anyio.sleep(PROGRESS_EVERY_S)
        elapsed = time.monotonic() - started
        if ids:
            states = await anyio.to_thread.run_sync(lambda: _states(ids), abandon_on_cancel=True)
            what = ", ".join(f"{sid} {state}" for sid, state in states.items())
        else:
            what = f"waiting for a message for {args.get('reader') or 'you'}"
        await ctx.session.report_progress(round(elapsed, 1), None, f"{int(elapsed)} s: {what}")


def _states(ids: list[str]) -> dict[str, str]:
    target = _target("sessions")
    found: dict[str, str] = {}
    for sid in ids:
        try:
            found[sid] = target.status(sid).state
        except DevSessionsError as err:
            found[sid] = f"unknown ({err})"
    return found


def _calling_session(ctx: ServerRequestContext[Any]) -> str | None:
    """The session making this call, when the client says which and this server cannot know it
    otherwise: Codex runs one MCP server for all the threads of its app-server (shared by every Codex
    session here), so its environment names none of them, but each call's ``_meta`` carries its thread
    (``threadId``, and ``x-codex-turn-metadata.thread_id``): the session whose thread it is acts.
    (Claude Code starts one server per session, with the session's ``DEV_SESSIONS_ID``.)"""
    meta = dict(ctx.meta or {})
    turn = meta.get("x-codex-turn-metadata")
    thread = meta.get("threadId") or (turn.get("thread_id") if isinstance(turn, dict) else None)
    if not isinstance(thread, str) or not thread:
        return None
    from dev_sessions.config import Settings

    settings = Settings.from_env()
    if settings.sandbox:
        return None  # the sessions are the host's; the container's own identity stands
    from dev_sessions.store import SessionStore

    found = [s.id for s in SessionStore(settings.store_path).sessions() if s.internal_id == thread]
    return found[0] if len(found) == 1 else None


async def list_tools(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(
        tools=[
            types.Tool(name=t.name, description=t.description, input_schema=t.input_schema)
            for t in tools().values()
        ]
    )


async def call_tool(
    ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    tool = tools().get(params.name)
    if tool is None:
        raise MCPError(code=types.INVALID_PARAMS, message=f"no tool named {params.name!r}")
    try:
        args = _arguments(tool, params.arguments)
        who = tool.call.identity
        if who is not None and args.get(who) is None:
            caller = await anyio.to_thread.run_sync(lambda: _calling_session(ctx))
            if caller is not None:
                args[who] = caller
        value = await _run(tool, args, ctx)
    except DevSessionsError as err:
        return _error(err)
    data = plain(value)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=as_text(value, data))],
        structured_content={"result": data},
    )


async def list_resources(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListResourcesResult:
    def rows() -> list[tuple[str, str]]:
        sessions = _target("sessions").list_sessions()
        found = [(s.id, s.description) for s, _ in sessions]
        return found

    try:
        sessions = await anyio.to_thread.run_sync(rows)
    except DevSessionsError:
        sessions = []
    listed = [
        types.Resource(
            uri=f"dev-sessions://sessions/{sid}/conversation",
            name=f"{sid} conversation",
            description=description or None,
            mime_type="application/json",
        )
        for sid, description in sessions
    ]
    return types.ListResourcesResult(resources=listed)


async def list_templates(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListResourceTemplatesResult:
    return types.ListResourceTemplatesResult(
        resource_templates=[
            types.ResourceTemplate(
                uri_template="dev-sessions://sessions/{id}/conversation",
                name="conversation",
                description="A session's conversation so far: prompts, replies and tool calls.",
                mime_type="application/json",
            ),
            types.ResourceTemplate(
                uri_template="dev-sessions://agents/{name}/inbox",
                name="inbox",
                description="An agent's messages, oldest first (not marked read).",
                mime_type="application/json",
            ),
        ]
    )


async def read_resource(
    ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
) -> types.ReadResourceResult:
    uri = str(params.uri)
    read: Callable[[], object]
    if match := _CONVERSATION.fullmatch(uri):
        sid = match.group(1)
        read = lambda: _target("sessions").logs(sid)  # noqa: E731
    elif match := _INBOX.fullmatch(uri):
        name = match.group(1)
        read = lambda: _target("messages").read(name)  # noqa: E731
    else:
        raise MCPError(code=types.INVALID_PARAMS, message=f"no resource {uri!r}")
    try:
        value = await anyio.to_thread.run_sync(read)
    except DevSessionsError as err:
        raise MCPError(code=types.INVALID_PARAMS, message=str(err)) from None
    text = json.dumps(plain(value), ensure_ascii=False, indent=1)
    return types.ReadResourceResult(
        contents=[types.TextResourceContents(uri=uri, mime_type="application/json", text=text)]
    )


def build() -> Server[Any]:
    return Server(
        "dev-sessions",
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
    )


def serve() -> int:
    """Serve MCP on stdin/stdout until the client goes away."""

    async def main() -> None:
        server = build()
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(main)
    return 0
