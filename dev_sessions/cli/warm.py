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
* **The server** (:mod:`.warm_server`) is :class:`dev_sessions.remote.serve.Server`, the host's warm
  call server, with another socket (``serve/cli.sock``, 0600 in a 0700 directory; a peer of
  another uid is refused) and another lock: one per state directory, gone after
  ``DEV_SESSIONS_SERVE_LINGER`` seconds without a command (default 600), or when its code changes.
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
QUICK = frozenset(
    {"status", "list", "last-message", "send", "inspect", "usage", "interrupt", "respond"}
    | {"msg", "space", "agents", "context", "stats", "project", "focus", "lease"}
)
"""The commands a warm process answers (the first word of the command line)."""

_FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)
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
    """The command line run by the warm process: its exit code; None when it was not run there.

    The wire: the request is 4 bytes of length, then a ``marshal``-ed dict (argv, argv0, env, cwd,
    umask), with the three fds on its first bytes; the answers are lines: ``pid N`` once the child
    runs it, then ``exit N``; or ``stale`` (not run: the code changed)."""
    home = home_of(os.environ)
    path = socket_path(home)
    if path is None or not os.path.isdir(home):
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        try:
            sock.connect(path)
        except OSError:
            _start()
            return None
        if _peer_uid(sock) not in (None, os.getuid()):
            return None  # not ours: never send it our environment
        return _ask(sock, args)
    finally:
        sock.close()


def _ask(sock: _socket.socket, args: Sequence[str]) -> int | None:
    umask = os.umask(0o077)
    os.umask(umask)
    caller = {"argv": list(args), "argv0": sys.argv[0], "env": dict(os.environ), "cwd": os.getcwd()}
    data = marshal.dumps({**caller, "umask": umask})
    payload = len(data).to_bytes(4, "big") + data
    fds = array.array("i", [0, 1, 2]).tobytes()
    child: list[int] = []
    early: list[int] = []

    def forward(signum: int, frame: object) -> None:
        if child:
            os.kill(child[0], signum)
        else:
            early.append(signum)  # before the child runs: it gets it once it does

    # From before the request goes: a Ctrl-C at any moment reaches the command, or stops it before it ran.
    before = {sig: _signal.signal(sig, forward) for sig in _FORWARDED}
    pending = b""
    try:
        sent = sock.sendmsg([payload], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        if sent < len(payload):
            sock.sendall(payload[sent:])
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                word, _, value = line.decode("ascii", "replace").partition(" ")
                if word == "stale" and not child:
                    break
                if word == "pid":
                    child.append(int(value))
                    for signum in early:
                        os.kill(child[0], signum)
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
        if early:  # stopped before it ran there: nothing ran, and it is not run here either
            return 128 + early[0]
        return None  # not run there (the code changed, or the server went): run it here
    said = "dev-sessions: the command ended without an exit status (the warm process stopped)"
    print(said, file=sys.stderr)
    return _NO_EXIT


def _peer_uid(sock: _socket.socket) -> int | None:
    creds = getattr(_socket, "SO_PEERCRED", None)
    if creds is None:
        return None
    raw = sock.getsockopt(_socket.SOL_SOCKET, creds, 12)  # struct ucred: pid, uid, gid
    return int.from_bytes(raw[4:8], sys.byteorder, signed=True)


def _start() -> None:
    """A warm process for the next command, started in the background with this one's environment."""
    import subprocess

    try:
        subprocess.Popen(
            [sys.executable, "-m", "dev_sessions.cli.warm_server"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd="/", start_new_session=True, close_fds=True,
        )  # fmt: skip
    except OSError:
        return
