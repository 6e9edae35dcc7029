"""The ssh transport against a real sshd (the ``sshd`` fixture, tests/fakes/sshd.py): the remote host
is a second world on this machine, whose ``dev-sessions`` is this checkout."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from dev_sessions import __version__
from dev_sessions.config import Settings
from dev_sessions.errors import (
    DevSessionsError,
    HostUnreachable,
    NoMessage,
    RemoteFailed,
    RemoteMissing,
    SessionNotFound,
    revive,
)
from dev_sessions.messaging.messenger import MAX_BODY
from dev_sessions.remote.host import SshTransport
from dev_sessions.remote.ssh import RemoteResult, Ssh, run_many
from tests.conftest import SLOW, eventually, need, serving_sshd
from tests.fakes.sshd import ALIAS, SILENT, UNREACHABLE, Sshd

# Every byte that can appear in UTF-8 text: ASCII (NUL included), continuation bytes, and the lead
# bytes of 2, 3 and 4-byte sequences (never C0, C1 or F5 to FF).
UTF8_BYTES = set(range(0x00, 0xC0)) | set(range(0xC2, 0xF5))

HOSTILE = [
    "two words",
    " leading and trailing ",
    "it's",
    'say "hi"',
    "`touch pwned`",
    "${HOME}",
    "$HOME",
    "a; touch pwned",
    "a && b || c | d &",
    "line one\nline two\n",
    "tab\there",
    "back\\slash",
    "*",
    "~",
    "!!",
    "#not a comment",
    "> out < in",
    "{a,b}",
    "[abc]",
    "",
    "é ✓ 🎉",
    "\r\n",
    "\x1b[31mred #{pane_title}",
    "%s %n %C",
]


def remote(**env: str) -> Ssh:
    return Ssh(Settings.from_env({**os.environ, **env}), ALIAS)


def one_line(error: DevSessionsError, *needles: str) -> None:
    message = str(error)
    assert "\n" not in message and "Traceback" not in message, message
    for needle in needles:
        assert needle in message, message


def every_utf8_byte(size: int) -> bytes:
    """``size`` bytes of UTF-8 text holding every byte value UTF-8 can, and shell and tmux syntax."""
    syntax = "$(touch pwned) `id` ; | & ' \" \\ \n \r\n \t #{pane_title} ~ * ? [x] {a,b} !! %s \x00 \x1b[2J"
    points = [*range(0x00, 0x800), *range(0x800, 0x10000, 7), *range(0x10000, 0x110000, 0x800)]
    text = syntax + "".join(chr(p) for p in points if not 0xD800 <= p <= 0xDFFF)
    data = text.encode()
    assert len(data) < size
    filler = b"0123456789abcdef\n"
    data += (filler * (size // len(filler) + 1))[: size - len(data)]
    assert set(data) == UTF8_BYTES and len(data) == size
    return data


def real_home_marks() -> dict[str, object]:
    """What the test must not change in the real home: its .ssh and .dev-sessions."""
    real = Path(pwd.getpwuid(os.getuid()).pw_dir)
    marks: dict[str, object] = {}
    for name in (".ssh", ".dev-sessions"):
        path = real / name
        marks[name] = (path.stat().st_mtime_ns, sorted(os.listdir(path))) if path.exists() else None
    return marks


# -- a command over ssh ------------------------------------------------------------------------------


def host_socket(sshd: Sshd) -> Path:
    """Where the host's call server listens (its state dir, or its runtime dir when that is too deep)."""
    from dev_sessions.remote.serve import socket_path

    return socket_path(sshd.remote.state, sshd.remote.environ)


def test_the_remote_answers_with_its_version(sshd: Sshd) -> None:
    ssh = remote()
    assert ssh.check_version() == __version__
    assert len(sshd.remote.started()) == 1  # the remote world's dev-sessions, not ours
    print(f"sshd started in {sshd.started_in * 1000:.0f} ms")


