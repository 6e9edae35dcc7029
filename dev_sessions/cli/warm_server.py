"""The warm command server (issue 17): the server's side of :mod:`dev_sessions.cli.warm`.

``python -m dev_sessions.cli.warm_server``, started in the background by a client that found none: it
loads typer, the command modules and the backends, builds every command once, and serves
``$DEV_SESSIONS_HOME/serve/cli.sock`` with :class:`dev_sessions.remote.serve.Server`; each command
line is run by :class:`Command` in a child forked for it.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import socket
import sys
from pathlib import Path
from typing import TypedDict

from dev_sessions.cli import warm


class Request(TypedDict):
    argv: list[str]
    argv0: str
    env: dict[str, str]
    cwd: str
    umask: int
    identity: str
    ignored: list[int]


def _request(found: object) -> Request | None:
    """The request as sent by :func:`client`, its types checked; None for anything else."""
    if not isinstance(found, dict):
        return None
    argv, env = found.get("argv"), found.get("env")
    if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)):
        return None
    if not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        return None
    cwd, umask, argv0 = found.get("cwd"), found.get("umask"), found.get("argv0", "")
    ident = found.get("identity")
    if not (isinstance(cwd, str) and isinstance(umask, int) and isinstance(argv0, str)):
        return None
    ignored = found.get("ignored", [])
    if not isinstance(ident, str):
        return None
    if not (isinstance(ignored, list) and all(isinstance(sig, int) for sig in ignored)):
        return None
    return Request(argv=argv, argv0=argv0, env=env, cwd=cwd, umask=umask, identity=ident, ignored=ignored)


_REQUEST_MAX = 1 << 24


class Command:
    """One command line, in the child the server forked for it: it becomes the caller, then runs it."""

    identity = ""
    """The server's :func:`warm.identity`: a request of another is not run (set by :func:`main`)."""

    def __init__(self, conn: socket.socket, code: str, server: int) -> None:
        self.conn = conn
        self.code = code
        self.server = server

    def run(self) -> None:
        import contextlib
        import logging
        import signal
        import socket

        from dev_sessions.codex.link import code_stamp

        log = logging.getLogger("dev_sessions.cli.warm")
        conn = self.conn
        conn.settimeout(60.0)
        try:
            head, fds, _, _ = socket.recv_fds(conn, 4, 3)
        except OSError:
            return
        try:
            if len(head) != 4 or len(fds) != 3:
                return
            size = int.from_bytes(head, "big")
            if size > _REQUEST_MAX:
                return
            body = b""
            while len(body) < size:
                chunk = conn.recv(size - len(body))
                if not chunk:
                    return
                body += chunk
            if code_stamp() != self.code:
                log.info("the installed code changed; stepping aside")
                conn.sendall(b"stale\n")
                if os.getppid() == self.server:
                    os.kill(self.server, signal.SIGTERM)
                return
            # marshal, not JSON: the client loads no more than C modules. Only the owner's processes
            # reach this socket (its mode, and the peer's uid checked by the server).
            request = _request(marshal.loads(body))
            if request is None:
                return
            if request["identity"] != self.identity:
                # Another install, or another state directory whose name clashed: not ours to run.
                log.info("a command of another install or state directory: not run here")
                conn.sendall(b"other\n")
                return
            words = [a for a in request["argv"] if not a.startswith("-")]
            # The command's name only: its arguments may be a message or a secret.
            name = words[0] if words and words[0] in warm.QUICK else "?"
            log.info("pid %d runs a %s command", os.getpid(), name)
            self._become(request, fds)
        finally:
            for fd in fds:
                if fd > 2:
                    os.close(fd)
        conn.settimeout(None)
        code = 1
        try:
            conn.sendall(f"pid {os.getpid()}\n".encode())
            # The caller forwards a Ctrl-C as soon as it reads this: it may land before the command's
            # own handling does, and is the same interruption.
            _end_with_the_caller(conn)
            code = _run(request["argv"])
        except KeyboardInterrupt:
            code = 130
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command is over: its code goes back
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            with contextlib.suppress(OSError):
                conn.sendall(f"exit {code}\n".encode())
            os._exit(code)

    def _become(self, request: Request, fds: list[int]) -> None:
        """This process as the caller: its files on 0, 1 and 2, its directory, environment and umask, and
        a fresh process's signal handlers and logging."""
        import io
        import logging
        import signal

        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.umask(request["umask"])
        sys.argv = [request["argv0"] or "dev-sessions", *request["argv"]]
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
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGQUIT, signal.SIGTSTP):
            signal.signal(sig, signal.SIG_DFL)
        for number in request["ignored"]:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.Signals(number), signal.SIG_IGN)
        root = logging.getLogger("dev_sessions")
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.setLevel(logging.NOTSET)


