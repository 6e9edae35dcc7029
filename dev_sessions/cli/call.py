"""``dev-sessions call``: one API call read as JSON from stdin, its answer written as JSON lines.

How another machine's dev-sessions reaches this one over ssh (:mod:`dev_sessions.remote`): the same
calls as the gateway serves (:mod:`dev_sessions.api`), checked the same way, with values and errors
on the same wire (``{"result": ...}`` or ``{"error": ...}``), and bodies never on a command line. A
streamed call (``@call(stream=True)``: ``follow``) writes a line ``{"item": ...}`` per item as it comes,
flushed at once, then its last line ``{"result": null}`` or ``{"error": ...}``, as the gateway does. It
acts as the user who runs it, like any command here. Hidden from ``--help``: it is not for people.

``answer_lines`` is the whole of a call, from the request's bytes to the answer; the host's warm call
server (:mod:`dev_sessions.remote.serve`, ``dev-sessions call --serve``) answers with it too.

A long or streamed call whose client went away (Ctrl-C, a lost connection: ssh closes the pipe it
reads) is not run on: the process ends as soon as its stdout says so, not at its next write.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from dev_sessions.errors import EXIT_OK, DevSessionsError

if TYPE_CHECKING:
    import typer

    from dev_sessions.api import Call


def answer_lines(body: bytes, started: Callable[[Call], None] | None = None) -> Iterator[dict[str, object]]:
    """The answer to one call (``body``: the request as JSON), a line at a time as ``call`` writes it:
    one line, or for a streamed call one per item as it comes and then the last.

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
        value = function(**args)
        if spec.stream:
            for item in value:
                yield {"item": encode(item)}
            value = None
        yield {"result": encode(value)}
    except DevSessionsError as err:
        yield {"error": err.to_wire()}


def call() -> int:
    """Run one API call from stdin (JSON) and print its answer as JSON lines.

    Also run straight from ``main`` (``dev-sessions call`` and nothing else), before typer is loaded:
    every command to a remote host is one of these, and typer is half of a command's start-up."""
    body = sys.stdin.buffer.read()
    try:
        for line in answer_lines(body, _watch_reader):
            sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (ssh closed the pipe): nobody is left to tell.
        os._exit(EXIT_OK)
    return EXIT_OK


def _watch_reader(spec: Call) -> None:
    """For a long or streamed call: end this process when the one reading its answer goes away."""
    if not (spec.long or spec.stream):
        return
    import stat
    import threading

    try:
        mode = os.fstat(sys.stdout.fileno()).st_mode
    except (OSError, ValueError):
        return
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):  # a file or a terminal never says so
        threading.Thread(target=_reader_gone, args=(sys.stdout.fileno(),), daemon=True).start()


def _reader_gone(fd: int) -> None:
    import select

    poller = select.poll()
    poller.register(fd, 0)  # only POLLERR / POLLHUP: the other end closed
    while True:
        for _, flags in poller.poll():
            if flags & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                os._exit(EXIT_OK)


def serve() -> int:
    """``dev-sessions call --serve``: make sure this host's warm call server runs, and say where."""
    from dev_sessions.remote.serve import start

    return start()


def register(app: typer.Typer) -> None:
    app.command("call", hidden=True)(call)
