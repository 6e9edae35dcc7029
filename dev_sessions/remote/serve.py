"""The warm call server: a host's ``dev-sessions call``, answered without starting Python for each call.

A client on another machine reaches it through its ssh connection: the ControlMaster forwards a Unix
socket there to this server's socket here (:mod:`dev_sessions.remote.warm`). What it owns:

* The process. One per state directory (an ``flock`` held for its life), started detached by
  ``dev-sessions call --serve`` (:func:`start`, which a client runs over ssh) with that command's
  environment and working directory, the same a ``dev-sessions call`` over ssh has. It has the library
  imported once; each connection is then served by a child forked for it, which makes a fresh
  ``Settings`` and library object as ``call`` does (nothing is shared between calls but the imported
  code), so that a slow call (``wait``) never holds up another. It exits after
  ``DEV_SESSIONS_SERVE_LINGER`` seconds (default 600) without a call, on SIGTERM, or when the code
  installed under it changes: a call that finds the code changed is not run (the answer says
  ``retry``, and the client makes it over plain ssh, whose ``call --serve`` then starts a new server).
* The socket: ``$DEV_SESSIONS_HOME/serve/call.sock`` (0600, in a 0700 directory; in
  ``$XDG_RUNTIME_DIR`` or ``/tmp/dev-sessions-<uid>/`` when that path is too long), and a peer of
  another uid is refused (``SO_PEERCRED``).
* The wire, one connection per call: the server says hello first (``{"serve": 1, "pid", "server",
  "code", "streams": 1}``), so that a client knows, before it sends anything, that a server answers
  (and that it streams); then one request line (``call``'s JSON: ``{"api", "method", "args"}``), and
  ``call``'s answer lines: one (``{"result"}`` or ``{"error"}``), or for a streamed call (``follow``)
  an ``{"item"}`` line per item as it comes and then the last; or ``{"retry": why}`` for a call that
  was not run. ``{"serve": "ping"}`` and ``{"serve": "exit"}`` are for ``call --serve`` itself.
* A client that goes away: a long or streamed call (``wait``, ``follow``) is stopped at once, as the
  gateway does; another call runs to its end, as it would over ssh.

What it must not do: answer a call with anything but :func:`dev_sessions.cli.call.answer_lines`, hold
state between calls, or outlive its code.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dev_sessions.config import Settings
from dev_sessions.errors import EXIT_ERROR, EXIT_OK, DevSessionsError
from dev_sessions.files import check_not_link, open_private, private_dir
from dev_sessions.remote.wire import PROTOCOL, greet, read_line

if TYPE_CHECKING:
    from dev_sessions.api import Call

log = logging.getLogger("dev_sessions.remote.serve")


class Handler(Protocol):
    def run(self) -> None: ...


_START_TIMEOUT = 20.0
_REQUEST_TIMEOUT = 60.0  # a client that connects and never asks
_LOG_MAX = 1 << 20

# Imported once by the server, so that no call pays for them: what a call of each API loads.
WARM = (
    "dev_sessions.cli.call",
    "dev_sessions.gateway.checks",
    "dev_sessions.gateway.protocol",
    "dev_sessions.sessions",
    "dev_sessions.messaging.messenger",
    "dev_sessions.claude.backend",
    "dev_sessions.codex.backend",
    "dev_sessions.codex.link",
    "dev_sessions.watch",
    "dev_sessions.tmux",
    "dev_sessions.worktrees",
    "dev_sessions.results",
    "dev_sessions.launch",
    "dev_sessions.claude.status",
)


def serve_dir(home: Path) -> Path:
    return home / "serve"


def socket_path(home: Path, environ: Mapping[str, str] | None = None) -> Path:
    """The server's socket; outside the state dir when that path would be too long for a Unix socket
    (in ``environ``'s runtime dir, or /tmp: :func:`~dev_sessions.codex.link.socket_dir`)."""
    path = serve_dir(home) / "call.sock"
    if len(os.fsencode(path)) < 100:
        return path
    import hashlib

    from dev_sessions.codex.link import socket_dir

    digest = hashlib.sha256(os.fsencode(home.resolve())).hexdigest()[:16]
    return socket_dir(environ) / f"{digest}-call.sock"


# -- ``dev-sessions call --serve`` --------------------------------------------------------------------


def start() -> int:
    """Make sure this host's server runs this code, and print where it listens (one JSON line)."""
    from dev_sessions.codex.link import code_stamp
    from dev_sessions.lock import FileLock

    try:
        settings = Settings.from_env()
        path = socket_path(settings.home)
        code = code_stamp()
        hello = _ping(path)
        if hello is None or hello.get("code") != code:
            directory = private_dir(serve_dir(settings.home))
            with FileLock(directory / "start.lock", timeout=_START_TIMEOUT + 10):
                hello = _ping(path)
                if hello is not None and hello.get("code") != code:
                    _stop(path)
                    hello = None
                if hello is None:
                    hello = _spawn(directory, path, code)
    except DevSessionsError as err:
        print(f"dev-sessions: {err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:
        print(f"dev-sessions: the call server did not start: {err}", file=sys.stderr)
        return EXIT_ERROR
    sys.stdout.write(json.dumps({"socket": str(path), "pid": hello["server"], "code": hello["code"]}) + "\n")
    return EXIT_OK


def _connect(path: Path, timeout: float) -> socket.socket | None:
    from dev_sessions.peers import peer_uid

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    uid = peer_uid(sock)
    if uid is not None and uid != os.getuid():
        sock.close()
        from dev_sessions.errors import UnsafePath

        raise UnsafePath(path=str(path), detail=f"is answered by a process of uid {uid}; remove it")
    return sock


def _ping(path: Path, request: str = "ping") -> dict[str, Any] | None:
    """The running server's hello (after its answer to ``request``), or None when none answers."""
    sock = _connect(path, 5.0)
    if sock is None:
        return None
    with contextlib.closing(sock):
        hello = greet(sock)
        if hello is None:
            return None
        with contextlib.suppress(OSError):
            sock.sendall(json.dumps({"serve": request}).encode() + b"\n")
            read_line(sock, 4096)
        return hello


def _stop(path: Path) -> None:
    """Ask a server of other code to go, and wait until it has (its socket answers no more)."""
    from dev_sessions.poll import poll_until

    _ping(path, "exit")
    poll_until(lambda: _connect_quietly(path) is None, 5.0, 0.01)


def _connect_quietly(path: Path) -> socket.socket | None:
    sock = _connect(path, 1.0)
    if sock is not None:
        sock.close()
    return sock


def _spawn(directory: Path, path: Path, code: str) -> dict[str, Any]:
    from dev_sessions import files

    out = directory / "serve.out"
    with os.fdopen(files.open_log(out, truncate=True), "ab") as handle:
        server = subprocess.Popen(
            [sys.executable, "-m", "dev_sessions.remote.serve"],
            stdin=subprocess.DEVNULL, stdout=handle, stderr=handle,
            env=dict(os.environ), start_new_session=True, close_fds=True,
        )  # fmt: skip
    deadline = time.monotonic() + _START_TIMEOUT
    pause = 0.002
    while time.monotonic() < deadline:
        hello = _ping(path)
        if hello is not None and hello.get("code") == code:
            return hello
        if server.poll() is not None and hello is None:
            tail = out.read_text(errors="replace").strip().splitlines()[-1:]
            detail = f"exited with status {server.returncode}" + (f": {tail[0]}" if tail else "")
            raise DevSessionsError(f"call server ({path}): {detail} (see {out})")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.05)
    raise DevSessionsError(f"call server ({path}): did not start in {_START_TIMEOUT:g} s; see {out}")


# -- the server -------------------------------------------------------------------------------------


_HUNG_UP = getattr(select, "POLLRDHUP", 0) | select.POLLHUP
_LOOK_AGAIN = 30.0
"""Seconds between two looks at the server's socket when nothing happens: gone, the server exits."""


def _same_file(path: Path, bound: os.stat_result) -> bool:
    try:
        now = os.lstat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (bound.st_dev, bound.st_ino)


class Server:
    """The listening process: accepts, forks a child per connection, reaps, lingers, exits."""

    def __init__(
        self,
        settings: Settings,
        path: Path,
        lock_fd: int,
        *,
        handler: Callable[[socket.socket, str, int], Handler] | None = None,
        name: str = "call server",
        end_on_hangup: bool = False,
    ) -> None:
        from dev_sessions.codex.link import code_stamp

        self.handler = handler or Served
        """What serves a connection, in the child forked for it (the warm command server's is its own)."""
        self.name = name
        self.settings = settings
        self.path = path
        self.lock_fd = lock_fd
        self.code = code_stamp()
        self.children: set[int] = set()
        self.end_on_hangup = end_on_hangup
        """Kill a child whose client hung up (the warm command server's: a caller killed while its
        command was stopped by Ctrl-Z, which the child cannot see itself)."""
        self.peers: dict[int, tuple[int, socket.socket]] = {}
        """fd of the server's copy of a child's connection -> (the child's pid, the connection)."""
        self.poller = select.poll()
        self.stopping = False
        self.last = time.monotonic()

    def listen(self) -> socket.socket:
        """Bind the socket (before :meth:`run`, for a caller that wants to know it could)."""
        return self._listen()

    def run(self, listener: socket.socket | None = None) -> None:
        listener = listener or self._listen()
        bound = os.lstat(self.path)
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the poll through the wakeup fd
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.poller.register(listener, select.POLLIN)
        self.poller.register(wake_r, select.POLLIN)
        log.info("%s %s pid %d listening on %s", self.name, self.code, os.getpid(), self.path)
        try:
            while not self.stopping:
                idle = _LOOK_AGAIN
                if not self.children:
                    idle = min(idle, max(0.0, self.last + self.settings.serve_linger - time.monotonic()))
                events = self.poller.poll(idle * 1000)  # a signal's handler runs, then it goes on
                with contextlib.suppress(BlockingIOError):
                    wake_r.recv(4096)
                self._reap()
                ready = {fd for fd, _ in events}
                if listener.fileno() in ready:
                    self._accept(listener, (wake_r, wake_w))
                for fd in ready & set(self.peers):
                    self._hung_up(fd)
                if not self.children and time.monotonic() - self.last >= self.settings.serve_linger:
                    log.info("no call for %.0f s; exiting", self.settings.serve_linger)
                    break
                if not events and not _same_file(self.path, bound):
                    # Its state dir removed (a test's, a sandbox's), or another server in its place.
                    log.info("its socket is gone or replaced; exiting")
                    break
        finally:
            listener.close()
            if _same_file(self.path, bound):
                with contextlib.suppress(OSError):
                    self.path.unlink()
            log.info(
                "%s pid %d stopped (%d calls still running on their own)",
                self.name,
                os.getpid(),
                len(self.children),
            )

    def _hung_up(self, fd: int) -> None:
        """A client gone before its child ended: the child killed (a stopped one cannot see it), and what
        it ran woken, to see it gone too."""
        pid, conn = self.peers.pop(fd)
        self.poller.unregister(fd)
        conn.close()
        if pid in self.children:
            log.info("pid %d: its caller went away; ending it", pid)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGCONT)

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _listen(self) -> socket.socket:
        private_dir(self.path.parent)
        # The lock is ours: a socket left there is a dead server's.
        with contextlib.suppress(FileNotFoundError):
            check_not_link(self.path)
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # one thread yet: nothing else makes a file meanwhile
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old)
        listener.listen(64)
        return listener

    def _reap(self) -> None:
        while self.children:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                break
            if pid == 0:
                break
            self.children.discard(pid)
            self.last = time.monotonic()
            for fd, (child, conn) in list(self.peers.items()):
                if child == pid:
                    del self.peers[fd]
                    self.poller.unregister(fd)
                    conn.close()

    def _accept(self, listener: socket.socket, wake: tuple[socket.socket, socket.socket]) -> None:
        from dev_sessions.peers import peer_uid

        try:
            conn, _ = listener.accept()
        except OSError:
            return
        self.last = time.monotonic()
        uid = peer_uid(conn)
        if uid is not None and uid != os.getuid():
            log.warning("refused a connection from uid %d", uid)
            conn.close()
            return
        server = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: this connection's call, then exit
            code = 1
            try:
                listener.close()
                for end in wake:
                    end.close()
                for _, other in self.peers.values():  # other callers' connections are not this one's
                    other.close()
                os.close(self.lock_fd)
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                self.handler(conn, self.code, server).run()
                code = 0
            except BaseException:
                # The one broad catch: a child must end here, never run on as a second server.
                log.exception("a call failed in the server")
            finally:
                os._exit(code)
        self.children.add(pid)
        if self.end_on_hangup:
            self.peers[conn.fileno()] = (pid, conn)
            self.poller.register(conn, _HUNG_UP)
        else:
            conn.close()


