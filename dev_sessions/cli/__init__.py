"""The ``dev-sessions`` command: parse, call the library, print, and map errors to exit codes here only.

Exit codes (``errors.EXIT_CODES``): 0 ok, 2 bad usage, 124 timeout, 130 interrupted, 1 anything else,
with one line on stderr. Tracebacks only with ``DEV_SESSIONS_DEBUG=1``. ``--version`` answers before
anything else is imported.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from dev_sessions import __version__

_prebuilt: Callable[..., object] | None = None
"""The whole command line as a click command, built once by the warm command server (``warm.py``) for
the children it forks; None: each process builds only what its command needs."""


def prebuild() -> None:
    """Build every command now (in the warm command server: its children then build none)."""
    global _prebuilt
    import typer

    from dev_sessions.cli.app import build_app

    _prebuilt = typer.main.get_command(build_app())


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"], ["version"]):
        print(f"dev-sessions {__version__}")
        return
    if args == ["call"]:  # a remote host's command (dev_sessions.remote): typer is not needed for it
        from dev_sessions.cli.call import call

        sys.exit(call())
    if args == ["call", "--serve"]:  # from a client here: start the warm call server (remote/serve.py)
        from dev_sessions.cli.call import serve

        sys.exit(serve())
    from dev_sessions.cli import warm  # a quick command answered by the warm process (warm.py)

    if warm.wanted(args, os.environ):
        code = warm.client(args)
        if code is not None:
            sys.exit(code)
    sys.exit(run(args))


def run(args: list[str]) -> int:
    """Run one command line and return its exit code."""
    from dev_sessions.terminal import TerminalStream

    # Other agents' text (messages, replies, descriptions) must not drive the user's terminal.
    streams = sys.stdout, sys.stderr
    if sys.stdout.isatty():
        sys.stdout = TerminalStream(sys.stdout)
    if sys.stderr.isatty():
        sys.stderr = TerminalStream(sys.stderr)
    try:
        return _run(args)
    finally:
        if sys.stdout is not streams[0] and isinstance(sys.stdout, TerminalStream):
            sys.stdout = streams[0]
        if sys.stderr is not streams[1] and isinstance(sys.stderr, TerminalStream):
            sys.stderr = streams[1]


def _run(args: list[str]) -> int:
    from dev_sessions.config import Settings

    debug = Settings.from_env().debug
    if debug:
        import logging

        from dev_sessions.terminal import log_to_terminal

        log_to_terminal(logging.DEBUG, "%(asctime)s %(name)s %(levelname)s %(message)s")
    import typer

    from dev_sessions.cli.app import build_app
    from dev_sessions.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, DevSessionsError

    # typer vendors or depends on click; find its base exception without naming either module.
    click_error: type[Exception] = next(
        c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
    )
    from dev_sessions.cli.app import optional_values

    args = optional_values(args)
    try:
        command = _prebuilt if _prebuilt is not None else build_app(args)
        code = command(args=args, prog_name="dev-sessions", standalone_mode=False)
    except DevSessionsError as err:
        if debug:
            raise
        _fail(str(err))
        return err.exit_code
    except click_error as err:
        hint = ""
        context = getattr(err, "ctx", None)
        if context is not None:
            hint = f" (see '{context.command_path} --help')"
        text = getattr(err, "format_message", err.__str__)()
        # typer and click each add the same suggestion to an unknown command.
        import re

        text = re.sub(r"( Did you mean '[^']+'\?)\1", r"\1", text)
        _fail(f"{text}{hint}")
        return int(getattr(err, "exit_code", EXIT_USAGE))
    except typer.Abort:
        _fail("aborted")
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        _fail("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`); nothing left to say.
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - keeps interpreter shutdown quiet
        return EXIT_ERROR
    except Exception as err:
        # The one broad catch: an unexpected failure must still be one line, not a traceback.
        if debug:
            raise
        _fail(f"internal error: {type(err).__name__}: {err} (run with DEV_SESSIONS_DEBUG=1 for details)")
        return EXIT_ERROR
    return code if isinstance(code, int) else EXIT_OK


def _fail(message: str) -> None:
    print(f"dev-sessions: {message}", file=sys.stderr)
