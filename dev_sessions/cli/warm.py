"""Quick commands answered by a warm process (issue 17), when ``DEV_SESSIONS_WARM=1``.

Every command pays for Python's start, typer's import and ours (~100 ms) before its own few ms of work.
A warm process has all of that done once: the command line goes to it over a Unix socket, and a child it
forks for the call runs it exactly as this process would have, as the caller:

* **The client** (:func:`client`, the standard library only, run by :func:`dev_sessions.cli.main` before
  anything else is imported) sends the argv, the environment, the working directory and the umask, and
  passes its own stdin, stdout and stderr (``SCM_RIGHTS``), so that the child reads and writes the
  caller's very files and terminal (``isatty`` and the terminal's width are the caller's). It forwards
  SIGINT, SIGTERM and SIGHUP to the child (Ctrl-C during ``msg wait``), and exits with the child's exit
  code. Only the quick commands go this way (:data:`QUICK`): nothing that takes over the terminal
  (``attach``, ``tui``), serves (``gateway``, ``dashboard``, ``mcp``) or streams (``logs``, ``wait``).
* **When it cannot**, the command runs here, as without it, just slower: no server (one is started in
  the background for the next command), a socket of another uid, code changed since the server started
  (it says so before running anything, and steps aside), a server that breaks before the child says
  it runs. Once the child has said so, the command is never run a second time here: a child that ends
  without an exit code is one line and exit 1.
* **The server** (``python -m dev_sessions.cli.warm``) is :class:`dev_sessions.remote.serve.Server`, the
  host's warm call server, with another socket (``serve/cli.sock``, 0600 in a 0700 directory; a peer of
  another uid is refused) and another lock: one per state directory, gone after
  ``DEV_SESSIONS_SERVE_LINGER`` seconds without a command (default 600), or when its code changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
from collections.abc import Mapping, Sequence

ENV = "DEV_SESSIONS_WARM"
QUICK = frozenset(
    {"status", "list", "last-message", "send", "inspect", "usage", "interrupt", "respond"}
    | {"msg", "space", "agents", "context", "stats", "project", "focus", "lease"}
)
"""The commands a warm process answers (the first word of the command line)."""

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_NO_EXIT = 1


def home_of(environ: Mapping[str, str]) -> str:
    """The state directory, as :class:`dev_sessions.config.Settings` finds it (without importing it)."""
    home = environ.get("DEV_SESSIONS_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".dev-sessions"
    )
    return os.path.expanduser(home)


def socket_path(home: str) -> str | None:
    """The warm process's socket; None when the path is too long for a Unix socket (then no warm
    process: the commands run as they are)."""
    path = os.path.join(home, "serve", "cli.sock")
    return path if len(os.fsencode(path)) < 100 else None


def wanted(args: Sequence[str], environ: Mapping[str, str]) -> bool:
    if environ.get(ENV, "").lower() not in ("1", "on", "yes", "true"):
        return False
    words = [a for a in args if not a.startswith("-")]
    return bool(words) and words[0] in QUICK


def client(args: Sequence[str]) -> int | None:
    """The command line run by the warm process: its exit code; None when it was not run there."""
    home = home_of(os.environ)
    path = socket_path(home)
    if path is None or not os.path.isdir(home):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        _start()
        return None
    with sock:
        if _peer_uid(sock) not in (None, os.getuid()):
            return None  # not ours: never send it our environment
        umask = os.umask(0o077)
        os.umask(umask)
        caller = {"argv": list(args), "argv0": sys.argv[0], "env": dict(os.environ), "cwd": os.getcwd()}
        request = json.dumps({**caller, "umask": umask}).encode()
        try:
            socket.send_fds(sock, [struct.pack("!I", len(request)) + request], [0, 1, 2])
        except OSError:
            return None
        return _answer(sock)


def _answer(sock: socket.socket) -> int | None:
    child: list[int] = []

    def forward(signum: int, frame: object) -> None:
        if child:
            os.kill(child[0], signum)

    before = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        for line in sock.makefile("rb"):
            try:
                said = json.loads(line)
            except ValueError:
                break
            if "stale" in said and not child:
                return None  # not run: the code changed under the server
            if "pid" in said:
                child.append(int(said["pid"]))
            if "exit" in said:
                return int(said["exit"])
    except OSError:
        pass
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    if not child:
        return None  # the command never started there
    said = "dev-sessions: the command ended without an exit status (the warm process stopped)"
    print(said, file=sys.stderr)
    return _NO_EXIT


def _peer_uid(sock: socket.socket) -> int | None:
    creds = getattr(socket, "SO_PEERCRED", None)
    if creds is None:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, creds, struct.calcsize("3i"))
    return int(struct.unpack("3i", raw)[1])


def _start() -> None:
    """A warm process for the next command, started in the background with this one's environment."""
    import subprocess

    with contextlib.suppress(OSError):
        subprocess.Popen(
            [sys.executable, "-m", "dev_sessions.cli.warm"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd="/", start_new_session=True, close_fds=True,
        )  # fmt: skip


# -- the server's side ---------------------------------------------------------------------------------

_REQUEST_MAX = 1 << 24


class Command:
    """One command line, in the child the server forked for it: it becomes the caller, then runs it."""

    def __init__(self, conn: socket.socket, code: str, server: int) -> None:
        self.conn = conn
        self.code = code
        self.server = server

    def run(self) -> None:
        import logging

        from dev_sessions.codex.link import code_stamp

        conn = self.conn
        conn.settimeout(60.0)
        try:
            head, fds, _, _ = socket.recv_fds(conn, 4, 3)
        except OSError:
            return
        try:
            if len(head) != 4 or len(fds) != 3:
                return
            size = struct.unpack("!I", head)[0]
            if size > _REQUEST_MAX:
                return
            body = b""
            while len(body) < size:
                chunk = conn.recv(size - len(body))
                if not chunk:
                    return
                body += chunk
            if code_stamp() != self.code:
                logging.getLogger("dev_sessions.cli.warm").info("the installed code changed; stepping aside")
                conn.sendall(b'{"stale": true}\n')
                if os.getppid() == self.server:
                    os.kill(self.server, signal.SIGTERM)
                return
            request = json.loads(body)
            words = [str(a) for a in request["argv"] if not str(a).startswith("-")]
            # The command's name only: its arguments may be a message or a secret.
            name = words[0] if words and words[0] in QUICK else "?"
            logging.getLogger("dev_sessions.cli.warm").info("pid %d runs a %s command", os.getpid(), name)
            self._become(request, fds)
        finally:
            for fd in fds:
                if fd > 2:
                    os.close(fd)
        conn.settimeout(None)
        conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
        code = _run(request["argv"])
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({"exit": code}).encode() + b"\n")
        os._exit(code)

    def _become(self, request: dict[str, object], fds: list[int]) -> None:
        """This process as the caller: its files on 0, 1 and 2, its directory, environment and umask, and
        a fresh process's signal handlers and logging."""
        import io
        import logging

        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.chdir(str(request["cwd"]))
        env = request["env"]
        assert isinstance(env, dict)
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in env.items()})
        umask = request["umask"]
        assert isinstance(umask, int)
        os.umask(umask)
        sys.argv = [str(request.get("argv0") or "dev-sessions"), *map(str, request["argv"])]  # type: ignore[call-overload]
        encoding = sys.stdout.encoding if sys.stdout is not None else "utf-8"

        def text(fd: int, mode: str) -> io.TextIOWrapper:
            # As Python makes them: stderr and a terminal line-buffered, stderr's errors escaped.
            lines = mode == "w" and (fd == 2 or os.isatty(fd))
            errors = "backslashreplace" if fd == 2 else "strict"
            buffering = 1 if lines else -1
            stream = open(fd, mode, encoding=encoding, errors=errors, closefd=False, buffering=buffering)  # noqa: SIM115
            assert isinstance(stream, io.TextIOWrapper)
            return stream

        sys.stdin, sys.stdout, sys.stderr = text(0, "r"), text(1, "w"), text(2, "w")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        root = logging.getLogger("dev_sessions")
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.setLevel(logging.NOTSET)


