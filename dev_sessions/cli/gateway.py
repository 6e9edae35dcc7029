"""``gateway``: serve dev-sessions over HTTP to agents in containers; install it as a user service."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from dev_sessions.cli.output import emit_json, note
from dev_sessions.errors import EXIT_ERROR, EXIT_OK

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
    from dev_sessions.gateway.server import DEFAULT_MAX_BODY, Gateway, interface_address, listen, serve
    from dev_sessions.gateway.tokens import owner_path, owner_token
    from dev_sessions.terminal import log_to_terminal

    log_to_terminal(logging.INFO, "%(asctime)s %(name)s %(message)s", sys.stderr)
    settings = Settings.from_env()
    binds = ["127.0.0.1", *(interface_address(b) for b in bind or [])]
    binds = list(dict.fromkeys(binds))
    roots = [Path(r) for r in root or []] or list(settings.gateway_roots) or [Path.home()]
    server = Gateway(
        settings,
        token=owner_token(settings),
        binds=binds,
        allow_hosts=allow_host or [],
        roots=roots,
        max_body=max_body or DEFAULT_MAX_BODY,
    )
    sockets = listen(binds, port)

    def announce(line: str) -> None:
        print(line, flush=True)

    source = "$DEV_SESSIONS_GATEWAY_TOKEN" if settings.gateway_token else owner_path(settings)
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
    return EXIT_OK if info["installed"] else EXIT_ERROR


@gateway_app.command("token")
def gateway_token(
    for_: Annotated[
        str | None,
        typer.Option("--for", metavar="NAME", help="Make a scoped token that acts as NAME only."),
    ] = None,
    root: Annotated[
        list[str] | None,
        typer.Option("--root", metavar="DIR", help="With --for: its sessions must lie under DIR."),
    ] = None,
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Replace the owner token (old containers lose access).")
    ] = False,
) -> int:
    """Print the owner token, or make a scoped one (give it to containers as DEV_SESSIONS_GATEWAY_TOKEN)."""
    from dev_sessions.config import Settings
    from dev_sessions.errors import UsageError
    from dev_sessions.gateway.tokens import TokenRegistry, owner_token, rotate_owner_token

    settings = Settings.from_env()
    if for_ is None:
        if root:
            raise UsageError("--root goes with --for NAME (the owner token reaches every served root)")
        if rotate:
            if settings.gateway_token:
                raise UsageError("the owner token comes from $DEV_SESSIONS_GATEWAY_TOKEN: change it there")
            print(rotate_owner_token(settings))
            note("a running gateway keeps the old token until it restarts")
            return 0
        print(owner_token(settings))
        return 0
    if rotate:
        raise UsageError("--rotate is for the owner token; revoke a scoped one with `gateway revoke`")
    entry, token = TokenRegistry(settings).create(for_, root or [])
    print(token)
    where = f" under {', '.join(entry.roots)}" if entry.roots else ""
    note(f"token {entry.id} acts as {entry.name}{where}; it is shown only now")
    return 0


@gateway_app.command("tokens")
def gateway_tokens(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> int:
    """List the scoped tokens (never the tokens themselves)."""
    from dev_sessions.config import Settings
    from dev_sessions.gateway.tokens import TokenRegistry

    tokens = TokenRegistry(Settings.from_env()).tokens()
    if as_json:
        emit_json(
            [{"id": t.id, "name": t.name, "roots": list(t.roots), "createdAt": t.created_at} for t in tokens]
        )
        return 0
    if not tokens:
        note("no scoped tokens")
    for token in tokens:
        roots = ", ".join(token.roots) or "(the gateway's roots)"
        print(f"{token.id}  {token.name}  {token.created_at[:19].replace('T', ' ')}  {roots}")
    return 0


@gateway_app.command("revoke")
def gateway_revoke(
    which: Annotated[str, typer.Argument(metavar="ID|NAME", help="A token id, or a name (all its tokens).")],
) -> int:
    """Revoke scoped tokens; a running gateway refuses them from its next request."""
    from dev_sessions.config import Settings
    from dev_sessions.gateway.tokens import TokenRegistry

    for token in TokenRegistry(Settings.from_env()).revoke(which):
        print(f"revoked {token.id} ({token.name})")
    return 0


def register(app: typer.Typer) -> None:
    app.add_typer(gateway_app, name="gateway")
