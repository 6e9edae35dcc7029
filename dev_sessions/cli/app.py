"""The typer application: one command module per command group, registered here."""

from __future__ import annotations

import typer

from dev_sessions.cli import doctor, gateway, messaging, sessions, skills

app = typer.Typer(
    name="dev-sessions",
    help="Spawn, instruct, wait on and read other coding-agent sessions (Claude Code, Codex).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
sessions.register(app)
messaging.register(app)
skills.register(app)
gateway.register(app)
doctor.register(app)
