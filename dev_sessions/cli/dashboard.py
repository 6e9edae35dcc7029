"""``dashboard``: the live web dashboard on 127.0.0.1 (:mod:`dev_sessions.dashboard`); the only command
that imports aiohttp's server."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dev_sessions.cli.output import note

DEFAULT_PORT = 7433  # dev_sessions.dashboard.server.DEFAULT_PORT, without importing aiohttp for --help


def dashboard(
    port: Annotated[
        int, typer.Option("--port", help=f"TCP port on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free one).")
    ] = DEFAULT_PORT,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the login URL in your web browser.")
    ] = False,
) -> int:
    """Serve a live web dashboard of the sessions, their conversations and the messages, on 127.0.0.1.

    It prints a login URL with a one-time code (good once, for 5 minutes), which the browser trades for a
    session cookie. Run again while one runs for this state directory, it prints a new login URL for the
    running one instead of starting a second.
    """
    import asyncio
    import contextlib
    import logging

    from dev_sessions.config import Settings
    from dev_sessions.dashboard.server import Dashboard, bind, running, serve
    from dev_sessions.errors import UsageError
    from dev_sessions.terminal import log_to_terminal

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: not a TCP port (0 to 65535)")
    settings = Settings.from_env()
    log_to_terminal(logging.INFO, "%(asctime)s %(name)s %(message)s", sys.stderr)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    already = running(settings)
    if already is not None:
        server = Dashboard(settings, already)
        url = server.login_url(server.codes.issue())
        note(
            f"dashboard: already running for this state directory at http://127.0.0.1:{already}; "
            "log in with this new URL:"
        )
        print(url, flush=True)
        _open(url, open_browser)
        return 0
    sock = bind(port)
    server = Dashboard(settings, sock.getsockname()[1])

    def ready() -> None:
        url = server.login_url(server.codes.issue())
        note(
            f"dashboard: serving http://127.0.0.1:{server.port} (Ctrl-C stops it); log in once with the URL "
            "below (it works once, for 5 minutes; `dev-sessions dashboard` again gives a new one):"
        )
        print(url, flush=True)
        _open(url, open_browser)

    from aiohttp.web import GracefulExit

    with contextlib.suppress(KeyboardInterrupt, GracefulExit):
        asyncio.run(serve(server, sock, ready))
    return 0


def _open(url: str, wanted: bool) -> None:
    if not wanted:
        return
    import webbrowser

    if not webbrowser.open(url):
        note("dashboard: no web browser could be opened; open the URL above yourself")


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)
