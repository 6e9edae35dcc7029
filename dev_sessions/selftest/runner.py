"""``dev-sessions selftest``: the real round trip with the user's own agent CLI, offline and isolated.

For one agent (``claude`` or ``codex``, found as every command finds it: ``DEV_SESSIONS_CLAUDE_BIN`` /
``DEV_SESSIONS_CODEX_BIN``, else ``PATH``) :func:`selftest` makes a
:class:`~dev_sessions.selftest.sandbox.Sandbox` (a temporary world with a fake model, removed with
everything it started however the run ends), runs the
:class:`~dev_sessions.selftest.checks.Checklist` in it, and returns a
:class:`~dev_sessions.selftest.report.Report`. No other command imports this module.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType

from dev_sessions.compat import placement
from dev_sessions.config import Settings
from dev_sessions.errors import UsageError
from dev_sessions.selftest.checks import Checklist
from dev_sessions.selftest.report import Check, Listener, Report, Tested
from dev_sessions.selftest.sandbox import Sandbox

AGENTS = ("claude", "codex")


def find_binary(agent: str, environ: Mapping[str, str]) -> str | None:
    """The agent binary as dev-sessions finds it: its ``DEV_SESSIONS_*_BIN``, else ``PATH``."""
    settings = Settings.from_env(environ)
    name = settings.claude_bin if agent == "claude" else settings.codex_bin
    found = shutil.which(name, path=environ.get("PATH"))
    return str(Path(found).absolute()) if found else None


def selftest(
    agent: str, environ: Mapping[str, str] | None = None, listener: Listener | None = None
) -> Report:
    """Check every capability of dev-sessions with the installed ``agent`` (``claude`` or ``codex``).

    ``listener`` hears which binary is tested, then each check as it ends. A KeyboardInterrupt (Ctrl-C,
    or SIGTERM when called from the main thread) stops the run; everything is cleaned up first.
    """
    if agent not in AGENTS:
        raise UsageError(f"--cli {agent!r}: choose claude, codex or all")
    env = dict(os.environ if environ is None else environ)
    hear = listener or (lambda _: None)
    started = time.monotonic()
    binary = find_binary(agent, env)
    if binary is None:
        tested = Tested(agent, None, None)
        hear(tested)
        variable = f"DEV_SESSIONS_{agent.upper()}_BIN"
        settings = Settings.from_env(env)
        chosen = settings.claude_bin if agent == "claude" else settings.codex_bin
        if chosen != agent:
            why = f"{variable}={chosen}: not found"
        else:
            why = f"{agent} is not on PATH; install it or set {variable}"
        check = Check("binary", "failed", why)
        hear(check)
        return Report(tested, (check,), time.monotonic() - started)
    with _sigterm_interrupts(), Sandbox(agent, binary, env) as sandbox:
        version = sandbox.version()
        tested = Tested(agent, binary, version, placement(agent, version) if version else None)
        hear(tested)
        checks = []
        for check in Checklist(sandbox).checks():
            hear(check)
            checks.append(check)
    cleanup = sandbox.cleaned
    hear(cleanup)
    checks.append(cleanup)
    return Report(
        tested,
        tuple(checks),
        time.monotonic() - started,
        str(sandbox.root),
        sandbox.tmux_socket,
    )


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the run like Ctrl-C does (so that the sandbox is cleaned up)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
