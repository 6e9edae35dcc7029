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
    encodings: list[tuple[str, str]]
    nice: int | None
    limits: list[tuple[int, int, int]]


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
    encodings = _encodings(found.get("encodings"))
    nice, limits = found.get("nice"), found.get("limits", [])
    if not (nice is None or isinstance(nice, int)):
        return None
    if not (isinstance(limits, list) and all(_is_limit(limit) for limit in limits)):
        return None
    return Request(
        argv=argv, argv0=argv0, env=env, cwd=cwd, umask=umask, identity=ident, ignored=ignored,
        encodings=encodings, nice=nice, limits=[tuple(limit) for limit in limits],
    )  # fmt: skip


def _is_limit(found: object) -> bool:
    return isinstance(found, tuple | list) and len(found) == 3 and all(isinstance(n, int) for n in found)


def _take_limits(request: Request) -> bool:
    """This process given the caller's nice value and resource limits; False when it cannot take them
    all (a limit or a priority above the server's, which only a privileged process may raise): the
    command then runs in its caller, never with less than it would have had there."""
    import resource

    try:
        if request["nice"] is not None:
            now = os.getpriority(os.PRIO_PROCESS, 0)
            if request["nice"] != now:
                os.setpriority(os.PRIO_PROCESS, 0, request["nice"])
        for kind, soft, hard in request["limits"]:
            if resource.getrlimit(kind) != (soft, hard):
                resource.setrlimit(kind, (soft, hard))
    except (ValueError, OSError):
        return False
    return True


def _encodings(found: object) -> list[tuple[str, str]]:
    """The caller's streams' encodings and errors, each a known codec and handler (else UTF-8)."""
    import codecs

    chosen = []
    for index in range(3):
        encoding, errors = "utf-8", "backslashreplace" if index == 2 else "strict"
        if isinstance(found, list) and len(found) == 3:
            pair = found[index]
            if isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair):
                try:
                    codecs.lookup(pair[0])
                    codecs.lookup_error(pair[1])
                    encoding, errors = pair[0], pair[1]
                except LookupError:
                    pass
        chosen.append((encoding, errors))
    return chosen


def stamp() -> str:
    """Which code a warm process runs: the package's (:func:`~dev_sessions.codex.link.code_stamp`) and
    its libraries' (the mtime of the directory typer is installed in: an upgrade of typer or click
    changes it)."""
    import importlib.util

    from dev_sessions.codex.link import code_stamp

    spec = importlib.util.find_spec("typer")
    where = os.path.dirname(os.path.dirname(spec.origin)) if spec and spec.origin else ""
    try:
        libraries = os.stat(where).st_mtime_ns if where else 0
    except OSError:
        libraries = 0
    return f"{code_stamp()}-{libraries}"


