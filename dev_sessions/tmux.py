"""The tmux adapter: the only module that runs tmux.

It talks to the ``tmux`` binary directly, one process per call, chaining several tmux commands into one
call where a caller needs them together (``display-message`` + ``capture-pane``; ``load-buffer`` +
``paste-buffer`` + ``send-keys``). libtmux would add 60 ms of import time to every command, more than
half of the budget of a quick command such as ``status``; the test suite still uses libtmux's fixtures.

Targets always use ``=name:`` so that tmux matches the session name exactly (a bare name is a prefix
match, and ``dev-fizz`` must never hit ``dev-fizz-top``).

Nothing we pass is interpreted by tmux: tmux would end a command at an argument's trailing ``;``
(escaped here as ``\\;``, which tmux turns back into ``;``), it expands formats (``#(cmd)`` runs a
shell command) in a new session's ``-c`` directory (never used: the directory is the tmux client's own
working directory), and it takes an argument starting with ``-`` for flags (``--`` ends them wherever
a value follows). Commands go to :meth:`Tmux.run` as separate argument lists, joined here.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from dev_sessions.errors import TmuxError, ToolMissing

log = logging.getLogger(__name__)

_FIELDS = (
    "session_name",
    "pane_pid",
    "pane_dead",
    "pane_dead_status",
    "pane_current_command",
    "session_created",
    "pane_active",
    "window_active",
)
_FORMAT = "\t".join("#{%s}" % name for name in _FIELDS)  # noqa: UP031 - tmux's own braces
_GONE = ("can't find session", "can't find pane", "can't find window", "no such session")
# What a server answers when it has no panes for us: not there at all; alive with no session (just
# started, or its last session just ended: it refuses list-panes -a with "no current target"); or
# exiting as we ask ("server exited unexpectedly", "lost server"). The same as no server for us.
_NO_SERVER = (
    "no server running",
    "error connecting to",
    "No such file or directory",
    "no current target",
    "server exited unexpectedly",
    "lost server",
)


@dataclass(frozen=True)
class Pane:
    """What tmux says about the pane of one session."""

    session: str
    pid: int
    dead: bool
    dead_status: int | None
    command: str
    created: int

    @classmethod
    def parse(cls, line: str) -> tuple[Pane, bool] | None:
        parts = line.split("\t")
        if len(parts) != len(_FIELDS):
            return None
        name, pid, dead, status, command, created, pane_active, window_active = parts
        try:
            pane = cls(
                session=name,
                pid=int(pid or 0),
                dead=dead == "1",
                dead_status=int(status) if status else None,
                command=command,
                created=int(created or 0),
            )
        except ValueError:
            return None
        return pane, pane_active == "1" and window_active == "1"


class Result(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def escape_arg(arg: str) -> str:
    """``arg`` as tmux must receive it to read it back unchanged: a trailing ``;`` escaped."""
    return arg[:-1] + "\\;" if arg.endswith(";") else arg


def target(session: str) -> str:
    return f"={session}:"


class Tmux:
    """One tmux server: ``-L socket`` (None: the default server). ``environ`` is the environment of
    the tmux client (None: ours); where the socket lies follows its ``TMUX_TMPDIR``."""

    def __init__(
        self, socket: str | None = None, binary: str = "tmux", environ: Mapping[str, str] | None = None
    ) -> None:
        self.socket = socket
        self.binary = binary
        self.environ = None if environ is None else dict(environ)

    def argv(self, *args: str) -> list[str]:
        base = [self.binary]
        if self.socket:
            base += ["-L", self.socket]
        return [*base, *args]

    def run(
        self, *args: str, stdin: bytes | None = None, check: bool = True, cwd: str | None = None
    ) -> Result:
        """One tmux command; every argument reaches tmux as it is."""
        return self.run_all([args], stdin=stdin, check=check, cwd=cwd)

    def run_all(
        self,
        commands: Sequence[Sequence[str]],
        *,
        stdin: bytes | None = None,
        check: bool = True,
        cwd: str | None = None,
    ) -> Result:
        """Several tmux commands in one tmux call, each argument passed literally."""
        args: list[str] = []
        for command in commands:
            if args:
                args.append(";")
            args += [escape_arg(arg) for arg in command]
        argv = self.argv(*args)
        log.debug("tmux %s", " ".join(args[:2]))
        try:
            proc = subprocess.run(
                argv, input=stdin, capture_output=True, check=False, cwd=cwd, env=self.environ
            )
        except FileNotFoundError:
            raise ToolMissing(tool="tmux", hint="install it (apt install tmux / brew install tmux)") from None
        result = Result(
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace").strip(),
        )
        if check and result.returncode != 0:
            raise TmuxError(args=args, detail=result.stderr or f"exit {result.returncode}")
        return result

    @staticmethod
    def available(binary: str = "tmux") -> bool:
        return shutil.which(binary) is not None

    def version(self) -> str:
        return self.run("-V").stdout.strip()

    # -- queries -----------------------------------------------------------------------------------

    def _reap(self) -> None:
        """Have the server read the exit status of a pane whose process died. tmux 3.3 may leave that
        process a zombie, the pane dead with no status, until another child of the server exits (on a
        loaded machine, a third of quick exits; for ever on a quiet server): a job of its own that
        exits at once makes it reap every one."""
        self.run("run-shell", "true", check=False)

    def panes(self, *, _reaped: bool = False) -> dict[str, Pane]:
        """The visible pane of every tmux session on this server, by session name: one tmux call (two
        more when a dead pane's exit status is not read yet, see ``_reap``)."""
        proc = self.run("list-panes", "-a", "-F", _FORMAT, check=False)
        if proc.returncode != 0:
            if _matches(proc.stderr, _NO_SERVER):
                return {}
            raise TmuxError(args=("list-panes",), detail=proc.stderr)
        found: dict[str, Pane] = {}
        for line in proc.stdout.splitlines():
            parsed = Pane.parse(line)
            if parsed is None:
                continue
            pane, visible = parsed
            if visible or pane.session not in found:
                found[pane.session] = pane
        if not _reaped and any(p.dead and p.dead_status is None for p in found.values()):
            self._reap()
            return self.panes(_reaped=True)
        return found

    def snapshot(self, session: str, *, _reaped: bool = False) -> tuple[Pane, str] | None:
        """The pane of a session and what its screen shows, in one tmux call; None when it is gone."""
        proc = self.run_all(
            [
                ["display-message", "-p", "-t", target(session), _FORMAT],
                ["capture-pane", "-p", "-t", target(session)],
            ],
            check=False,
        )
        if proc.returncode != 0:
            if _matches(proc.stderr, _GONE + _NO_SERVER):
                return None
            raise TmuxError(args=("display-message",), detail=proc.stderr)
        first, _, screen = proc.stdout.partition("\n")
        parsed = Pane.parse(first)
        if parsed is None:
            return None
        if not _reaped and parsed[0].dead and parsed[0].dead_status is None:
            self._reap()  # see _reap
            return self.snapshot(session, _reaped=True)
        return parsed[0], screen

    def scrollback(self, session: str, lines: int | None = None) -> str:
        start = "-" if lines is None else str(-lines)
        proc = self.run("capture-pane", "-p", "-J", "-S", start, "-t", target(session), check=False)
        if proc.returncode != 0:
            return ""
        return proc.stdout

    def exists(self, session: str) -> bool:
        return self.run("has-session", "-t", f"={session}", check=False).returncode == 0

    # -- actions -----------------------------------------------------------------------------------

    def new_session(
        self,
        session: str,
        *,
        cwd: str,
        command: Sequence[str],
        width: int = 200,
        height: int = 50,
    ) -> None:
        """Start a detached session in ``cwd`` running ``command`` directly (no shell).

        ``cwd`` is where the tmux client runs, not a ``-c`` argument, which tmux would expand as a
        format. The command's environment is the tmux server's: a command that needs its own must set
        it itself (see :mod:`dev_sessions.launch`), since ``-e NAME=VALUE`` would put values, secrets
        among them, on a command line any local user can read. The pane stays after the command
        exits, so that its last words and exit status can be read.
        """
        self.run_all(
            [
                ["new-session", "-d", "-s", session, "-x", str(width), "-y", str(height), "--", *command],
                ["set-option", "-p", "-t", target(session), "remain-on-exit", "on"],
            ],
            cwd=cwd,
        )

    def paste(self, session: str, data: bytes, *, enter: bool) -> None:
        """Deliver ``data`` as one bracketed paste, then optionally one Enter.

        The text travels on stdin into a uniquely named buffer, never through argv (argv breaks above
        about 128 KB), and the buffer is deleted by the paste itself. ``-r`` keeps line feeds as they
        are (by default tmux turns each into a carriage return, and a CRLF into two line breaks).
        """
        buffer = f"dev-sessions-{os.getpid()}-{os.urandom(4).hex()}"
        commands = [
            ["load-buffer", "-b", buffer, "-"],
            ["paste-buffer", "-p", "-r", "-d", "-b", buffer, "-t", target(session)],
        ]
        if enter:
            commands.append(["send-keys", "-t", target(session), "Enter"])
        self.run_all(commands, stdin=data)

    def send_keys(self, session: str, keys: Iterable[str], *, literal: bool = False) -> None:
        args = ["send-keys", "-t", target(session)]
        if literal:
            args.append("-l")
        self.run(*args, "--", *keys)

    def kill(self, session: str) -> bool:
        proc = self.run("kill-session", "-t", f"={session}", check=False)
        return proc.returncode == 0

    def kill_server(self) -> bool:
        """Stop the whole server and every pane in it; True if one was running."""
        return self.run("kill-server", check=False).returncode == 0


def _matches(text: str, needles: Iterable[str]) -> bool:
    return any(n in text for n in needles)
