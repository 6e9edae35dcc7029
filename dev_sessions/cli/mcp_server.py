"""``dev-sessions mcp``: serve every command as MCP tools over stdio (:mod:`dev_sessions.mcp.server`)."""

from __future__ import annotations

import typer


def mcp() -> int:
    """Serve every command as MCP tools on stdin/stdout (for Claude Code, Codex or any MCP client)."""
    from dev_sessions.mcp.server import serve

    return serve()


def register(app: typer.Typer) -> None:
    app.command("mcp")(mcp)
