"""Quick commands answered by a warm process (issue 17); on unless ``DEV_SESSIONS_WARM=0``.

Every command pays for Python's start, typer's import and ours (~100 ms) before its own few ms of work.
A warm process has all of that done once: the command line goes to it over a Unix socket, and a child it
forks for the call runs it exactly as this process would have, as the caller:

* **The client** (:func:`client`, C modules only, run by :func:`dev_sessions.cli.main` before anything
  else is imported) sends the argv, the environment, the working directory, the umask, the signals it
  ignores, its nice value and resource limits, and passes its own stdin, stdout and stderr
  (``SCM_RIGHTS``), so that the child reads and writes the caller's very files and terminal (``isatty``
  and the terminal's width are the caller's). The child takes the caller's nice value and limits, or
  runs nothing when it cannot (a limit above the server's).
  It forwards SIGINT, SIGTERM and SIGHUP to the child (Ctrl-C during a ``wait``), stops and resumes it
  with itself (Ctrl-Z), exits with the child's exit code, or dies of the signal the child died of. A
  caller killed outright (SIGKILL) takes the child with it: the child sees the socket close. Only the
  quick commands go this way (:data:`QUICK`).
* **When it cannot**, the command runs here, as without it, just slower: no
  server (one is started in the background for the next command, unless one is starting or one could
  not listen in the last 10 minutes), a socket of another uid, code changed since the server started
  (it says so before running anything, and steps aside), another install's server, a server that breaks
  before the child says it runs, a caller with a limit or priority above the server's. Once the child
  has said so, the command is never run a second time here: a child that ends without an exit code
  is one line and exit 1.
* **The server** (:mod:`.warm_server`) is :class:`dev_sessions.remote.serve.Server`, the host's warm
  call server, with its own handler, one per state directory and install (:func:`identity`): its lock
  ``serve/cli-<key>.lock`` (its pid inside), its socket ``serve/cli-<key>.sock`` or, for a state
  directory too deep for a socket's path, ``$XDG_RUNTIME_DIR/dev-sessions-<uid>/<key>-cli.sock`` (or
  ``/tmp/...``), 0600 in a 0700 directory, a peer of another uid refused; its log ``serve/cli.log``.
  It exits after ``DEV_SESSIONS_SERVE_LINGER`` seconds without a command (default 600), when its code
  changes, or when its socket is gone (its state directory removed).
"""

from __future__ import annotations

# The client imports only C modules: ``socket``, ``signal`` and ``json`` cost ~7 ms more (their enums,
# ``re``), a tenth of a warm command.
import _signal  # type: ignore[import-not-found,unused-ignore]
import _socket
import array
import marshal
import os
import sys
from collections.abc import Mapping, Sequence

ENV = "DEV_SESSIONS_WARM"
OFF = ("0", "off", "no", "false")
QUICK = frozenset(
    {"status", "list", "last-message", "send", "inspect", "usage", "interrupt", "respond", "goal"}
    | {"wait", "ask", "logs"}
    | {"msg", "space", "agents", "context", "stats", "project", "focus", "lease"}
)
"""The commands a warm process answers (the first word of the command line): not those that take over
the terminal (``attach``, ``tui``), serve (``gateway``, ``dashboard``, ``mcp``, ``call``), start or
stop sessions and their servers (``create``, ``kill``: what they start is the caller's), or install."""

_FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)
_NO_EXIT = 1
_ANSWER_WITHIN = 10.0
"""Seconds a server has to say that the command runs (a stopped or swamped one: it runs here)."""
FAILED_FOR = 600.0
"""Seconds after a server could not start during which no command starts another."""
_SOCKET_MAX = 100  # bytes of a Unix socket's path, with room to spare (108 on Linux, 104 on macOS)


def home_of(environ: Mapping[str, str]) -> str:
    """The state directory, as :class:`dev_sessions.config.Settings` finds it (without importing it)."""
    home = environ.get("DEV_SESSIONS_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".dev-sessions"
    )
    return os.path.expanduser(home)


