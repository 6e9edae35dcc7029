"""``dev-sessions call``: one API call read as JSON from stdin, its answer written as one JSON line.

How another machine's dev-sessions reaches this one over ssh (:mod:`dev_sessions.remote`): the same
calls as the gateway serves (:mod:`dev_sessions.api`), checked the same way, with values and errors
on the same wire (``{"result": ...}`` or ``{"error": ...}``), and bodies never on a command line. It
acts as the user who runs it, like any command here. Hidden from ``--help``: it is not for people.

``answer`` is the whole of a call, from the request's bytes to the answer; the host's warm call
server (:mod:`dev_sessions.remote.serve`, ``dev-sessions call --serve``) answers with it too.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from dev_sessions.errors import EXIT_OK, DevSessionsError

if TYPE_CHECKING:
    import typer

    from dev_sessions.api import Call


def answer(body: bytes, started: Callable[[Call], None] | None = None) -> dict[str, object]:
    """The answer to one call (``body``: the request as JSON), as ``call`` writes it.

    ``started`` is told which call it is once the request has been read and checked, before it runs.
    """
    from dev_sessions.api import library
    from dev_sessions.config import Settings
    from dev_sessions.gateway import checks
    from dev_sessions.gateway.protocol import encode, lookup

    try:
        request = checks.parse_body(body)
        api, spec, args = lookup(request)
        function = getattr(library(api)(Settings.from_env()), spec.name)
        checks.check_args(function, args, f"{api}.{spec.name}")
        if started is not None:
            started(spec)
        return {"result": encode(function(**args))}
    except DevSessionsError as err:
        return {"error": err.to_wire()}


def call() -> int:
    """Run one API call from stdin (JSON) and print its answer as JSON.

    Also run straight from ``main`` (``dev-sessions call`` and nothing else), before typer is loaded:
    every command to a remote host is one of these, and typer is half of a command's start-up."""
    sys.stdout.write(json.dumps(answer(sys.stdin.buffer.read()), ensure_ascii=False) + "\n")
    return EXIT_OK


def serve() -> int:
    """``dev-sessions call --serve``: make sure this host's warm call server runs, and say where."""
    from dev_sessions.remote.serve import start

    return start()


def register(app: typer.Typer) -> None:
    app.command("call", hidden=True)(call)