def _same_machine(conn: socket.socket) -> bool:
    """Whether the peer runs in this process's mount and pid namespaces (Linux: read from ``/proc``
    of the peer's pid, which the kernel gives in ours): a container that sees the socket is not this
    machine, whatever its request says. True where it cannot be known."""
    from dev_sessions.peers import peer_pid

    try:
        pid = peer_pid(conn)
        if pid is None or not os.path.isdir("/proc/self/ns"):
            return True
        return all(
            os.readlink(f"/proc/{pid}/ns/{kind}") == os.readlink(f"/proc/self/ns/{kind}")
            for kind in ("mnt", "pid")
        )
    except OSError:
        return False


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
        import logging
        import signal

        log = logging.getLogger("dev_sessions.cli.warm")
        conn = self.conn
        conn.settimeout(60.0)
        try:
            head = _exactly(conn, 4)
            size = int.from_bytes(head, "big")
            if len(head) != 4 or size > _REQUEST_MAX:
                return
            body = _exactly(conn, size)
        except OSError:
            return
        if len(body) != size:
            return
        if stamp() != self.code:
            log.info("the installed code changed; stepping aside")
            conn.sendall(b"stale\n")
            if os.getppid() == self.server:
                os.kill(self.server, signal.SIGTERM)
            return
        # marshal, not JSON: the client loads no more than C modules. Only the owner's processes reach
        # this socket (its mode, and the peer's uid checked by the server).
        request = _request(marshal.loads(body))
        if request is None:
            return
        if request["identity"] != self.identity or not _same_machine(conn):
            # Another install, another state directory whose name clashed, or a container: not ours.
            log.info("a command of another install, state directory or machine: not run here")
            conn.sendall(b"other\n")
            return
        if not _take_limits(request):
            log.info("a command whose caller has limits above this server's: not run here")
            conn.sendall(b"other\n")
            return
        words = [a for a in request["argv"] if not a.startswith("-")]
        # The command's name only: its arguments may be a message or a secret.
        name = words[0] if words and words[0] in warm.QUICK else "?"
        log.info("pid %d runs a %s command", os.getpid(), name)
        # A process group of its own, as a shell gives a job: the caller's signals reach the command and
        # whatever it runs (ssh, tmux), as a terminal's would.
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
        # The caller forwards a Ctrl-C as soon as it reads the pid: it may land before the command's
        # own handling does, and is the same interruption.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        code = 1
        try:
            conn.sendall(f"pid {os.getpid()}\n".encode())
            # Its files come with its go, not with the request: a caller that gave up waiting (and runs
            # the command itself) leaves none of them held open here (a pipe's reader would wait).
            go, fds, _, _ = socket.recv_fds(conn, 1, 3)
            try:
                if go != b"g" or len(fds) != 3:
                    return
                self._become(request, fds)
            finally:
                for fd in fds:
                    if fd > 2:
                        os.close(fd)
            conn.settimeout(None)
            _end_with_the_caller(conn)
            code = _run(request["argv"])
        except KeyboardInterrupt:
            code = 130
        except BaseException:  # the one broad catch: DEV_SESSIONS_DEBUG's traceback, as Python prints it
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command is over: its code goes back
            _at_exit()
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            with contextlib.suppress(OSError):
                conn.sendall(f"exit {code}\n".encode())
            os._exit(code)

    def _become(self, request: Request, fds: list[int]) -> None:
        """This process as the caller: its files on 0, 1 and 2, its directory, environment and umask, and
        a fresh process's signal handlers (SIGINT's is set by :meth:`run`) and logging."""
        import io
        import logging
        import signal
        import time

        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.umask(request["umask"])
        time.tzset()  # the caller's TZ
        sys.argv = [request["argv0"] or "dev-sessions", *request["argv"]]

        def text(fd: int, mode: str) -> io.TextIOWrapper:
            # As Python makes them: the caller's encodings, stderr and a terminal line-buffered.
            lines = mode == "w" and (fd == 2 or os.isatty(fd))
            encoding, errors = request["encodings"][fd]
            buffering = 1 if lines else -1
            stream = open(fd, mode, encoding=encoding, errors=errors, closefd=False, buffering=buffering)  # noqa: SIM115
            assert isinstance(stream, io.TextIOWrapper)
            return stream

        sys.stdin, sys.stdout, sys.stderr = text(0, "r"), text(1, "w"), text(2, "w")
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


def _exactly(conn: socket.socket, size: int) -> bytes:
    """``size`` bytes, or fewer if the connection ends first."""
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _at_exit() -> None:
    """What the interpreter runs as it exits (``atexit``: the ssh streams of a remote follow stopped),
    which ``os._exit`` skips."""
    import atexit

    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()


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

    code = stamp()  # before anything is loaded: code that changes meanwhile is seen by the first command
    settings = Settings.from_env()
    home = str(settings.home)
    ident = warm.identity(home)
    name = warm.key(ident)
    directory = serve.serve_dir(settings.home)
    failed = Path(warm.failed_path(home, name))
    log = logging.getLogger("dev_sessions.cli.warm")
    try:
        private_dir(directory)
        lock_fd = open_private(Path(warm.lock_path(home, name)), os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another one runs: it serves
        os.ftruncate(lock_fd, 0)
        os.write(lock_fd, f"{os.getpid()}\n".encode())
        serve.log_to(directory / "cli.log", settings.debug)
        path = Path(warm.socket_path(home, os.environ, name))
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
        server = serve.Server(
            settings, path, lock_fd, handler=Command, name="warm command server", end_on_hangup=True
        )
        server.code = code
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
