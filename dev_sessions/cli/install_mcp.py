"""``install-mcp`` / ``uninstall-mcp``: register ``dev-sessions mcp`` with Claude Code and Codex.

The work is ``dev_sessions.install_mcp``, imported only when one of these commands runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dev_sessions.cli.output import emit_json, note
from dev_sessions.errors import ToolMissing, UsageError

GlobalOption = Annotated[bool, typer.Option("--global", help="For every project of this user (default).")]
LocalOption = Annotated[
    bool,
    typer.Option(
        "--local",
        help="For this project only (Claude Code's local scope; ./.codex/config.toml for Codex).",
    ),
]
ClaudeOption = Annotated[bool, typer.Option("--claude", help="For Claude Code.")]
CodexOption = Annotated[bool, typer.Option("--codex", help="For Codex.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def install_mcp(
    global_: GlobalOption = False,
    local: LocalOption = False,
    claude: ClaudeOption = False,
    codex: CodexOption = False,
    as_json: JsonOption = False,
) -> int:
    """Register the dev-sessions MCP server (`dev-sessions mcp`) with Claude Code and Codex."""
    return _run("install-mcp", global_, local, claude, codex, as_json)


def uninstall_mcp(
    global_: GlobalOption = False,
    local: LocalOption = False,
    claude: ClaudeOption = False,
    codex: CodexOption = False,
    as_json: JsonOption = False,
) -> int:
    """Remove the dev-sessions MCP server from Claude Code and Codex (other servers stay)."""
    return _run("uninstall-mcp", global_, local, claude, codex, as_json)


def _run(command: str, global_: bool, local: bool, claude: bool, codex: bool, as_json: bool) -> int:
    from dev_sessions import install_mcp as registry
    from dev_sessions.config import Settings
    from dev_sessions.errors import EXIT_ERROR, EXIT_OK

    if global_ and local:
        raise UsageError(f"{command}: --global or --local, not both")
    settings = Settings.from_env()
    agents = [name for name, wanted in (("claude", claude), ("codex", codex)) if wanted]
    if not agents:
        agents = registry.detect(settings)
    if not agents:
        raise ToolMissing(
            tool=f"{command}: claude and codex",
            hint="install Claude Code or Codex (or put them on PATH), or name one with --claude / --codex",
        )
    scope: registry.Scope = "local" if local else "global"
    cwd = Path.cwd()
    if command == "install-mcp":
        results = registry.install(agents, scope, settings, cwd)
    else:
        results = registry.uninstall(agents, scope, settings, cwd)
    if as_json:
        emit_json([r.__dict__ for r in results])
    else:
        for result in results:
            note(result.line) if result.action == "failed" else print(result.line)
    return EXIT_ERROR if any(r.action == "failed" for r in results) else EXIT_OK


def register(app: typer.Typer) -> None:
    app.command("install-mcp")(install_mcp)
    app.command("uninstall-mcp")(uninstall_mcp)