def test_the_remote_login_is_its_own_world(sshd: Sshd) -> None:
    before = real_home_marks()
    world = sshd.remote
    # bash, started by sshd, reads ~/.bashrc: the remote world's, not the real one
    (world.home / ".bashrc").write_text("export DS_TEST_BASHRC=remote-world\n")
    result = remote(DEV_SESSIONS_REMOTE_BIN="env").call([])
    environ = dict(line.split("=", 1) for line in result.text.splitlines() if "=" in line)
    if Path(environ.get("SHELL", "")).name == "bash":
        assert environ["DS_TEST_BASHRC"] == "remote-world"
    assert environ["HOME"] == str(world.home)
    assert environ["DEV_SESSIONS_HOME"] == str(world.state)
    assert environ["DEV_SESSIONS_TMUX_SOCKET"] == world.tmux_socket
    assert environ["PATH"].startswith(f"{world.bin}:")
    assert "SSH_AUTH_SOCK" not in environ  # no agent forwarded, none asked
    assert Path(os.environ["DEV_SESSIONS_HOME"]) != world.state
    remote().call(["agents", "register", "someagent"])
    assert (world.state / "messages.db").exists()
    assert real_home_marks() == before


def test_a_megabyte_body_comes_back_byte_for_byte(sshd: Sshd) -> None:
    ssh = remote()
    ssh.call(["agents", "register", "someagent"])
    body = every_utf8_byte(MAX_BODY)
    sent = ssh.call(["msg", "send", "--to", "someagent", "--file", "-"], stdin=body)
    assert sent.text.strip().isdigit()
    read = ssh.call(["msg", "read", "--as", "someagent", "--json"])
    [message] = json.loads(read.stdout)
    assert message["body"].encode() == body
    assert not (sshd.remote.home / "pwned").exists()


def test_arguments_arrive_as_single_literal_arguments(sshd: Sshd) -> None:
    marker = sshd.remote.home / "pwned"
    args = [*HOSTILE, f"$(touch {marker})", f"; touch {marker}"]
    out = remote(DEV_SESSIONS_REMOTE_BIN="printf").call(["%s\\0", *args]).stdout
    assert out.decode().split("\0")[:-1] == args
    # and through the remote dev-sessions itself
    ssh = remote()
    ssh.call(["agents", "register", "someagent"])
    text = "\n".join(args) + " end"
    ssh.call(["msg", "send", "--to", "someagent", "--metadata", json.dumps({"k": text}), text])
    [message] = json.loads(ssh.call(["msg", "read", "--as", "someagent", "--json"]).stdout)
    assert (message["body"], message["metadata"]) == (text, {"k": text})
    assert not marker.exists()


def test_an_api_call_goes_over_as_json_on_stdin_and_its_error_comes_back_as_itself(sshd: Sshd) -> None:
    # `dev-sessions call`, the way a remote host's library is reached: JSON in, one JSON line out.
    ssh = remote()
    ssh.call(["agents", "register", "boss"])
    body = "line one\n$(touch pwned) `nor this` ; é☃\n"
    request = {"api": "messages", "method": "send", "args": {"to": "boss", "body": body, "sender": "me"}}
    answer = json.loads(ssh.call(["call"], stdin=json.dumps(request).encode()).stdout)
    assert (answer["result"]["body"], answer["result"]["sender"]) == (body, "me")
    request = {"api": "sessions", "method": "status", "args": {"session_id": "nope-top"}}
    error = revive(json.loads(ssh.call(["call"], stdin=json.dumps(request).encode()).stdout)["error"])
    assert isinstance(error, SessionNotFound) and error.session_id == "nope-top"
    assert not (sshd.remote.home / "pwned").exists()


def test_a_failed_remote_command_is_its_one_line_and_exit_code(sshd: Sshd) -> None:
    ssh = remote()
    result = ssh.run(["status", "nope-top"])
    assert result.exit_code == 1
    with pytest.raises(RemoteFailed) as caught:
        result.check()
    assert str(caught.value) == f"{ALIAS}: nope-top: no such session (see `dev-sessions list`)"
    with pytest.raises(RemoteFailed) as caught:
        ssh.call(["wait", "nope-top", "--timeout", "soon"])
    assert caught.value.exit_code == 2
    one_line(caught.value, f"{ALIAS}: ", "is not a duration")


# -- what goes wrong -------------------------------------------------------------------------------


