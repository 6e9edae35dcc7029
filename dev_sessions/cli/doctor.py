"""``doctor``: check tmux, the agent binaries, Claude's set-up and the store, and say what to fix."""

from __future__ import annotations

from typing import Annotated

import typer

from dev_sessions.cli.output import emit_json
from dev_sessions.errors import EXIT_ERROR, EXIT_OK


def doctor(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> int:
    """Check tmux, claude, codex and the store, and say what to fix."""
    from dev_sessions.config import Settings
    from dev_sessions.doctor import run_checks

    checks = run_checks(Settings.from_env())
    if as_json:
        emit_json([{"level": c.level, "check": c.name, "message": c.message} for c in checks])
    else:
        for check in checks:
            print(f"{check.level:<5} {check.name}: {check.message}")
    return EXIT_ERROR if any(c.level == "fail" for c in checks) else EXIT_OK


def register(app: typer.Typer) -> None:
    app.command()(doctor)