def _end_with_the_caller(conn: socket.socket) -> None:
    """A caller killed outright (SIGKILL: nothing it could forward) takes its command with it, as it
    would have without the warm process: a ``wait`` must not run on for nobody. The client sends nothing
    after its request, so the connection's end is the caller's."""
    import signal
    import threading

    def watch() -> None:
        try:
            while conn.recv(1):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="caller", daemon=True).start()


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

    from dev_sessions.config import Settings
    from dev_sessions.files import open_private, owned_private_dir, private_dir
    from dev_sessions.remote import serve

    settings = Settings.from_env()
    home = str(settings.home)
    ident = warm.identity(home)
    name = warm.key(ident)
    directory = private_dir(serve.serve_dir(settings.home))
    lock_fd = open_private(Path(warm.lock_path(home, name)), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another one runs: it serves
    os.ftruncate(lock_fd, 0)
    os.write(lock_fd, f"{os.getpid()}\n".encode())
    serve.log_to(directory / "cli.log", settings.debug)
    log = logging.getLogger("dev_sessions.cli.warm")
    failed = directory / f"cli-{name}.failed"
    path = Path(warm.socket_path(home, os.environ, name))
    try:
        if path.parent != directory:
            owned_private_dir(path.parent)  # a shared place (the runtime dir, /tmp): ours, or nothing
        for module in PRELOAD:
            try:
                importlib.import_module(module)
            except ImportError as err:
                log.debug("not preloaded: %s (%s)", module, err)
        from dev_sessions import cli

        cli.prebuild()  # every command built once: a child builds none (~10 ms of typer each)
        Command.identity = ident
        server = serve.Server(settings, path, lock_fd, handler=Command, name="warm command server")
        listening = server.listen()
    except Exception as err:  # the one broad catch: commands run without it, and none starts another soon
        log.warning("the warm command server could not start: %s: %s", type(err).__name__, err)
        with contextlib.suppress(OSError):
            os.close(open_private(failed, os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
            os.utime(failed)
        return
    with contextlib.suppress(FileNotFoundError):
        failed.unlink()
    started = time.monotonic()
    server.run(listening)
    log.info("up %.0f s", time.monotonic() - started)


def running(home: Path, key: str = "*") -> list[int]:
    """The pids of the warm command servers of a state directory (of any install, or of the one whose
    :func:`warm.key` is given), from the locks they hold."""
    import fcntl

    pids = []
    for lock in sorted((home / "serve").glob(f"cli-{key}.lock")):
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # held: a server's
            with contextlib.suppress(ValueError, OSError):
                pids.append(int(os.read(fd, 32).decode().strip()))
        finally:
            os.close(fd)
    return pids


def stop(home: Path, timeout: float = 10.0) -> None:
    """Stop the warm command servers of a state directory, and wait until they are gone."""
    import signal
    import time

    pids = running(home)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running(home) and time.monotonic() < deadline:
        time.sleep(0.02)


if __name__ == "__main__":
    main()