def test_a_closed_port_is_host_unreachable_at_once(sshd: Sshd) -> None:
    settings = Settings.from_env({**os.environ, "DEV_SESSIONS_SSH_CONNECT_TIMEOUT": "2"})
    started = time.monotonic()
    with pytest.raises(HostUnreachable) as caught:
        Ssh(settings, UNREACHABLE).run(["--version"])
    assert time.monotonic() - started < 2 * SLOW
    one_line(caught.value, f"{UNREACHABLE}: no ssh connection (connect to host 127.0.0.1 port ")
    one_line(caught.value, "Connection refused", f"try `ssh {UNREACHABLE}` by hand", "BatchMode")


def test_a_host_that_never_answers_is_host_unreachable_after_the_connect_timeout(sshd: Sshd) -> None:
    settings = Settings.from_env({**os.environ, "DEV_SESSIONS_SSH_CONNECT_TIMEOUT": "1"})
    started = time.monotonic()
    with pytest.raises(HostUnreachable) as caught:
        Ssh(settings, SILENT).run(["--version"])
    elapsed = time.monotonic() - started
    assert 1 <= elapsed < 1 + 2 * SLOW, elapsed
    one_line(caught.value, f"{SILENT}: no ssh connection (", "timed out")


def test_a_remote_without_dev_sessions_is_remote_missing(sshd: Sshd) -> None:
    with pytest.raises(RemoteMissing) as caught:
        remote(DEV_SESSIONS_REMOTE_BIN="dev-sessions-not-here").remote_version()
    one_line(caught.value, f"{ALIAS}: dev-sessions-not-here: not found on its PATH; install dev-sessions")
    one_line(caught.value, "DEV_SESSIONS_REMOTE_BIN")


def test_run_many_answers_every_host_within_its_timeout(sshd: Sshd) -> None:
    commands = {ALIAS: ["--version"], UNREACHABLE: ["--version"], SILENT: ["--version"]}
    started = time.monotonic()
    answers = run_many(Settings.from_env(), commands, timeout=3)
    assert time.monotonic() - started < 3 + 2 * SLOW
    assert answers[ALIAS] == RemoteResult(ALIAS, 0, f"dev-sessions {__version__}\n".encode(), b"")
    assert isinstance(answers[UNREACHABLE], HostUnreachable)
    assert "Connection refused" in str(answers[UNREACHABLE])
    assert isinstance(answers[SILENT], HostUnreachable)
    assert "no answer within 3 s" in str(answers[SILENT])


# -- the shared connection ---------------------------------------------------------------------------


def test_one_connection_serves_every_command_to_a_host(sshd: Sshd) -> None:
    ssh = remote()
    started = time.monotonic()
    ssh.check_version()
    first = time.monotonic() - started
    master = ssh.master_pid()
    assert master is not None
    started = time.monotonic()
    ssh.check_version()
    second = time.monotonic() - started
    assert ssh.master_pid() == master
    assert sshd.logins() == 1
    [socket_path] = ssh.control_dir.iterdir()
    assert socket_path.name.startswith("cm-")
    info = socket_path.lstat()
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE(ssh.control_dir.lstat().st_mode) == 0o700
    assert ssh.control_dir == Path(os.environ["DEV_SESSIONS_HOME"]) / "ssh"
    print(f"first command {first * 1000:.0f} ms (log in), second {second * 1000:.0f} ms (shared)")


def test_the_shared_connection_closes_after_its_persist_time(sshd: Sshd) -> None:
    ssh = remote(DEV_SESSIONS_SSH_PERSIST="1")
    ssh.check_version()
    eventually(lambda: ssh.master_pid() is None and not list(ssh.control_dir.iterdir()), timeout=10)


def test_persist_0_leaves_no_connection_behind(sshd: Sshd) -> None:
    ssh = remote(DEV_SESSIONS_SSH_PERSIST="0")
    ssh.check_version()
    ssh.check_version()
    assert ssh.master_pid() is None
    assert sshd.logins() == 2