def identity(home: str) -> str:
    """Which server a command may use: the state directory's and this install's (its package and its
    Python), on this machine (its namespaces). Two installs sharing a state directory (a venv and pipx,
    an upgrade into a new place) each have their own server; the server compares it with its own before
    it runs anything."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return "\0".join((os.path.realpath(home), package, sys.executable, *_namespaces()))


def _namespaces() -> tuple[str, ...]:
    """The mount and pid namespaces (Linux): a container that sees the state directory (a mounted home)
    is another machine to the server, whose pids and paths are not the container's."""
    try:
        return os.readlink("/proc/self/ns/mnt"), os.readlink("/proc/self/ns/pid")
    except OSError:
        return ()


def key(ident: str) -> str:
    """16 hex digits naming the server of an :func:`identity` (zlib's sums: no ``hashlib`` to load). A
    clash of two names is harmless: a server answers only its own identity's commands."""
    import zlib

    raw = os.fsencode(ident)
    return f"{zlib.crc32(raw):08x}{zlib.adler32(raw):08x}"


def lock_path(home: str, name: str) -> str:
    """The file the server holds locked for its life (its pid inside), always in the state directory."""
    return os.path.join(home, "serve", f"cli-{name}.lock")


def failed_path(home: str, name: str) -> str:
    """Made when a server could not start: none is started again for :data:`FAILED_FOR` seconds."""
    return os.path.join(home, "serve", f"cli-{name}.failed")


def socket_path(home: str, environ: Mapping[str, str], name: str) -> str:
    """The server's socket: in the state directory, or when that path would be too long for a Unix
    socket, in ``$XDG_RUNTIME_DIR/dev-sessions-<uid>/`` or ``/tmp/dev-sessions-<uid>/`` (as the Codex
    bridge's: :func:`dev_sessions.codex.link.socket_dir`; the server checks that directory is ours)."""
    path = os.path.join(home, "serve", f"cli-{name}.sock")
    if len(os.fsencode(path)) < _SOCKET_MAX:
        return path
    leaf = f"{name}-cli.sock"
    base = os.path.join(environ.get("XDG_RUNTIME_DIR") or "/tmp", f"dev-sessions-{os.getuid()}")
    if len(os.fsencode(base)) + 1 + len(leaf) >= _SOCKET_MAX:
        base = f"/tmp/dev-sessions-{os.getuid()}"
    return os.path.join(base, leaf)


def enabled(environ: Mapping[str, str]) -> bool:
    """On unless ``DEV_SESSIONS_WARM`` is 0, off, no or false."""
    return environ.get(ENV, "1").strip().lower() not in OFF


def wanted(args: Sequence[str], environ: Mapping[str, str]) -> bool:
    if not enabled(environ):
        return False
    words = [a for a in args if not a.startswith("-")]
    return bool(words) and words[0] in QUICK


def client(args: Sequence[str]) -> int | None:
    """The command line run by the warm process: its exit code; None when it was not run there.

    The wire: the request is 4 bytes of length, then a ``marshal``-ed dict (argv, argv0, env, cwd,
    umask, identity, ignored signals, the streams' encodings, nice value, resource limits); the
    answers are lines: ``pid N`` once the child is ready, to which the client says ``g`` (go) with its
    three fds; then ``exit N``. A client that gave up waiting for ``pid`` runs the command itself, and
    the child, seeing it gone, runs nothing; or ``stale`` (not run: the code changed) or ``other``
    (another install's, another machine's (a container's), or limits the child cannot take)."""
    if not _own_terminal():
        return None
    try:
        cwd = os.getcwd()
    except OSError:
        return None  # a directory since removed: the command says so itself
    home = os.path.abspath(home_of(os.environ))
    ident = identity(home)
    name = key(ident)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(_ANSWER_WITHIN)
        try:
            sock.connect(socket_path(home, os.environ, name))
        except OSError:
            if _may_start(home, name):
                _start(home)
            return None
        if _peer_uid(sock) != os.getuid():
            return None  # not ours, or not known to be: never send it our environment
        return _ask(sock, args, ident, cwd)
    finally:
        sock.close()


