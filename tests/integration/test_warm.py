"""The warm command server (issue 17, ``DEV_SESSIONS_WARM=1``): a quick command answered by a child of a
warm process is what it would be without it (output, errors, exit code, stdin, directory, environment,
Ctrl-C), only the owner reaches it, and with no server or a dead one every command still works."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, DevSessions, Result, eventually


@pytest.fixture
def warm(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A state dir with a short path (a Unix socket's is at most ~100 bytes), the warm server on; the
    server stopped at the end."""
    home = Path(tempfile.mkdtemp(prefix="dsw", dir="/tmp"))
    monkeypatch.setenv("DEV_SESSIONS_HOME", str(home))
    monkeypatch.setenv("DEV_SESSIONS_WARM", "1")
    try:
        yield home
    finally:
        pid = server_pid(home)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            eventually(lambda: server_pid(home) is None)
        shutil.rmtree(home, ignore_errors=True)


def sock_of(home: Path) -> Path:
    return home / "serve" / "cli.sock"


def server_pid(home: Path) -> int | None:
    """The listening server's pid (its peer credentials), or None when none answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(sock_of(home)))
        except OSError:
            return None
        raw = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", raw)[0])


def served(home: Path) -> list[tuple[int, str]]:
    """The commands the server's children ran: (pid, the command's name)."""
    log = home / "serve" / "cli.log"
    text = log.read_text() if log.exists() else ""
    return [(int(m[1]), m[2]) for m in re.finditer(r"pid (\d+) runs a (\S+) command", text)]


def cold(cli: DevSessions, *args: str, stdin: str | None = None) -> Result:
    env = {k: v for k, v in os.environ.items() if k != "DEV_SESSIONS_WARM"}
    proc = subprocess.run(
        [sys.executable, "-m", "dev_sessions", *args],
        input=stdin.encode() if stdin is not None else None, capture_output=True, cwd=cli.cwd, env=env,
        timeout=60, check=False,
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def started(cli: DevSessions, home: Path) -> None:
    """The first command runs here and starts the server for the next ones."""
    cli.ok("agents", "register", "bob")
    eventually(lambda: server_pid(home) is not None, timeout=30)
    assert served(home) == []


def test_a_quick_command_is_answered_alike_warm_and_cold(cli: DevSessions, warm: Path) -> None:
    started(cli, warm)
    cases = [
        ("list", "--json"),
        ("status", "nope"),  # an error: one line, exit 1
        ("status",),  # bad usage: exit 2
        ("msg", "read", "--as", "bob", "--json"),
        ("space", "list"),
        ("agents",),
        ("stats", "--json"),
    ]
    for args in cases:
        hot = cli(*args)
        assert hot == cold(cli, *args), args
    expected = ["list", "status", "status", "msg", "space", "agents", "stats"]
    assert [name for _, name in served(warm)] == expected


def test_the_command_gets_the_callers_stdin_directory_and_environment(
    cli: DevSessions, warm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started(cli, warm)
    monkeypatch.setenv("DEV_SESSIONS_AGENT", "alice")
    cli.ok("msg", "send", "--to", "bob", "--file", "-", stdin="from the caller's stdin ✓\n")
    (message,) = json.loads(cli.ok("msg", "read", "--as", "bob", "--json"))
    assert (message["from"], message["body"]) == ("alice", "from the caller's stdin ✓\n")  # as read
    cli.ok("project", "create", "here", "--path", ".")
    assert json.loads(cli.ok("project", "get", "here", "--json"))["path"] == str(cli.cwd.resolve())
    assert [name for _, name in served(warm)] == ["msg", "msg", "project", "project"]


def test_ctrl_c_stops_a_warm_msg_wait(cli: DevSessions, warm: Path) -> None:
    started(cli, warm)
    waiter = subprocess.Popen(
        [sys.executable, "-m", "dev_sessions", "msg", "wait", "--as", "bob", "--timeout", "120"],
        cwd=cli.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        found = eventually(lambda: served(warm), timeout=30)
        assert isinstance(found, list)
        ((child, name),) = found
        assert name == "msg"
        waiter.send_signal(signal.SIGINT)
        out, err = waiter.communicate(timeout=30)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    expected = cold(cli, "msg", "wait", "--as", "bob", "--timeout", "0")  # nothing: what a stop prints
    assert waiter.returncode == 130, (out, err, expected)
    assert out == ""
    eventually(lambda: not Path(f"/proc/{child}").exists(), timeout=10)  # the command's process is gone


def test_a_command_runs_without_a_server_or_with_a_dead_ones_socket(cli: DevSessions, warm: Path) -> None:
    directory = warm / "serve"
    directory.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(sock_of(warm)))  # bound, never listening: a server that died
    assert cli.ok("list", "--json") == "[]\n"
    eventually(lambda: server_pid(warm) is not None, timeout=30)  # a new one took its place
    assert cli.ok("list", "--json") == "[]\n"
    assert [name for _, name in served(warm)] == ["list"]


def test_only_its_owner_reaches_it(cli: DevSessions, warm: Path) -> None:
    started(cli, warm)
    assert stat.S_IMODE(sock_of(warm).stat().st_mode) == 0o600
    assert stat.S_IMODE(sock_of(warm).parent.stat().st_mode) == 0o700


def test_changed_code_runs_nothing() -> None:
    # The server compares the code installed now with its own before it runs anything; a client told
    # so runs the command itself (and the server steps aside).
    import marshal

    from dev_sessions.cli.warm_server import Command

    ours, theirs = socket.socketpair()
    with contextlib.closing(ours), contextlib.closing(theirs):
        request = {
            "argv": ["msg", "send", "--to", "x", "hi"],
            "argv0": "",
            "env": {},
            "cwd": "/",
            "umask": 18,
        }
        data = marshal.dumps(request)
        socket.send_fds(ours, [len(data).to_bytes(4, "big") + data], [0, 1, 2])
        Command(theirs, "some other code", server=-1).run()
        assert ours.recv(100) == b"stale\n"


def test_quick_commands_skip_it_unless_asked() -> None:
    from dev_sessions.cli.warm import wanted

    assert wanted(["list", "--json"], {"DEV_SESSIONS_WARM": "1"})
    assert not wanted(["list", "--json"], {})
    assert not wanted(["attach", "x"], {"DEV_SESSIONS_WARM": "1"})  # takes over the terminal
    assert not wanted(["logs", "x", "-f"], {"DEV_SESSIONS_WARM": "1"})
    assert not wanted(["--help"], {"DEV_SESSIONS_WARM": "1"})
    assert ROOT.is_dir()


def test_the_client_loads_no_more_than_it_needs() -> None:
    # A warm command is the client's start and the child's work: the client imports neither typer
    # nor what only the library needs (logging's ~20 ms was a third of a warm command).
    probe = "import sys; from dev_sessions.cli import warm; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    heavy = {"typer", "click", "logging", "json", "socket", "typing", "dev_sessions.config"}
    assert heavy.isdisjoint(loaded.split())