def test_a_killed_connection_mid_command_is_host_unreachable_and_the_next_command_reconnects(
    sshd: Sshd,
) -> None:
    ssh = remote()
    ssh.call(["agents", "register", "someagent"])
    master = ssh.master_pid()
    assert master is not None
    outcome: list[object] = []

    def blocked() -> None:
        try:
            outcome.append(ssh.run(["msg", "wait", "--as", "someagent", "--timeout", "30"]))
        except DevSessionsError as err:
            outcome.append(err)

    waiter = threading.Thread(target=blocked)
    waiter.start()
    eventually(lambda: len(sshd.remote.started()) == 2)  # the remote `msg wait` runs
    os.kill(master, signal.SIGKILL)
    waiter.join(10 * SLOW)
    assert not waiter.is_alive()
    [error] = outcome
    assert isinstance(error, HostUnreachable), error
    one_line(
        error,
        f"{ALIAS}: no ssh connection (ssh exited with 255 and said nothing: no connection, or one lost)",
    )
    # The next command goes through, and a new shared connection serves the commands after it: ssh
    # replaces the dead master's socket (when it still finds it bound, that one command goes alone
    # and the next one makes the master: two logins at most).
    assert ssh.check_version() == __version__
    eventually(lambda: ssh.check_version() == __version__ and ssh.master_pid() not in (None, master))
    assert sshd.logins() in (2, 3)


def test_the_deepest_state_dir_that_holds_a_control_socket(sshd: Sshd) -> None:
    # ssh binds <ControlPath>.<16 characters> first: 90 bytes of path is the most a socket takes.
    base = Path(tempfile.mkdtemp(prefix="ds-", dir="/tmp"))
    try:
        deepest = base / ("d" * (42 - len(str(base)) - 1))
        assert len(str(deepest)) == 42
        ssh = remote(DEV_SESSIONS_HOME=str(deepest))
        assert ssh.control_path() == f"{deepest}/ssh/cm-%C"
        assert ssh.check_version() == __version__
        assert len(str(next(ssh.control_dir.iterdir()))) == 90
        # one byte deeper: no shared connection, and the command still goes through
        deeper = remote(DEV_SESSIONS_HOME=f"{deepest}d")
        assert deeper.control_path() is None
        assert deeper.check_version() == __version__
        assert not deeper.control_dir.exists()
    finally:
        remote(DEV_SESSIONS_HOME=str(deepest)).disconnect()
        shutil.rmtree(base)


# -- nothing for commands that stay here -------------------------------------------------------------