def _run(argv: list[str]) -> int:
    from dev_sessions.cli import run

    try:
        return run(list(argv))
    except SystemExit as exit_:
        code = exit_.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# Imported once by the server: what the quick commands load.
PRELOAD = (
    "typer",
    "dev_sessions.cli.app",
    "dev_sessions.cli.sessions",
    "dev_sessions.cli.lifecycle",
    "dev_sessions.cli.messaging",
    "dev_sessions.cli.messaging_extras",
    "dev_sessions.cli.coordination",
    "dev_sessions.sessions",
    "dev_sessions.messaging.messenger",
    "dev_sessions.claude.backend",
    "dev_sessions.codex.backend",
    "dev_sessions.tmux",
    "dev_sessions.terminal",
)


def main() -> None:
    import fcntl
    import importlib
    import logging
    import time
    from pathlib import Path

    from dev_sessions.config import Settings
    from dev_sessions.files import open_private, private_dir
    from dev_sessions.remote import serve

    settings = Settings.from_env()
    path = socket_path(str(settings.home))
    if path is None or not settings.home.is_dir():
        return
    directory = private_dir(serve.serve_dir(settings.home))
    lock_fd = open_private(directory / "cli.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another one runs: it serves
    serve.log_to(directory / "cli.log", settings.debug)
    log = logging.getLogger("dev_sessions.cli.warm")
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as err:
            log.debug("not preloaded: %s (%s)", name, err)
    from dev_sessions import cli

    cli.prebuild()  # every command built once: a child builds none (~10 ms of typer each)
    started = time.monotonic()
    serve.Server(settings, Path(path), lock_fd, handler=Command, name="warm command server").run()
    log.info("up %.0f s", time.monotonic() - started)


if __name__ == "__main__":
    main()
