"""``doctor``: check tmux, the agent binaries, Claude's set-up and the store, and say what to fix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from dev_sessions.cli.output import emit_json
from dev_sessions.errors import EXIT_ERROR, EXIT_OK

if TYPE_CHECKING:
    from dev_sessions.config import Settings
    from dev_sessions.doctor import Check, Level


def doctor(
    host: Annotated[
        str | None,
        typer.Option("--host", "-H", metavar="TARGET", help="Check that ssh host and its dev-sessions."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> int:
    """Check tmux, claude, codex and the store, and say what to fix."""
    from dev_sessions.config import Settings
    from dev_sessions.doctor import run_checks

    settings = Settings.from_env()
    checks = run_checks(settings) if host is None else _host_checks(settings, host)
    if as_json:
        emit_json([{"level": c.level, "check": c.name, "message": c.message} for c in checks])
    else:
        for check in checks:
            print(f"{check.level:<5} {check.name}: {check.message}")
    return EXIT_ERROR if any(c.level == "fail" for c in checks) else EXIT_OK


def _host_checks(settings: Settings, host: str) -> list[Check]:
    """The ssh path to a host, its dev-sessions' version, then that dev-sessions' own doctor there."""
    import json

    from dev_sessions.doctor import Check
    from dev_sessions.errors import DevSessionsError
    from dev_sessions.remote.ssh import Ssh

    ssh = Ssh(settings, host)
    try:
        version = ssh.check_version()
    except DevSessionsError as err:
        return [Check("fail", f"{host}: dev-sessions over ssh", str(err))]
    checks = [Check("ok", f"{host}: dev-sessions over ssh", f"{version}, {settings.remote_bin}")]
    try:
        result = ssh.run(["doctor", "--json"], timeout=settings.ssh_connect_timeout + 60)
        found = json.loads(result.stdout)
    except (DevSessionsError, ValueError) as err:
        return [*checks, Check("fail", f"{host}: doctor", str(err))]
    levels: dict[str, Level] = {"ok": "ok", "warn": "warn", "fail": "fail"}
    there = [
        Check(levels.get(str(c["level"]), "fail"), f"{host}: {c['check']}", str(c["message"])) for c in found
    ]
    return checks + there


def register(app: typer.Typer) -> None:
    app.command()(doctor)