@pytest.mark.parametrize("args", [["status", "fizz-top"], ["list"], ["msg", "read"], ["--help"]])
def test_local_commands_do_not_import_the_ssh_transport(args: list[str], tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dev_sessions", *args],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
    assert "dev_sessions.cli" in imported  # the list is read right
    assert [name for name in imported if name.startswith("dev_sessions.remote")] == []


# -- the warm path: the host's call server, through the shared connection ---------------------------


def transport(**env: str) -> SshTransport:
    return SshTransport(Settings.from_env({**os.environ, **env}), ALIAS)


def warm_up(sshd: Sshd, t: SshTransport) -> dict[str, object]:
    """The first call goes over ssh (``call``) and makes the warm path (``call --serve``); the host's
    server answers after that. Its hello."""
    before = len(sshd.remote.started())
    t.call("messages", "register", {"name": "someagent"})
    assert len(sshd.remote.started()) == before + 2, "one `call` and one `call --serve` over ssh"
    hello = t.warm.hello()
    assert hello is not None, "no warm path after the first call"
    return hello


def alive(pid: object) -> bool:
    assert isinstance(pid, int)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_calls_after_the_first_are_answered_by_the_hosts_warm_server_without_a_new_process(
    sshd: Sshd,
) -> None:
    t = transport()
    hello = warm_up(sshd, t)
    started = sshd.remote.started()
    body = "line one\n$(touch pwned) `nor this` ; é☃\n"
    sent = t.call("messages", "send", {"to": "someagent", "body": body, "sender": "me"})
    assert (sent.body, sent.sender) == (body, "me")  # type: ignore[attr-defined]
    [read] = t.call("messages", "read", {"reader": "someagent"})  # type: ignore[misc]
    assert read.body == body
    with pytest.raises(SessionNotFound) as caught:
        t.call("sessions", "status", {"session_id": "nope-top"})
    one_line(caught.value, "nope-top: no such session")
    assert t.call("sessions", "list_sessions", {}) == []
    # No dev-sessions started on the host for these: its server (the same one) answered them.
    assert sshd.remote.started() == started
    again = t.warm.hello()
    assert again is not None and (again["server"], again["code"]) == (hello["server"], hello["code"])
    assert sshd.logins() == 1
    # The host's socket: 0600 in a 0700 directory of its state dir; ours: made by ssh, the same.
    there = host_socket(sshd)
    here = t.warm.local
    for path in (there, here):
        info = path.lstat()
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600, path
        assert stat.S_IMODE(path.parent.lstat().st_mode) == 0o700, path.parent
    assert here.parent == Path(os.environ["DEV_SESSIONS_HOME"]) / "ssh"
    log = (sshd.remote.state / "serve" / "serve.log").read_text()
    assert f"pid {hello['server']} listening on {there}" in log
    assert body.strip() not in log and "pwned" not in log  # bodies never logged


def test_the_server_runs_with_the_hosts_login_environment_and_directory(sshd: Sshd) -> None:
    (sshd.remote.home / ".bashrc").write_text("export DEV_SESSIONS_AGENT=from-the-bashrc\n")
    t = transport(DEV_SESSIONS_AGENT="")
    warm_up(sshd, t)
    pid = t.warm.hello()["server"]  # type: ignore[index]
    environ = dict(
        item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item
    )
    for key, value in sshd.remote.environ.items():
        assert environ[key] == value, key
    if Path(environ.get("SHELL", "")).name == "bash":
        assert environ["DEV_SESSIONS_AGENT"] == "from-the-bashrc"
    assert os.readlink(f"/proc/{pid}/cwd") == str(sshd.remote.home)


def test_a_killed_server_is_replaced_and_the_call_still_answered(sshd: Sshd) -> None:
    t = transport()
    first = warm_up(sshd, t)["server"]
    os.kill(first, signal.SIGKILL)  # type: ignore[arg-type]
    eventually(lambda: not alive(first))
    before = len(sshd.remote.started())
    assert t.call("messages", "agents", {})  # over ssh, and the server started again
    assert len(sshd.remote.started()) == before + 2
    second = t.warm.hello()["server"]  # type: ignore[index]
    assert second != first and alive(second)
    t.call("messages", "agents", {})
    assert len(sshd.remote.started()) == before + 2


def test_a_lost_forward_or_master_falls_back_to_ssh_and_is_made_again(sshd: Sshd) -> None:
    t = transport()
    server = warm_up(sshd, t)["server"]
    # The forward cancelled: its socket is gone here.
    remote_socket = host_socket(sshd)
    cancelled = t.ssh.control("cancel", "-L", f"{t.warm.local}:{remote_socket}")
    assert cancelled.returncode == 0, cancelled.stderr
    assert t.warm.hello() is None
    before = len(sshd.remote.started())
    assert t.call("sessions", "list_sessions", {}) == []
    assert len(sshd.remote.started()) == before + 2
    assert t.warm.hello()["server"] == server  # type: ignore[index]  # the same server, forwarded again
    # The master killed: the forward's socket stays behind, and nothing listens on it.
    master = t.ssh.master_pid()
    assert master is not None
    os.kill(master, signal.SIGKILL)
    eventually(lambda: t.ssh.master_pid() is None)
    assert t.warm.local.exists() and t.warm.hello() is None
    assert t.call("sessions", "list_sessions", {}) == []
    assert len(sshd.remote.started()) == before + 4
    assert t.warm.hello()["server"] == server  # type: ignore[index]
    # One new login for the new master; two when ssh, still finding the dead master's socket, ran
    # the fallback call alone (the forward then needs the master the next command makes).
    assert sshd.logins() in (2, 3)


def test_a_change_of_the_hosts_code_replaces_its_server_before_a_call_runs_on_the_old_one(
    sshd: Sshd, tmp_path: Path
) -> None:
    # The host's dev-sessions from a copy of this checkout, which the test may change.
    code = tmp_path / "code"
    shutil.copytree(
        Path(__file__).resolve().parents[2] / "dev_sessions",
        code / "dev_sessions",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    wrapper = sshd.remote.bin / "dev-sessions-copy"
    wrapper.write_text(
        (sshd.remote.bin / "dev-sessions").read_text().replace("exec ", f"PYTHONPATH={code} exec ", 1)
    )
    wrapper.chmod(0o755)
    t = transport(DEV_SESSIONS_REMOTE_BIN="dev-sessions-copy")
    old = warm_up(sshd, t)
    # An upgrade on the host: the server must not answer with the code it has loaded.
    marker = "upgraded-" + os.urandom(4).hex()
    (code / "dev_sessions" / "remote" / "serve.py").write_text(
        (code / "dev_sessions" / "remote" / "serve.py").read_text() + f"\nPROTOCOL_NOTE = {marker!r}\n"
    )
    before = len(sshd.remote.started())
    assert t.call("messages", "agents", {})
    assert len(sshd.remote.started()) == before + 2  # the call over ssh, then a new server
    new = t.warm.hello()
    assert new is not None and new["server"] != old["server"] and new["code"] != old["code"]
    eventually(lambda: not alive(old["server"]))
    served = Path(f"/proc/{new['server']}/environ").read_text()
    assert f"PYTHONPATH={code}" in served.split("\0")


def test_a_host_that_refuses_forwarding_is_served_over_ssh_one_process_per_call(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving_sshd(isolated, monkeypatch, forwarding=False) as sshd:
        t = transport()
        t.call("messages", "register", {"name": "someagent"})
        assert len(sshd.remote.started()) == 2  # the call, and one try at the warm path
        assert t.warm.hello() is None
        assert "does the host's sshd allow forwarding?" in t.warm.off.read_text()
        assert "refused" in sshd.said() or "denied" in sshd.said()
        for n in range(3):
            assert t.call("messages", "send", {"to": "someagent", "body": f"m{n}", "sender": "me"})
        assert len(sshd.remote.started()) == 5  # one each, not two: the host is left to plain ssh
        [*_, last] = t.call("messages", "read", {"reader": "someagent"})  # type: ignore[misc]
        assert last.body == "m2"


def test_an_old_host_without_call_serve_is_left_to_plain_ssh(sshd: Sshd) -> None:
    # An older dev-sessions there: `call --serve` is a usage error (as typer says it).
    wrapper = sshd.remote.bin / "dev-sessions-old"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"echo $$ >> {sshd.remote.pids}\n"
        'if [ "$2" = --serve ]; then echo "dev-sessions: No such option: --serve" >&2; exit 2; fi\n'
        f'exec {sshd.remote.bin}/dev-sessions "$@"\n'
    )
    wrapper.chmod(0o755)
    t = transport(DEV_SESSIONS_REMOTE_BIN="dev-sessions-old")
    assert t.call("sessions", "list_sessions", {}) == []
    assert "No such option: --serve" in t.warm.off.read_text()
    before = len(sshd.remote.started())
    assert t.call("sessions", "list_sessions", {}) == []
    assert len(sshd.remote.started()) == before + 2  # the wrapper, and the dev-sessions it runs
    assert t.warm.hello() is None


def waiting_for_someagent(t: SshTransport) -> tuple[threading.Thread, list[object]]:
    """A `msg wait` for someagent (30 s) through ``t``, in a thread; its answer or error lands in the list."""
    outcome: list[object] = []

    def waiting() -> None:
        try:
            outcome.append(t.call("messages", "wait", {"reader": "someagent", "timeout": 30}, long=True))
        except DevSessionsError as err:
            outcome.append(err)

    waiter = threading.Thread(target=waiting)
    waiter.start()
    return waiter, outcome


def test_a_wait_through_the_warm_path_gets_the_same_answer_and_a_message_wakes_it(sshd: Sshd) -> None:
    t = transport()
    warm_up(sshd, t)
    started = sshd.remote.started()
    server = t.warm.hello()["server"]  # type: ignore[index]
    waiter, outcome = waiting_for_someagent(t)
    eventually(lambda: len(sshd.remote.running()) == 2)  # the server and the call it forked
    t.call("messages", "send", {"to": "someagent", "body": "wake up", "sender": "me"})
    waiter.join(20 * SLOW)
    [messages] = outcome
    assert [m.body for m in messages] == ["wake up"]  # type: ignore[attr-defined]
    with pytest.raises(NoMessage) as caught:  # and a timeout is the same error as over ssh
        t.call("messages", "wait", {"reader": "someagent", "timeout": 0.2}, long=True)
    one_line(caught.value, "someagent")
    assert sshd.remote.started() == started
    # The forked call answers before it exits: it is gone soon after, and nothing else is left.
    eventually(lambda: sshd.remote.running() == [server])


WAITER = """
import os, sys
from dev_sessions.config import Settings
from dev_sessions.remote.host import SshTransport
t = SshTransport(Settings.from_env(), sys.argv[1])
print("waiting", flush=True)
t.call("messages", "wait", {"reader": "someagent"}, long=True)
"""


def test_a_local_wait_stopped_by_ctrl_c_leaves_nothing_running_on_the_host(sshd: Sshd) -> None:
    t = transport()
    warm_up(sshd, t)
    server = t.warm.hello()["server"]  # type: ignore[index]
    waiter = subprocess.Popen(
        [sys.executable, "-c", WAITER, ALIAS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert waiter.stdout is not None and waiter.stdout.readline() == "waiting\n"
        eventually(lambda: len(sshd.remote.running()) == 2)  # its call runs on the host (no timeout)
        [call] = [pid for pid in sshd.remote.running() if pid != server]
        waiter.send_signal(signal.SIGINT)
        assert waiter.wait(10 * SLOW) != 0
        assert "KeyboardInterrupt" in waiter.stderr.read()  # type: ignore[union-attr]
    finally:
        waiter.kill()
    eventually(lambda: not alive(call))
    assert sshd.remote.running() == [server]
    # and the server still answers (a message sent now is not taken by a wait that is gone)
    t.call("messages", "send", {"to": "someagent", "body": "later", "sender": "me"})
    [later] = t.call("messages", "read", {"reader": "someagent"})  # type: ignore[misc]
    assert later.body == "later"


def test_a_lost_connection_during_a_warm_call_is_host_unreachable_and_not_made_again(sshd: Sshd) -> None:
    t = transport()
    warm_up(sshd, t)
    started = len(sshd.remote.started())
    waiter, outcome = waiting_for_someagent(t)
    eventually(lambda: len(sshd.remote.running()) == 2)
    master = t.ssh.master_pid()
    assert master is not None
    os.kill(master, signal.SIGKILL)
    waiter.join(10 * SLOW)
    assert not waiter.is_alive()
    [error] = outcome
    assert isinstance(error, HostUnreachable), error
    one_line(error, f"{ALIAS}: no ssh connection (the connection was lost during the call")
    assert len(sshd.remote.started()) == started  # not made again over ssh


def test_the_server_lingers_then_exits_and_the_next_call_starts_it_again(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving_sshd(isolated, monkeypatch, extra=lambda home: {"DEV_SESSIONS_SERVE_LINGER": "1"}) as sshd:
        t = transport()
        first = warm_up(sshd, t)["server"]
        eventually(lambda: not alive(first), timeout=10 * SLOW)
        assert not host_socket(sshd).exists()
        assert t.call("messages", "agents", {})
        assert t.warm.hello()["server"] != first  # type: ignore[index]


PEER = """
import os, socket, sys
os.setgid(65534)
os.setuid(65534)
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    sock.connect(sys.argv[1])
except PermissionError:
    print("refused by the file system")
    sys.exit(0)
sock.settimeout(20)
print(repr(sock.recv(100)))
"""


def test_the_servers_socket_refuses_another_user(sshd: Sshd) -> None:
    if os.geteuid() != 0:
        need("a client of another uid needs root to start")
    t = transport()
    warm_up(sshd, t)
    path = host_socket(sshd)
    assert stat.S_IMODE(path.parent.lstat().st_mode) == 0o700
    # The socket itself, reached through a link in a directory the peer may enter (the test's own
    # directories are closed to it): its 0600 refuses first.
    open_dir = Path(tempfile.mkdtemp(prefix="ds-peer-", dir="/tmp"))
    try:
        open_dir.chmod(0o711)
        os.link(path, open_dir / "call.sock")

        def peer() -> str:
            argv = [sys.executable, "-c", PEER, str(open_dir / "call.sock")]
            return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout

        assert peer() == "refused by the file system\n"
        # Opened up: the server's own check refuses it, before a word.
        path.chmod(0o666)
        assert peer() == "b''\n"
    finally:
        shutil.rmtree(open_dir)
    assert "refused a connection from uid 65534" in (sshd.remote.state / "serve" / "serve.log").read_text()
    assert t.call("sessions", "list_sessions", {}) == []  # its owner still served
