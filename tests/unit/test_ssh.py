"""The ssh transport without a network: its command line, its quoting, its settings, and what each exit
means, with a stand-in ``ssh`` on PATH that runs the remote command here (tests/integration/test_ssh.py
does the same against a real sshd)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dev_sessions.config import Settings
from dev_sessions.errors import (
    HostUnreachable,
    RemoteFailed,
    RemoteIncompatible,
    RemoteMissing,
    ToolMissing,
    UnsafePath,
    UsageError,
    revive,
)
from dev_sessions.remote.ssh import RemoteResult, Ssh, check_target, compatible, remote_command, run_many
from dev_sessions.remote.warm import WarmPath

HOSTILE = [
    "two words",
    " leading and trailing ",
    "it's",
    'say "hi"',
    "$(touch pwned)",
    "`touch pwned`",
    "${HOME}",
    "$HOME",
    "a; touch pwned",
    "a && b || c | d",
    "line one\nline two\n",
    "tab\there",
    "back\\slash",
    "*",
    "~",
    "~root",
    "!!",
    "#not a comment",
    "> out < in",
    "{a,b}",
    "[abc]",
    "",
    "é ✓ 🎉",
    "\r\n",
    "\x1b[31mred",
    "-x",
    "--",
    "%s %n %C",
]

# A stand-in for ssh: runs the remote command with sh here; host "down" fails as ssh does (255),
# host "silent" never answers. Its argv is recorded, one argument a line.
FAKE_SSH = """#!/bin/sh
printf '%s\\n' "$@" > "$FAKE_SSH_RECORD"
while [ $# -gt 0 ]; do
  case $1 in
    -o|-F|-O) shift 2 ;;
    -T) shift ;;
    --) shift; break ;;
    *) target=$1; shift ;;
  esac
done
case $target in
  down) echo "ssh: connect to host down port 22: Connection refused" >&2; exit 255 ;;
  silent) exec sleep 60 ;;
