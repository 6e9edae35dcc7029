"""``gateway``: serve dev-sessions over HTTP to agents in containers; install it as a user service."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from dev_sessions.cli.output import emit_json, note

gateway_app = typer.Typer(
    help="The HTTP gateway for agents in containers (serve, install, uninstall, status, token)."
)

PortOpt = Annotated[int, typer.Option("--port", help="TCP port (0: any free one).")]
BindOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--bind", metavar="ADDR", help="Also listen here: an address, or an interface such as docker0."
    ),
]


@gateway_app.callback(invoke_without_command=True)
def gateway(
    ctx: typer.Context,
    port: PortOpt = 6767,
    bind: BindOpt = None,
    allow_host: Annotated[
        list[str] | None, typer.Option("--allow-host", metavar="NAME", help="Accept this Host name too.")
    ] = None,
    root: Annotated[
        list[str] | None,
        typer.Option(
            "--root", metavar="DIR", help="Serve sessions under this directory (default: your home)."
        ),
    ] = None,
    max_body: Annotated[int, typer.Option("--max-body", help="Largest request body, in bytes.")] = 0,
) -> int:
    """Serve every session and messaging command over HTTP (127.0.0.1 unless --bind adds more)."""
    if ctx.invoked_subcommand is not None:
        return 0
    import asyncio
    import logging

    from dev_sessions.config import Settings
    from dev_sessions.gateway.server import (
        DEFAULT_MAX_BODY,
        Gateway,
        interface_address,
        listen,
        load_token,
        serve,
        token_path,
    )

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.from_env()
    binds = ["127.0.0.1", *(interface_address(b) for b in bind or [])]
    binds = list(dict.fromkeys(binds))
    roots = (
        [Path(r) for r in root or []]
        or [Path(p) for p in (os.environ.get("DEV_SESSIONS_GATEWAY_ROOTS") or "").split(":") if p]
        or [Path.home()]
    )
    server = Gateway(
        settings,
        os.environ,
        token=load_token(settings, os.environ),
        binds=binds,
        allow_hosts=allow_host or [],
        roots=roots,
        max_body=max_body or DEFAULT_MAX_BODY,
    )
    sockets = listen(binds, port)

    def announce(line: str) -> None:
        print(line, flush=True)

    source = (
        "$DEV_SESSIONS_GATEWAY_TOKEN"
        if os.environ.get("DEV_SESSIONS_GATEWAY_TOKEN")
        else token_path(settings)
    )
    note(f"token: {source}; sessions under: {', '.join(map(str, roots))}")
    from aiohttp.web import GracefulExit

    # SIGTERM (aiohttp's GracefulExit, exit code 1 of its own) is how a service manager stops the
    # gateway: a clean stop, not a failure (systemd would keep the unit "failed").
    with contextlib.suppress(KeyboardInterrupt, GracefulExit):
        asyncio.run(serve(server, sockets, announce))
    return 0


@gateway_app.command("install")
def gateway_install(
    port: PortOpt = 6767,
    bind: BindOpt = None,
    no_start: Annotated[bool, typer.Option("--no-start", help="Write the service file only.")] = False,
) -> int:
    """Install the gateway as a user service (systemd on Linux, launchd on macOS) and start it."""
    from dev_sessions.gateway.service import install

    report = install(port, bind or [], os.environ, start=not no_start)
    print(f"{report.kind}: {report.path}" + (" (started)" if report.loaded else ""))
    for line in report.notes:
        note(line)
    return 0


@gateway_app.command("uninstall")
def gateway_uninstall() -> int:
    """Stop and remove the gateway service."""
    from dev_sessions.gateway.service import uninstall

    report = uninstall(os.environ)
    if report is None:
        note("no gateway service is installed")
    else:
        print(f"removed {report.path}")
    return 0


@gateway_app.command("status")
def gateway_status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> int:
    """The installed service, the port it was installed with, and whether /health answers."""
    from dev_sessions.gateway.service import status

    info = status(os.environ)
    if as_json:
        emit_json(info)
    elif not info["installed"]:
        print(f"not installed ({info['path']})")
    else:
        active = f", {info['active']}" if "active" in info else ""
        print(f"installed: {info['path']} ({info['kind']}{active})")
        print(f"port {info.get('port')}: health {info.get('health')}")
    return 0 if info["installed"] else 1


@gateway_app.command("token")
def gateway_token() -> int:
    """Print the gateway's bearer token (give it to containers as DEV_SESSIONS_GATEWAY_TOKEN)."""
    from dev_sessions.config import Settings
    from dev_sessions.gateway.server import load_token

    print(load_token(Settings.from_env(), os.environ))
    return 0


def register(app: typer.Typer) -> None:
    app.add_typer(gateway_app, name="gateway")
