"""``dev-sessions call``: one API call read as JSON from stdin, its answer written as one JSON line.

How another machine's dev-sessions reaches this one over ssh (:mod:`dev_sessions.remote`): the same
calls as the gateway serves (:mod:`dev_sessions.api`), checked the same way, with values and errors
on the same wire (``{"result": ...}`` or ``{"error": ...}``), and bodies never on a command line. It
acts as the user who runs it, like any command here. Hidden from ``--help``: it is not for people.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from dev_sessions.errors import EXIT_OK, DevSessionsError

if TYPE_CHECKING:
    import typer


def call() -> int:
    """Run one API call from stdin (JSON) and print its answer as JSON.

    Also run straight from ``main`` (``dev-sessions call`` and nothing else), before typer is loaded:
    every command to a remote host is one of these, and typer is half of a command's start-up."""
    from dev_sessions.api import library
    from dev_sessions.config import Settings
    from dev_sessions.gateway import checks
    from dev_sessions.gateway.protocol import encode, lookup

    answer: dict[str, object]
    try:
        request = checks.parse_body(sys.stdin.buffer.read())
        api, spec, args = lookup(request)
        function = getattr(library(api)(Settings.from_env()), spec.name)
        checks.check_args(function, args, f"{api}.{spec.name}")
        answer = {"result": encode(function(**args))}
    except DevSessionsError as err:
        answer = {"error": err.to_wire()}
    sys.stdout.write(json.dumps(answer, ensure_ascii=False) + "\n")
    return EXIT_OK


def register(app: typer.Typer) -> None:
    app.command("call", hidden=True)(call)
