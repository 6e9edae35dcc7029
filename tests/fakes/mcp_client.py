"""The official MCP SDK's client, talking to `dev-sessions mcp` over stdio, for the tests."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

Scenario = Callable[[ClientSession], Awaitable[None]]


@asynccontextmanager
async def connected(cwd: Path, env: dict[str, str] | None = None) -> AsyncIterator[ClientSession]:
    """A session with ``dev-sessions mcp`` started in ``cwd`` with the test's environment (and ``env``)."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "dev_sessions", "mcp"], env={**os.environ, **(env or {})}, cwd=cwd
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def run(cwd: Path, scenario: Scenario, env: dict[str, str] | None = None) -> None:
    """Run ``scenario`` against a server of its own, to the end."""

    async def main() -> None:
        async with connected(cwd, env) as session:
            await scenario(session)

    anyio.run(main)


def result(answer: Any) -> Any:
    """A tool's structured result (it must have succeeded)."""
    assert not answer.is_error, answer.content
    return answer.structured_content["result"]


def error(answer: Any) -> dict[str, Any]:
    """A tool's error: one line, as the command line says it, with its type and exit code."""
    assert answer.is_error, answer
    (text,) = answer.content
    found: dict[str, Any] = answer.structured_content["error"]
    assert text.text == found["message"] and "\n" not in text.text
    return found
