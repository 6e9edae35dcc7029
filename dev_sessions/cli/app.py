"""The typer application, built for the command at hand.

typer turns every registered command into a click command at start-up (about 0.4 ms each, and there
are about 45), so a quick command registers only its own group; help and unknown commands get all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import typer

from dev_sessions.cli import (
    call,
    coordination,
    dashboard,
    doctor,
    gateway,
    install_mcp,
    lifecycle,
    mcp_server,
    messaging,
    selftest,
    sessions,
    skills,
    tui,
)

HELP = "Spawn, instruct, wait on and read other coding-agent sessions (Claude Code, Codex), and message them."

GROUPS: dict[str, tuple[Callable[[typer.Typer], None], frozenset[str]]] = {
    "sessions": (sessions.register, sessions.COMMANDS),
    "lifecycle": (lifecycle.register, lifecycle.COMMANDS),
    "messaging": (messaging.register, frozenset({"msg", "space", "agents"})),
    "coordination": (coordination.register, coordination.COMMANDS),
    "skills": (skills.register, frozenset({"install-skill"})),
    "install-mcp": (install_mcp.register, frozenset({"install-mcp", "uninstall-mcp"})),
    "gateway": (gateway.register, frozenset({"gateway"})),
    "doctor": (doctor.register, frozenset({"doctor"})),
    "selftest": (selftest.register, frozenset({"selftest"})),
    "call": (call.register, frozenset({"call"})),
    "mcp": (mcp_server.register, frozenset({"mcp"})),
    "tui": (tui.register, frozenset({"tui"})),
    "dashboard": (dashboard.register, frozenset({"dashboard"})),
}


def _root() -> None:
    """dev-sessions: other coding-agent sessions, and messages between agents."""


def build_app(args: Sequence[str] = ()) -> typer.Typer:
    app = typer.Typer(
        name="dev-sessions",
        help=HELP,
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    # A callback keeps the application a group even when it holds a single command.
    app.callback()(_root)
    command = next((a for a in args if not a.startswith("-")), None)
    chosen = [register for register, names in GROUPS.values() if command in names]
    for register in chosen or [register for register, _ in GROUPS.values()]:
        register(app)
    return app