def _limits() -> tuple[int | None, list[tuple[int, int, int]]]:
    """This process's nice value and resource limits (``nice``, ``ulimit``, a supervisor's): the child
    takes them, or, where it cannot (a limit above the server's), runs nothing and the command runs
    here. ``resource`` is a C module (0.3 ms)."""
    import resource

    try:
        nice: int | None = os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):
        nice = None
    kinds = sorted({getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_")})
    limits = []
    for kind in kinds:
        try:
            limits.append((kind, *resource.getrlimit(kind)))
        except (ValueError, OSError):
            continue
    return nice, limits


def _own_terminal() -> bool:
    """Whether this process's stdin, stdout and stderr can be handed over as they are: all three open
    (a closed one would be the socket's number, and the child would read its own answers), and no
    terminal on stdin of a background job (the child is in no job: it would read the keys typed for
    the foreground one, where this process would be stopped by SIGTTIN)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            return False
    try:
        return not os.isatty(0) or os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def _ask(sock: _socket.socket, args: Sequence[str], ident: str, cwd: str) -> int | None:
    umask = os.umask(0o077)
    os.umask(umask)
    # What the caller ignores (``nohup``, a script's ``cmd &``) it neither forwards nor has the command
    # take: the child ignores them too, as this process would have, and whatever it starts inherits that.
    ignored = [sig for sig in (*_FORWARDED, _signal.SIGQUIT, _signal.SIGTSTP) if _ignores(sig)]
    caller = {"argv": list(args), "argv0": sys.argv[0], "env": dict(os.environ), "cwd": cwd}
    nice, limits = _limits()
    data = marshal.dumps(
        {**caller, "umask": umask, "identity": ident, "ignored": ignored, "encodings": _encodings()}
        | {"nice": nice, "limits": limits}
    )
    payload = len(data).to_bytes(4, "big") + data
    fds = array.array("i", [0, 1, 2]).tobytes()
    child: list[int] = []
    early: list[int] = []
    forwarded: list[int] = []

    def forward(signum: int, frame: object) -> None:
        if child:
            forwarded.append(signum)
            _send(child[0], signum)
        else:
            early.append(signum)  # before the child runs: it gets it once it does

    def suspend(signum: int, frame: object) -> None:
        # Ctrl-Z: the command stops with its caller, and goes on when the caller does (fg, bg).
        if not child:
            early.append(signum)  # once it runs: it stops with this process then
            return
        _send(child[0], _signal.SIGSTOP)
        _stop_here(suspend)
        _send(child[0], _signal.SIGCONT)

    # From before the request goes: a Ctrl-C at any moment reaches the command, or stops it before it ran.
    before = {sig: _signal.signal(sig, forward) for sig in _FORWARDED if sig not in ignored}
    if _signal.SIGTSTP not in ignored:
        before[_signal.SIGTSTP] = _signal.signal(_signal.SIGTSTP, suspend)
    pending = b""
    try:
        sock.sendall(payload)
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                word, _, value = line.decode("ascii", "replace").partition(" ")
                if word in ("stale", "other") and not child:
                    break
                if word == "pid":
                    sock.settimeout(None)  # the command runs as long as it runs
                    # Go, with this process's stdin, stdout and stderr: sent only now, so that none is
                    # held in a server that never took them (a pipe's reader would wait for it).
                    sock.sendmsg([b"g"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
                    child.append(int(value))
                    for signum in early:
                        if signum == _signal.SIGTSTP:
                            suspend(signum, None)
                        else:
                            forwarded.append(signum)
                            _send(child[0], signum)
                    early.clear()
                elif word == "exit":
                    return int(value)
            else:
                continue
            break
    except (OSError, ValueError):
        pass
    finally:
        for sig, handler in before.items():
            _signal.signal(sig, handler)
    if not child:
        if _signal.SIGTSTP in early:
            early.remove(_signal.SIGTSTP)
            _stop_here(_signal.SIG_DFL)  # the Ctrl-Z it was sent, now that it runs the command itself
        if early:  # stopped before it ran there: nothing ran, and it is not run here either
            return _end_by(early[0])
        return None  # not run there (the code changed, or the server went): run it here
    if forwarded:  # the command died of the signal it was sent: so does its caller, as it would have
        return _end_by(forwarded[-1])
    said = "dev-sessions: the command ended without an exit status (the warm process stopped)"
    print(said, file=sys.stderr)
    return _NO_EXIT


def _encodings() -> list[list[str]]:
    """The caller's streams' encodings and errors (``PYTHONIOENCODING``, its locale), for the child's."""
    return [
        [getattr(stream, "encoding", None) or "utf-8", getattr(stream, "errors", None) or "strict"]
        for stream in (sys.stdin, sys.stdout, sys.stderr)
    ]


def _send(pid: int, sig: int) -> None:
    """A signal to the command's process group (the child and what it runs, as a terminal's reaches
    them all); nothing once it is gone."""
    for target in (-pid, pid):
        try:
            os.kill(target, sig)
            return
        except OSError:
            continue


def _stop_here(then: object) -> None:
    """Stop this process as Ctrl-Z would have; ``then`` is SIGTSTP's handler once it goes on."""
    _signal.signal(_signal.SIGTSTP, _signal.SIG_DFL)
    os.kill(os.getpid(), _signal.SIGTSTP)  # stopped here until SIGCONT
    _signal.signal(_signal.SIGTSTP, then)


def _ignores(sig: int) -> bool:
    return bool(_signal.getsignal(sig) == _signal.SIG_IGN)


def _end_by(sig: int) -> int:
    """This process ended by ``sig`` as the command's own would have been: a Ctrl-C is Python's exit 130
    (the command line catches it), another signal kills it."""
    if sig == _signal.SIGINT:
        return 130
    _signal.signal(sig, _signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    return 128 + sig


def _peer_uid(sock: _socket.socket) -> int | None:
    """The server's uid (as :func:`dev_sessions.peers.peer_uid`); None where it cannot be known."""
    try:
        creds = getattr(_socket, "SO_PEERCRED", None)
        if creds is not None:
            raw = sock.getsockopt(_socket.SOL_SOCKET, creds, 12)  # struct ucred: pid, uid, gid
            return int.from_bytes(raw[4:8], sys.byteorder, signed=True)
        if sys.platform == "darwin":  # struct xucred: u_int cr_version; uid_t cr_uid; ...
            raw = sock.getsockopt(0, 0x001, 76)  # SOL_LOCAL, LOCAL_PEERCRED
            return int.from_bytes(raw[4:8], sys.byteorder, signed=False)
    except OSError:
        return None
    return None


def _may_start(home: str, name: str) -> bool:
    """Whether to start a server: not while one holds its lock (it is starting: it loads for ~0.3 s
    before it listens), nor for a while after one could not listen here."""
    import fcntl
    import time

    try:
        fd = os.open(lock_path(home, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        fd = -1
    if fd >= 0:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return False  # held: a server runs, or starts
        finally:
            os.close(fd)
    try:
        failed = os.stat(failed_path(home, name)).st_mtime
    except OSError:
        return True
    return not 0 <= time.time() - failed < FAILED_FOR


def _start(home: str) -> None:
    """A warm process for the next command, started in the background with this one's environment
    (its state directory made absolute: it runs in ``/``)."""
    import subprocess

    try:
        subprocess.Popen(
            [sys.executable, "-m", "dev_sessions.cli.warm_server"],
            env={**os.environ, "DEV_SESSIONS_HOME": home},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd="/", start_new_session=True, close_fds=True,
        )  # fmt: skip
    except OSError:
        return