class Served:
    """One connection, in the child forked for it."""

    def __init__(self, conn: socket.socket, code: str, server: int) -> None:
        self.conn = conn
        self.code = code
        self.server = server

    def stop_server(self) -> None:
        """Ask the server to stop; unless it has gone already (a parent of 1 is not it)."""
        if os.getppid() == self.server:
            os.kill(self.server, signal.SIGTERM)

    def run(self) -> None:
        from dev_sessions.cli.call import answer_lines
        from dev_sessions.codex.link import code_stamp

        conn = self.conn
        started = time.monotonic()
        hello = {
            "serve": PROTOCOL,
            "pid": os.getpid(),
            "server": self.server,
            "code": self.code,
            "streams": 1,
        }
        conn.settimeout(_REQUEST_TIMEOUT)
        try:
            conn.sendall(json.dumps(hello).encode() + b"\n")
            line = read_line(conn)
        except OSError:
            return
        if not line.endswith(b"\n"):
            return  # nothing asked (a client that only looked, or went away)
        conn.settimeout(None)
        control = _control(line)
        replies: Iterable[dict[str, object]]
        if control is not None:
            replies = [{"result": {"pid": self.server, "code": self.code}}]
            if control == "exit":
                self.stop_server()
        elif code_stamp() != self.code:
            # Not run: the client makes it over ssh, with the new code, which starts a new server.
            log.info("the installed code changed; stepping aside")
            self.stop_server()
            replies = [{"retry": "the host's dev-sessions changed"}]
        else:
            replies = answer_lines(line, self._started)
        for reply in replies:
            try:
                conn.sendall(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
            except OSError:
                return  # the client went away
        log.debug("call answered in %.1f ms", (time.monotonic() - started) * 1000)

    def _started(self, spec: Call) -> None:
        if spec.long or spec.stream:
            threading.Thread(target=self._watch, daemon=True, name="client-gone").start()

    def _watch(self) -> None:
        """A long or streamed call whose client went away (Ctrl-C, a lost connection) is not waited
        out."""
        with contextlib.suppress(OSError, ValueError):
            select.select([self.conn], [], [])
            if self.conn.recv(1, socket.MSG_PEEK):
                return  # more bytes after the request: not ours to judge, let the call finish
        log.info("the client of a long call went away; stopping it")
        os._exit(0)


def _control(line: bytes) -> str | None:
    with contextlib.suppress(ValueError):
        request = json.loads(line)
        if isinstance(request, dict) and set(request) == {"serve"} and request["serve"] in ("ping", "exit"):
            return str(request["serve"])
    return None


def log_to(path: Path, debug: bool) -> None:
    check_not_link(path)
    with contextlib.suppress(OSError):
        if path.stat().st_size > _LOG_MAX:
            path.rename(path.with_name(path.name + ".1"))
    handler = logging.FileHandler(path)  # O_APPEND: the children write to it too, a line at a time
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    root = logging.getLogger("dev_sessions")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def _warm() -> None:
    import importlib

    for name in WARM:
        try:
            importlib.import_module(name)
        except ImportError as err:  # a module that needs an optional dependency: the call imports it
            log.debug("not preloaded: %s (%s)", name, err)


def main() -> None:
    settings = Settings.from_env()
    directory = private_dir(serve_dir(settings.home))
    lock_fd = open_private(directory / "server.lock", os.O_RDWR | os.O_CREAT)
    deadline = time.monotonic() + 10
    while True:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                return  # another server runs and keeps running: it serves
            time.sleep(0.01)
    log_to(directory / "serve.log", settings.debug)
    _warm()
    Server(settings, socket_path(settings.home), lock_fd).run()


if __name__ == "__main__":
    main()
