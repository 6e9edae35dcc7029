"""The warm command server (issue 17, on unless ``DEV_SESSIONS_WARM=0``): a quick command answered by a
child of a warm process is what it would be without it (output, errors, exit code, stdin, directory,
environment, signals), only the owner reaches it, and with no server, a dead one or one that cannot
listen every command still works."""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dev_sessions.cli import warm as warm_client
from dev_sessions.cli.warm_server import running, stop
from dev_sessions.peers import peer_pid
from tests.conftest import ROOT, DevSessions, Result, eventually


@pytest.fixture
def warm(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A state dir with a short path (its socket in it: a Unix socket's path is at most ~100 bytes),
    the warm server on; the server stopped at the end."""
    home = Path(tempfile.mkdtemp(prefix="dsw", dir="/tmp"))
    monkeypatch.setenv("DEV_SESSIONS_HOME", str(home))
    monkeypatch.setenv("DEV_SESSIONS_WARM", "1")
    try:
        yield home
    finally:
        stop(home)
        assert running(home) == []
        shutil.rmtree(home, ignore_errors=True)


def sock_of(home: Path) -> Path:
    return Path(
        warm_client.socket_path(str(home), os.environ, warm_client.key(warm_client.identity(str(home))))
    )


def server_pid(home: Path) -> int | None:
    """The listening server's pid (its peer credentials), or None when none answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(sock_of(home)))
        except OSError:
            return None
        return peer_pid(probe)


def served(home: Path) -> list[tuple[int, str]]:
    """The commands the server's children ran: (pid, the command's name)."""
    log = home / "serve" / "cli.log"
    text = log.read_text() if log.exists() else ""
    return [(int(m[1]), m[2]) for m in re.finditer(r"pid (\d+) runs a (\S+) command", text)]


def cold(cli: DevSessions, *args: str, stdin: str | None = None) -> Result:
    env = {**os.environ, "DEV_SESSIONS_WARM": "0"}
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
    with _warm_wait(cli, warm, "--timeout", "120") as (waiter, child):
        waiter.send_signal(signal.SIGINT)
        out, err = waiter.communicate(timeout=30)
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


def _answer(request_identity: str, server_identity: str, code: str) -> bytes:
    """What a server's child answers a request (a ``msg send``) before it runs anything."""
    import marshal

    from dev_sessions.cli.warm_server import Command

    ours, theirs = socket.socketpair()
    before = Command.identity
    with contextlib.closing(ours), contextlib.closing(theirs):
        request = {
            "argv": ["msg", "send", "--to", "x", "hi"],
            "argv0": "",
            "env": {},
            "cwd": "/",
            "umask": 18,
            "identity": request_identity,
        }
        data = marshal.dumps(request)
        ours.sendall(len(data).to_bytes(4, "big") + data)
        Command.identity = server_identity
        try:
            Command(theirs, code, server=-1).run()
        finally:
            Command.identity = before
        return ours.recv(100)


def test_changed_code_runs_nothing() -> None:
    # The server compares the code installed now with its own before it runs anything; a client told
    # so runs the command itself (and the server steps aside).
    assert _answer("", "", "some other code") == b"stale\n"


def test_quick_commands_go_to_it_unless_turned_off() -> None:
    from dev_sessions.cli.warm import wanted

    assert wanted(["list", "--json"], {"DEV_SESSIONS_WARM": "1"})
    assert wanted(["list", "--json"], {})  # on by default
    for off in ("0", "off", "No", "false "):
        assert not wanted(["list", "--json"], {"DEV_SESSIONS_WARM": off})
    assert not wanted(["attach", "x"], {"DEV_SESSIONS_WARM": "1"})  # takes over the terminal
    assert not wanted(["create", "--agent", "codex"], {})  # what it starts is the caller's
    assert wanted(["logs", "x", "-f"], {}) and wanted(["wait", "x"], {})
    assert not wanted(["--help"], {"DEV_SESSIONS_WARM": "1"})
    assert ROOT.is_dir()


def test_the_client_loads_no_more_than_it_needs() -> None:
    # A warm command is the client's start and the child's work: the client imports neither typer
    # nor what only the library needs (logging's ~20 ms was a third of a warm command).
    probe = "import sys; from dev_sessions.cli import warm; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    heavy = {"typer", "click", "logging", "json", "socket", "typing", "dev_sessions.config"}
    assert heavy.isdisjoint(loaded.split())


def test_a_state_dir_too_long_for_a_socket_is_served_from_the_runtime_dir(
    cli: DevSessions, warm_commands: None, isolated: Path
) -> None:
    # The tests' own state dirs are such: the socket goes to $XDG_RUNTIME_DIR/dev-sessions-<uid>/ or,
    # when that is long too, /tmp/dev-sessions-<uid>/ (checked to be ours), the lock stays at home.
    home = Path(os.environ["DEV_SESSIONS_HOME"])
    assert len(str(home / "serve" / "cli-0123456789abcdef.sock")) >= 100
    assert not home.exists()
    cli.ok("agents", "register", "bob")  # the first command, on no state dir yet, starts it
    eventually(lambda: server_pid(home) is not None, timeout=30)
    path = sock_of(home)
    assert not path.is_relative_to(home)
    assert path.parent.name == f"dev-sessions-{os.getuid()}"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(cli.ok("agents", "--json"))[0]["name"] == "bob"
    assert [name for _, name in served(home)] == ["agents"]
    (pid,) = running(home)
    assert server_pid(home) == pid


def test_a_server_that_cannot_listen_leaves_the_commands_cold_and_is_not_started_again(
    cli: DevSessions, warm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long state dir, whose socket would go to a runtime dir that someone else holds: a file where
    # our directory would be. The server says why in its log and marks it; for a while no command
    # starts another (each would load everything for nothing), and every command still works.
    home = warm / ("x" * 90)
    monkeypatch.setenv("DEV_SESSIONS_HOME", str(home))
    runtime = Path(tempfile.mkdtemp(prefix="dsr", dir="/tmp"))
    try:
        (runtime / f"dev-sessions-{os.getuid()}").write_text("squatted")
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
        cli.ok("agents", "register", "bob")  # starts the server, which fails
        assert cli.ok("list", "--json") == "[]\n"
        failed = eventually(lambda: list((home / "serve").glob("cli-*.failed")), timeout=30)
        assert isinstance(failed, list) and len(failed) == 1
        eventually(lambda: running(home) == [], timeout=30)
        assert "could not start: UnsafePath" in (home / "serve" / "cli.log").read_text()
        stamp = failed[0].stat().st_mtime_ns
        for _ in range(3):
            assert cli.ok("list", "--json") == "[]\n"
        assert running(home) == [] and failed[0].stat().st_mtime_ns == stamp  # none started again
        assert served(home) == []
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def test_another_installs_command_is_not_run() -> None:
    # Two installs sharing a state dir each have their own server (their sockets are named after the
    # install); a request of another install that reaches one anyway is not run, and the client runs it.
    from dev_sessions.cli.warm_server import stamp

    theirs = "/elsewhere\0/other/site-packages\0/other/python"
    ours = "/home/me/.dev-sessions\0/site-packages\0/usr/bin/python3"
    assert _answer(theirs, ours, stamp()) == b"other\n"
    # A container that sees the state directory (a mounted home) is not this machine: its pids and
    # paths are its own.
    ident = warm_client.identity("/tmp").split("\0")
    assert ident[-2:] == [os.readlink("/proc/self/ns/mnt"), os.readlink("/proc/self/ns/pid")]


def test_a_caller_killed_outright_takes_its_command_with_it(cli: DevSessions, warm: Path) -> None:
    # SIGKILL cannot be forwarded; the child sees the caller's end of the socket close and ends, as the
    # command would have died with it without the warm process.
    started(cli, warm)
    with _warm_wait(cli, warm, "--timeout", "120") as (waiter, child):
        assert Path(f"/proc/{child}").exists()
        waiter.kill()
        waiter.wait(10)
    eventually(lambda: not Path(f"/proc/{child}").exists(), timeout=10)
    assert server_pid(warm) is not None  # the server itself serves on


@contextlib.contextmanager
def _warm_wait(
    cli: DevSessions, warm: Path, *extra: str, **popen: object
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A warm ``msg wait`` running, and the pid of the server's child that runs it; the waiter killed at
    the end if it still runs."""
    waiter = subprocess.Popen(  # type: ignore[call-overload]
        [sys.executable, "-m", "dev_sessions", "msg", "wait", "--as", "bob", *extra],
        cwd=cli.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen,
    )  # fmt: skip
    try:
        found = eventually(lambda: served(warm), timeout=30)
        assert isinstance(found, list)
        ((child, name),) = found
        assert name == "msg"
        eventually(lambda: _state(child) in "SR", timeout=10)
        yield waiter, child
    finally:
        if waiter.poll() is None:
            waiter.kill()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_signal_that_kills_the_command_kills_its_caller_too(cli: DevSessions, warm: Path) -> None:
    # Without the warm process, SIGTERM ends a msg wait by the signal (a shell sees 143); so it does
    # with it: the command dies of the forwarded signal, and the caller of the same one.
    started(cli, warm)
    with _warm_wait(cli, warm, "--timeout", "120") as (waiter, child):
        waiter.send_signal(signal.SIGTERM)
        out, err = waiter.communicate(timeout=30)
    assert (waiter.returncode, out, err) == (-signal.SIGTERM, "", "")
    eventually(lambda: _state(child) == "gone", timeout=10)


def test_what_the_caller_ignores_does_not_reach_the_command(cli: DevSessions, warm: Path) -> None:
    # nohup, or a script's `cmd &`: SIGINT ignored; the command is not interrupted, as it would not be.
    started(cli, warm)

    def ignore_interrupts() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    with _warm_wait(cli, warm, "--timeout", "3", preexec_fn=ignore_interrupts) as (waiter, child):
        waiter.send_signal(signal.SIGINT)
        ignores = int(Path(f"/proc/{child}/status").read_text().split("SigIgn:")[1].split()[0], 16)
        assert ignores & (1 << (signal.SIGINT - 1))  # and what it starts inherits that
        out, err = waiter.communicate(timeout=30)
    assert (waiter.returncode, out, err) == (124, "", "dev-sessions: bob: no message within 3 s\n")


def test_ctrl_z_stops_the_command_with_its_caller(cli: DevSessions, warm: Path) -> None:
    # As a shell's job: a process group of its own in the test's session (a Ctrl-Z sent to an orphaned
    # group, as a new session's would be, is discarded by the kernel, with or without the warm process).
    started(cli, warm)
    with _warm_wait(cli, warm, "--timeout", "120", process_group=0) as (waiter, child):
        waiter.send_signal(signal.SIGTSTP)
        eventually(lambda: _state(waiter.pid) == "T" and _state(child) == "T", timeout=10)
        waiter.send_signal(signal.SIGCONT)
        eventually(lambda: _state(waiter.pid) in "SR" and _state(child) in "SR", timeout=10)
        cli.ok("msg", "send", "--from", "alice", "--to", "bob", "go on")
        out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    assert "go on" in out


def test_a_ctrl_z_the_caller_cannot_take_leaves_the_command_running(cli: DevSessions, warm: Path) -> None:
    # A caller in an orphaned process group (no shell to resume it: a new session's) is not stopped by
    # SIGTSTP; nor is its command, which would otherwise be left stopped for good.
    started(cli, warm)
    with _warm_wait(cli, warm, "--timeout", "120", start_new_session=True) as (waiter, child):
        waiter.send_signal(signal.SIGTSTP)
        cli.ok("msg", "send", "--from", "alice", "--to", "bob", "still here")
        out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    assert "still here" in out
    assert _state(child) == "gone"


def test_doctor_says_whether_it_runs(cli: DevSessions, warm: Path) -> None:
    def said() -> dict[str, str]:
        checks = json.loads(cli("doctor", "--json").stdout)  # not a quick command: never warm
        (check,) = [c for c in checks if c["check"] == "warm commands"]
        return {"level": check["level"], "message": check["message"]}

    assert said() == {"level": "ok", "message": "not running (the next quick command starts it)"}
    started(cli, warm)
    (pid,) = running(warm)
    assert said() == {"level": "ok", "message": f"pid {pid} on {sock_of(warm)}"}
    stop(warm)
    (warm / "serve" / f"cli-{warm_client.key(warm_client.identity(str(warm)))}.failed").touch()
    found = said()
    assert found["level"] == "warn" and "could not start" in found["message"], found


def _proc_limit(pid: int, name: str) -> tuple[str, str]:
    """The soft and hard limit ``name`` ("Max open files") of a process, as ``/proc/PID/limits`` says."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith(name):
            soft, hard = line[len(name) :].split()[:2]
            return soft, hard
    raise AssertionError(f"no {name} in /proc/{pid}/limits")


def _lower_limits(files: int) -> Callable[[], None]:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(files, 256), files))

    return lower


def test_the_command_takes_its_callers_nice_value_and_limits(cli: DevSessions, warm: Path) -> None:
    # `nice dev-sessions msg wait`, or a `ulimit -n` in the caller's shell: the command runs with them,
    # as it would without the warm process (the server's own are another caller's).
    started(cli, warm)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lower = _lower_limits(hard - 1)

    def niced_and_limited() -> None:
        os.nice(3)
        lower()

    with _warm_wait(cli, warm, "--timeout", "120", preexec_fn=niced_and_limited) as (waiter, child):
        assert os.getpriority(os.PRIO_PROCESS, child) == os.getpriority(os.PRIO_PROCESS, waiter.pid)
        assert os.getpriority(os.PRIO_PROCESS, child) == os.getpriority(os.PRIO_PROCESS, 0) + 3
        assert _proc_limit(child, "Max open files") == _proc_limit(waiter.pid, "Max open files")
        assert _proc_limit(child, "Max open files") == ("256", str(hard - 1))
        server = server_pid(warm)
        assert server is not None and _proc_limit(server, "Max open files")[1] == str(hard)


def test_a_caller_with_limits_above_the_servers_runs_its_command_itself(cli: DevSessions, warm: Path) -> None:
    # A server started by a caller under a lower limit cannot raise it for another: that one's command
    # runs in its caller, with all it would have had. A caller under the same limit is served.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lower = _lower_limits(hard - 1)
    first = _run_with(cli, "agents", "register", "bob", preexec_fn=lower)
    assert first.returncode == 0, first
    eventually(lambda: server_pid(warm) is not None, timeout=30)
    assert _run_with(cli, "list", "--json") == Result(0, "[]\n", "")
    assert served(warm) == []
    assert "limits above this server's: not run here" in (warm / "serve" / "cli.log").read_text()
    assert _run_with(cli, "list", "--json", preexec_fn=lower) == Result(0, "[]\n", "")
    assert [name for _, name in served(warm)] == ["list"]


def test_a_caller_killed_while_its_command_is_stopped_takes_it_along(cli: DevSessions, warm: Path) -> None:
    # Ctrl-Z stops the child too, and a stopped child cannot see its caller go: the server, which
    # holds each caller's connection, sees it hang up and ends the child.
    started(cli, warm)
    with _warm_wait(cli, warm, "--timeout", "120", process_group=0) as (waiter, child):
        waiter.send_signal(signal.SIGTSTP)
        eventually(lambda: _state(child) == "T", timeout=10)
        waiter.kill()
        waiter.wait(10)
    eventually(lambda: _state(child) == "gone", timeout=10)
    assert server_pid(warm) is not None


def _run_with(cli: DevSessions, *args: str, cwd: Path | None = None, **popen: object) -> Result:
    proc = subprocess.run(  # type: ignore[call-overload]
        [sys.executable, "-m", "dev_sessions", *args],
        cwd=cwd or cli.cwd, capture_output=True, timeout=60, check=False, **popen,
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def test_a_closed_stdin_or_a_removed_directory_runs_the_command_here(cli: DevSessions, warm: Path) -> None:
    # A closed stdin would give the socket fd 0, which the child would then read as its stdin; a
    # directory removed cannot be sent. Both run as they would without the warm process.
    started(cli, warm)
    closed = _run_with(cli, "list", "--json", stdin=None, preexec_fn=lambda: os.close(0))
    assert (closed.returncode, closed.stdout) == (0, "[]\n"), closed
    gone = cli.cwd / "gone"
    gone.mkdir()
    removed = subprocess.run(
        ["sh", "-c", 'cd "$1" && rmdir "$1" && exec "$0" -m dev_sessions list --json', sys.executable, gone],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert removed.returncode == 0 and removed.stdout == "[]\n", removed
    assert served(warm) == []  # neither went to the server


def test_a_server_that_does_not_answer_leaves_the_command_to_its_caller_once(
    cli: DevSessions, warm: Path
) -> None:
    # A stopped (or swamped) server: the caller waits 10 s for its child, then runs the command
    # itself; the child, once it comes, sees its caller gone and runs nothing.
    started(cli, warm)
    pid = server_pid(warm)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        result = cli("msg", "send", "--from", "alice", "--to", "bob", "once")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert result.returncode == 0, result
    eventually(lambda: json.loads(cli.ok("msg", "read", "--as", "bob", "--json")) != [], timeout=10)
    import time

    time.sleep(1)  # the late child has had its chance to run it a second time
    bodies = [m["body"] for m in json.loads(cold(cli, "msg", "feed", "--as", "bob", "--json").stdout)]
    assert bodies.count("once") == 1, bodies


def test_the_callers_encoding_is_the_commands(
    cli: DevSessions, warm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started(cli, warm)
    cli.ok("msg", "send", "--from", "alice", "--to", "bob", "café ünï")

    def read(warm_or_not: str) -> bytes:
        env = {**os.environ, "PYTHONIOENCODING": "latin-1", "DEV_SESSIONS_WARM": warm_or_not}
        argv = [sys.executable, "-m", "dev_sessions", "msg", "read", "--as", "bob"]
        return subprocess.run(argv, env=env, cwd=cli.cwd, capture_output=True, check=True).stdout

    hot, was = read("1"), read("0")
    assert hot == was and "café ünï".encode("latin-1") in hot, (hot, was)
    assert [name for _, name in served(warm)][-1] == "msg"
