"""``dev-sessions tui``: the terminal face (:mod:`dev_sessions.tui`), the one command that imports Textual."""

from __future__ import annotations

from typing import Annotated

import typer

from dev_sessions.cli.context import settings
from dev_sessions.errors import UsageError

AsOpt = Annotated[
    str | None, typer.Option("--as", metavar="NAME", help="Read and send messages as this agent.")
]


def tui(as_: AsOpt = None) -> int:
    """Sessions, conversations and messages, live, in the terminal: send, answer, interrupt, kill, attach."""
    found = settings()
    if found.sandbox:
        raise UsageError("tui: run it on the host (in a sandbox, the sessions and their files are not here)")
    from dev_sessions.messaging.messenger import Messenger
    from dev_sessions.sessions import SessionManager
    from dev_sessions.tui.app import run

    me = found.me(as_)  # a bad name is refused here, before the screen is taken
    return run(SessionManager(found), Messenger(found), me)


def register(app: typer.Typer) -> None:
    app.command("tui")(tui)
