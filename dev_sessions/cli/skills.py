"""``install-skill``: install the dev-sessions skills for Claude Code and Codex."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dev_sessions.cli.output import emit_json, note
from dev_sessions.errors import UsageError


def install_skill(
    global_: Annotated[
        bool, typer.Option("--global", help="For every project of this user (default).")
    ] = False,
    local: Annotated[
        bool, typer.Option("--local", help="For this project only (./.claude, ./.codex).")
    ] = False,
    claude: Annotated[bool, typer.Option("--claude", help="For Claude Code.")] = False,
    codex: Annotated[bool, typer.Option("--codex", help="For Codex.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace same-named skills that are not ours.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> int:
    """Install the dev-sessions, delegate, handoff and messaging skills where the agents look."""
    from dev_sessions.config import Settings
    from dev_sessions.errors import EXIT_ERROR, EXIT_OK
    from dev_sessions.install_skills import detect, install

    settings = Settings.from_env()

    if global_ and local:
        raise UsageError("install-skill: --global or --local, not both")
    agents = [name for name, wanted in (("claude", claude), ("codex", codex)) if wanted] or detect(settings)
    if not agents:
        raise UsageError(
            "install-skill: found neither Claude Code nor Codex here; say which with --claude or --codex"
        )
    results = install(agents, "local" if local else "global", settings, Path.cwd(), force=force)
    if as_json:
        emit_json([{**r.__dict__, "path": str(r.path)} for r in results])
        return 0
    for result in results:
        why = f" ({result.reason})" if result.reason else ""
        line = f"{result.agent}: {result.skill} {result.action}: {result.path}{why}"
        note(line) if result.action == "skipped" else print(line)
    return EXIT_ERROR if any(r.action == "skipped" for r in results) else EXIT_OK


def register(app: typer.Typer) -> None:
    app.command("install-skill")(install_skill)
