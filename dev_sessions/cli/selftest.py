"""``selftest``: check dev-sessions against the installed agent CLIs, offline (the work is done by
:mod:`dev_sessions.selftest.runner`, imported only when the command runs)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from dev_sessions.cli.output import emit_json
from dev_sessions.errors import EXIT_ERROR, EXIT_OK, Interrupted, ToolMissing, UsageError

if TYPE_CHECKING:
    from dev_sessions.selftest.runner import Check, Report, Tested

CHOICES = {"claude": ("claude",), "codex": ("codex",), "all": ("claude", "codex")}


def selftest(
    cli: Annotated[str, typer.Option("--cli", help="claude, codex or all.")] = "all",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (once all is done).")] = False,
) -> int:
    """Check every capability with your installed claude / codex against a built-in fake model, offline."""
    agents = CHOICES.get(cli)
    if agents is None:
        raise UsageError(f"--cli {cli!r}: choose claude, codex or all")
    from dev_sessions.selftest.runner import find_binary, selftest

    reports: list[Report] = []
    skipped: list[str] = []
    for agent in agents:
        if len(agents) > 1 and find_binary(agent, os.environ) is None:
            # `--cli all` tests what is installed; naming the agent asks for it.
            skipped.append(agent)
            if not as_json:
                print(f"{agent}: not installed, skipped (`--cli {agent}` requires it)")
            continue
        try:
            report = selftest(agent, os.environ, None if as_json else _show)
        except KeyboardInterrupt:
            # Said here: typer turns a KeyboardInterrupt into a silent exit 130.
            raise Interrupted(what="selftest", detail="what it started is stopped and removed") from None
        reports.append(report)
        if not as_json:
            print(_summary(report), flush=True)
    if not reports:
        raise ToolMissing(
            tool="claude and codex",
            hint="install one, or point DEV_SESSIONS_CLAUDE_BIN / DEV_SESSIONS_CODEX_BIN at it",
        )
    ok = all(r.ok for r in reports)
    if as_json:
        agents_json = [r.to_json() for r in reports] + [
            {"cli": a, "skipped": "not installed"} for a in skipped
        ]
        emit_json({"ok": ok, "agents": agents_json})
    return EXIT_OK if ok else EXIT_ERROR


def _show(event: Tested | Check) -> None:
    from dev_sessions.selftest.runner import Tested

    if isinstance(event, Tested):
        print(_header(event), flush=True)
        return
    shown = {"ok": "ok", "failed": f"FAILED: {event.detail}", "skipped": f"skipped: {event.detail}"}
    print(f"  {event.name:<13} {shown[event.result]}", flush=True)


def _header(tested: Tested) -> str:
    if tested.binary is None:
        return f"{tested.agent}:"
    version = tested.version or "(no version: --version failed)"
    where = {None: "tested", "tested": "tested"}.get(tested.placement, f"{tested.placement} than tested")
    return f"{tested.agent} {version} at {tested.binary} ({where}: {tested.tested_range})"


def _summary(report: Report) -> str:
    failed = sum(1 for c in report.checks if c.result == "failed")
    verdict = f"{failed} of {len(report.checks)} FAILED" if failed else "ok"
    return f"{report.tested.agent}: {verdict} in {report.seconds:.1f} s"


def register(app: typer.Typer) -> None:
    app.command()(selftest)