esac
exec sh -c "$1"
"""


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"HOME": str(tmp_path / "home"), "DEV_SESSIONS_HOME": "/s/state", **env})


@pytest.fixture
def short_home() -> Iterator[Path]:
    """A state dir short enough to hold a control socket (a test's tmp_path is too deep)."""
    home = Path(tempfile.mkdtemp(prefix="ds-", dir="/tmp"))
    yield home
    shutil.rmtree(home)


@pytest.fixture
def fake_ssh(tmp_path: Path, short_home: Path) -> Settings:
    """Settings whose PATH finds the stand-in ssh first, and stand-in remote binaries."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "ssh": FAKE_SSH,
        "ds-version": "#!/bin/sh\necho dev-sessions ${FAKE_VERSION:-0.1.0}\n",
        "ds-fails": "#!/bin/sh\necho 'some noise' >&2\necho 'dev-sessions: fizz-top: no such session' >&2\n"
        "exit ${FAKE_EXIT:-1}\n",
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return Settings.from_env(
        {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "DEV_SESSIONS_HOME": str(short_home / "state"),
            "FAKE_SSH_RECORD": str(tmp_path / "ssh-argv"),
        }
    )


def with_env(base: Settings, **env: str) -> Settings:
    return Settings.from_env({**base.environ, **env})


# -- the target --------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["box", "me@box.example.org", "ssh://me@box:2222", "10.0.0.1", "[::1]"])
def test_a_host_ssh_reads_as_a_destination_is_taken(target: str) -> None:
    assert check_target(target) == target


@pytest.mark.parametrize(
    "target", ["", "-oProxyCommand=touch pwned", "-V", "two words", "box\n", "box\t", "box\x1b", "b\u2028x"]
)
def test_a_host_ssh_could_read_as_an_option_is_refused_in_one_line(target: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        Ssh(settings(tmp_path), target)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2
    assert "not a host for ssh" in str(caught.value)


# -- the remote command ------------------------------------------------------------------------------


@given(st.lists(st.text(alphabet=st.characters(exclude_characters="\0"))))
def test_every_argument_is_one_literal_word_for_a_posix_shell(args: list[str]) -> None:
    assert shlex.split(remote_command("dev-sessions", args)) == ["dev-sessions", *args]


def test_every_argument_arrives_literally_through_sh(tmp_path: Path) -> None:
    here = tmp_path / "cwd"
    here.mkdir()
    command = remote_command("printf", ["%s\\0", *HOSTILE])
    out = subprocess.run(["sh", "-c", command], capture_output=True, cwd=here, check=True).stdout
    assert out.decode().split("\0")[:-1] == HOSTILE
    assert list(here.iterdir()) == []  # nothing ran, nothing was written


def test_a_remote_binary_under_the_home_is_left_for_the_remote_shell_to_expand() -> None:
    assert remote_command("~/.local/bin/dev-sessions", ["list"]) == "~/.local/bin/dev-sessions list"
    assert remote_command("~/my bin/ds", []) == "~/'my bin/ds'"
    assert remote_command("/opt/ds bin/dev-sessions", []) == "'/opt/ds bin/dev-sessions'"
    assert remote_command("~", []) == "'~'"


def test_a_nul_cannot_be_an_argument(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="NUL"):
        remote_command("dev-sessions", ["a\0b"])


# -- the ssh command line ----------------------------------------------------------------------------


class Case(NamedTuple):
    test_id: str
    env: dict[str, str]
    expected: list[str]


CASES = [
    Case(
        "defaults",
        {},
        ["-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
         "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3",
         "-o", "ControlMaster=auto", "-o", "ControlPersist=300s", "-o", "ControlPath=/s/state/ssh/cm-%C"],
    ),
    Case(
        "every knob",
        {"DEV_SESSIONS_SSH_CONFIG": "/etc/test ssh/config", "DEV_SESSIONS_SSH_CONNECT_TIMEOUT": "2.5",
         "DEV_SESSIONS_SSH_PERSIST": "60"},
        ["-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=3",
         "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3",
         "-o", "ControlMaster=auto", "-o", "ControlPersist=60s", "-o", "ControlPath=/s/state/ssh/cm-%C",
         "-F", "/etc/test ssh/config"],
    ),
    Case(
        "no persisting master",
        {"DEV_SESSIONS_SSH_PERSIST": "0", "DEV_SESSIONS_SSH_CONNECT_TIMEOUT": "0.2"},
        ["-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=1",
         "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3",
         "-o", "ControlMaster=auto", "-o", "ControlPersist=no", "-o", "ControlPath=/s/state/ssh/cm-%C"],
    ),
    Case(
        "a state dir too deep for a socket",
        {"DEV_SESSIONS_HOME": "/" + "d" * 60},
        ["-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
         "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3",
         "-o", "ControlMaster=no", "-o", "ControlPath=none"],
    ),
    Case(
        "a state dir ssh would split or expand",
        {"DEV_SESSIONS_HOME": "/s/my state%h"},
        ["-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
         "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3",
         "-o", "ControlMaster=no", "-o", "ControlPath=none"],
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.test_id for c in CASES])
def test_the_ssh_command_line(case: Case, tmp_path: Path) -> None:
    ssh = Ssh(settings(tmp_path, **case.env), "me@box")
    assert ssh.command_line(["msg", "send", "--to", "a b"]) == [
        "ssh", *case.expected, "me@box", "--", "dev-sessions msg send --to 'a b'",
    ]  # fmt: skip


def test_the_longest_state_dir_that_holds_a_control_socket(tmp_path: Path) -> None:
    # ssh binds <ControlPath>.<16 random characters>, which must fit in 107 bytes.
    fits = "/" + "d" * 41  # + "/ssh" + "/cm-" + 40 hex = 90 bytes
    assert Ssh(settings(tmp_path, DEV_SESSIONS_HOME=fits), "box").control_path() is not None
    assert Ssh(settings(tmp_path, DEV_SESSIONS_HOME=fits + "d"), "box").control_path() is None


def test_settings_defaults(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert (s.ssh_config, s.ssh_connect_timeout, s.ssh_persist, s.remote_bin) == (
        None, 5.0, 300.0, "dev-sessions",
    )  # fmt: skip
    s = settings(tmp_path, DEV_SESSIONS_SSH_CONFIG="~/cfg", DEV_SESSIONS_REMOTE_BIN="~/bin/ds")
    assert s.ssh_config == Path(os.environ["HOME"]) / "cfg"
    assert Ssh(s, "box").command_line(["list"])[-1] == "~/bin/ds list"


# -- what an exit means (a stand-in ssh) -------------------------------------------------------------


def test_output_and_exit_code_come_back_as_sent(fake_ssh: Settings) -> None:
    body = bytes(range(256)) * 4096
    result = Ssh(with_env(fake_ssh, DEV_SESSIONS_REMOTE_BIN="cat"), "box").run([], stdin=body)
    assert result == RemoteResult("box", 0, body, b"")


def test_without_a_body_ssh_reads_nothing_of_ours(fake_ssh: Settings) -> None:
    # stdin is /dev/null, never the caller's terminal or pipe
    result = Ssh(with_env(fake_ssh, DEV_SESSIONS_REMOTE_BIN="cat"), "box").run([])
    assert result.stdout == b""


def test_the_control_dir_is_made_private(fake_ssh: Settings) -> None:
    ssh = Ssh(with_env(fake_ssh, DEV_SESSIONS_REMOTE_BIN="true"), "box")
    assert ssh.control_path() == f"{ssh.control_dir}/cm-%C"
    ssh.run([])
    assert (ssh.control_dir.stat().st_mode & 0o777) == 0o700
    assert (ssh.control_dir.parent.stat().st_mode & 0o777) == 0o700


def test_a_link_for_the_control_dir_is_refused_before_ssh_runs(
    fake_ssh: Settings, short_home: Path, tmp_path: Path
) -> None:
    home = short_home / "state"
    home.mkdir(mode=0o700)
    (home / "ssh").symlink_to(tmp_path)
    with pytest.raises(UnsafePath, match="ssh: is a symbolic link"):
        Ssh(fake_ssh, "box").run(["list"])
    assert not (tmp_path / "ssh-argv").exists()


def test_a_control_dir_open_to_others_is_refused(fake_ssh: Settings, short_home: Path) -> None:
    (short_home / "state" / "ssh").mkdir(mode=0o755, parents=True)
    (short_home / "state" / "ssh").chmod(0o755)
    with pytest.raises(UnsafePath, match="is open to others"):
        Ssh(fake_ssh, "box").run(["list"])


def test_ssh_failing_is_host_unreachable_in_one_line(fake_ssh: Settings) -> None:
    with pytest.raises(HostUnreachable) as caught:
        Ssh(fake_ssh, "down").run(["list"])
    message = str(caught.value)
    assert message == (
        "down: no ssh connection (connect to host down port 22: Connection refused); check the host "
        "name and try `ssh down` by hand: it must log in without a prompt (a key, or your ssh agent; "
        "dev-sessions runs ssh in BatchMode)"
    )
    assert caught.value.exit_code == 1
    assert isinstance(caught.value, ConnectionError)


def test_no_answer_within_the_timeout_is_host_unreachable(fake_ssh: Settings) -> None:
    started = time.monotonic()
    with pytest.raises(HostUnreachable, match=r"silent: no ssh connection \(no answer within 0.5 s\)"):
        Ssh(fake_ssh, "silent").run(["list"], timeout=0.5)
    assert time.monotonic() - started < 5


def test_a_remote_without_the_binary_is_remote_missing(fake_ssh: Settings) -> None:
    ssh = Ssh(with_env(fake_ssh, DEV_SESSIONS_REMOTE_BIN="no-such-dev-sessions"), "box")
    with pytest.raises(RemoteMissing) as caught:
        ssh.run(["list"])
    assert str(caught.value).startswith("box: no-such-dev-sessions: not found on its PATH; install")
    assert "\n" not in str(caught.value)


def test_a_failed_remote_command_keeps_its_line_and_exit_code(fake_ssh: Settings) -> None:
    ssh = Ssh(with_env(fake_ssh, DEV_SESSIONS_REMOTE_BIN="ds-fails", FAKE_EXIT="124"), "box")
    result = ssh.run(["wait", "fizz-top"])
    assert (result.exit_code, result.stdout) == (124, b"")
    assert result.error_line() == "fizz-top: no such session"
    with pytest.raises(RemoteFailed) as caught:
        ssh.call(["wait", "fizz-top"])
    assert str(caught.value) == "box: fizz-top: no such session"
    assert caught.value.exit_code == 124


def test_a_remote_failure_crosses_a_process_boundary_as_itself() -> None:
    error = RemoteFailed(host="box", message="fizz-top: no such session", exit_code=1)
    revived = revive(error.to_wire())
    assert (type(revived), str(revived), revived.exit_code) == (RemoteFailed, str(error), 1)


def test_the_remote_version_is_read_and_checked(fake_ssh: Settings) -> None:
    ssh = Ssh(with_env(fake_ssh, DEV_SESSIONS_REMOTE_BIN="ds-version"), "box")
    assert ssh.remote_version() == "0.1.0"
    assert ssh.check_version() == "0.1.0"
    assert Path(fake_ssh.environ["FAKE_SSH_RECORD"]).read_text().splitlines()[-1] == "ds-version --version"


@pytest.mark.parametrize("version", ["1.0.0", "0.0.9", "2.3.4.dev1"])
def test_an_incompatible_remote_is_refused_naming_its_version(fake_ssh: Settings, version: str) -> None:
    ssh = Ssh(with_env(fake_ssh, DEV_SESSIONS_REMOTE_BIN="ds-version", FAKE_VERSION=version), "box")
    assert ssh.remote_version() == version
    with pytest.raises(RemoteIncompatible) as caught:
        ssh.check_version()
    assert str(caught.value) == (
        f"box: its dev-sessions is {version!r}, this one needs 0.1.0 or newer, before 1.0.0; upgrade it there"
    )


def test_a_remote_that_answers_no_version_is_incompatible(fake_ssh: Settings) -> None:
    ssh = Ssh(with_env(fake_ssh, DEV_SESSIONS_REMOTE_BIN="echo"), "box")
    with pytest.raises(RemoteIncompatible, match="box: its dev-sessions is '--version'"):
        ssh.remote_version()


def test_compatible_versions() -> None:
    assert compatible("0.1.0") and compatible("0.9.3") and compatible("0.1.0rc1")
    assert not compatible("0.0.9") and not compatible("1.0.0") and not compatible("junk")


def test_no_ssh_here_is_tool_missing(tmp_path: Path) -> None:
    ssh = Ssh(settings(tmp_path, PATH=str(tmp_path)), "box")
    with pytest.raises(ToolMissing, match="ssh: not found; install OpenSSH's client"):
        ssh.run(["list"])


def test_run_many_answers_every_host_within_its_timeout(fake_ssh: Settings) -> None:
    s = with_env(fake_ssh, DEV_SESSIONS_REMOTE_BIN="ds-version")
    started = time.monotonic()
    answers = run_many(s, {"box": ["--version"], "down": ["--version"], "silent": ["list"], "-x": []}, 1.0)
    assert time.monotonic() - started < 3
    assert answers["box"] == RemoteResult("box", 0, b"dev-sessions 0.1.0\n", b"")
    assert isinstance(answers["down"], HostUnreachable)
    assert isinstance(answers["silent"], HostUnreachable)
    assert "no answer within 1 s" in str(answers["silent"])
    assert isinstance(answers["-x"], UsageError)
    assert run_many(s, {}, 1.0) == {}


# -- the warm path's name and when there is none --------------------------------------------------


def warm(home: Path, **env: str) -> WarmPath:
    settings = Settings.from_env({"HOME": str(home), "DEV_SESSIONS_HOME": str(home / "state"), **env})
    return WarmPath(Ssh(settings, "box"))


def test_the_warm_socket_is_one_per_target_binary_and_config_in_the_control_dir(tmp_path: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="ds-", dir="/tmp"))
    try:
        path = warm(base).local
        assert path.parent == base / "state" / "ssh" and path.name.startswith("wc-")
        assert warm(base).usable
        assert warm(base).local == path
        assert warm(base, DEV_SESSIONS_REMOTE_BIN="~/bin/dev-sessions").local != path
        assert warm(base, DEV_SESSIONS_SSH_CONFIG=str(tmp_path / "cfg")).local != path
        assert (
            WarmPath(Ssh(Settings.from_env({"DEV_SESSIONS_HOME": str(base / "state")}), "other")).local
            != path
        )
    finally:
        shutil.rmtree(base)


def test_no_warm_path_without_a_shared_connection(tmp_path: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="ds-", dir="/tmp"))
    try:
        assert not warm(base, DEV_SESSIONS_SSH_PERSIST="0").usable  # the master goes with the command
        assert not warm(base / ("d" * 60)).usable  # too deep for a control socket
        assert not warm(tmp_path / "a:b").usable  # ssh would split -L at the colon
        assert warm(base, DEV_SESSIONS_SSH_PERSIST="0").call(b"{}", 1.0) is None  # nothing tried
    finally:
        shutil.rmtree(base)
