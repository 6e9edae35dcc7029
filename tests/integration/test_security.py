"""Holes found by attacking the tool, each with the test that failed before its fix.

Everything runs against a private DEV_SESSIONS_HOME, a private tmux server and 127.0.0.1; the agent is
tests/fakes/fake_claude.py (it records its argv, environment and working directory).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from libtmux.server import Server

from dev_sessions.config import Settings
from dev_sessions.errors import UnsafePath
from tests.conftest import DevSessions, eventually, need, one_line_error

NASTY_NAMES = [
    "#(touch PWNED)", "x#{session_name}", "#[fg=red]", "a##b", "ends;", ";", "$(touch PWNED)",
    "`touch PWNED`", "spa ces", "new\nline", "-e", "--", "'quote\"",
]  # fmt: skip


def _pwned(*places: Path) -> list[Path]:
    """Files a command smuggled into a name would have made (tmux runs #() in its server's cwd)."""
    return [p for place in places for p in place.rglob("PWNED")] + [
        p for p in (Path.cwd() / "PWNED", Path("/tmp/PWNED")) if p.exists()
    ]


def _home() -> Path:
    return Path(os.environ["DEV_SESSIONS_HOME"])


# -- 1. no value is interpreted by tmux ---------------------------------------------------------------


@pytest.mark.parametrize("name", NASTY_NAMES)
def test_a_directory_name_runs_nothing_and_is_where_the_agent_runs(
    cli: DevSessions,
    fake_claude: Path,
    tmp_path: Path,
    name: str,
) -> None:
    project = tmp_path / "proj" / name
    project.mkdir(parents=True)
    sid = cli.ok("create", "-q", "--path", str(project)).strip()
    seen = json.loads(eventually(lambda: fake_claude.exists() and fake_claude.read_text()))  # type: ignore[arg-type]
    assert seen["cwd"] == str(project.resolve())
    assert json.loads(cli.ok("list", "--json"))[0]["path"] == str(project.resolve())
    cli.ok("kill", sid)
    assert not _pwned(tmp_path, _home())


def test_environment_values_arrive_exactly(
    cli: DevSessions,
    fake_claude: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = {f"NASTY_{i}": value for i, value in enumerate(NASTY_NAMES)}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    cli.ok("create", "-q")
    seen = json.loads(eventually(lambda: fake_claude.exists() and fake_claude.read_text()))  # type: ignore[arg-type]
    assert {k: seen["env"].get(k) for k in values} == values
    assert "TMUX" not in seen["env"] and "TMUX_PANE" not in seen["env"]


@pytest.fixture
def tmux_argv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``tmux`` first on PATH that records every argv it is given, then runs the real tmux."""
    real = subprocess.run(["sh", "-c", "command -v tmux"], capture_output=True, text=True, check=True)
    shims = tmp_path / "shims"
    shims.mkdir()
    log = tmp_path / "tmux-argv.log"
    shim = shims / "tmux"
    shim.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\0' \"$@\" >> '{log}'\n"
        f"printf '\\n' >> '{log}'\n"
        f'exec {real.stdout.strip()} "$@"\n'
    )
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")
    return log


def test_no_secret_on_any_tmux_command_line_and_no_gateway_token_for_the_agent(
    cli: DevSessions,
    fake_claude: Path,
    tmux_argv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret-value-1234")
    monkeypatch.setenv("DEV_SESSIONS_GATEWAY_TOKEN", "gateway-owner-token-" + "x" * 20)
    sid = cli.ok("create", "-q").strip()
    seen = json.loads(eventually(lambda: fake_claude.exists() and fake_claude.read_text()))  # type: ignore[arg-type]
    argv = tmux_argv.read_bytes()
    assert b"new-session" in argv
    assert b"sk-ant-secret-value" not in argv and b"gateway-owner-token" not in argv
    assert seen["env"]["ANTHROPIC_API_KEY"] == "sk-ant-secret-value-1234"  # still given to the agent
    assert "DEV_SESSIONS_GATEWAY_TOKEN" not in seen["env"]  # but never the gateway's owner token
    assert seen["env"]["DEV_SESSIONS_ID"] == sid
    assert not list((_home() / "launch").iterdir())  # the launch file is gone once read


def test_a_trailing_semicolon_reaches_a_message_intact(
    cli: DevSessions, tmux_server: Server, tmp_path: Path
) -> None:
    from dev_sessions.tmux import Tmux

    tmux = Tmux(tmux_server.socket_name)
    out = tmp_path / "typed"
    tmux.new_session("dev-keys", cwd=str(tmp_path), command=["sh", "-c", f"cat > '{out}'"])
    tmux.send_keys("dev-keys", ["-R;", "#{session_name};", ";"], literal=True)
    tmux.send_keys("dev-keys", ["Enter"])
    assert eventually(lambda: out.read_text() if out.exists() else None) == "-R;#{session_name};;\n"


# -- 2. no door opens on an empty token ---------------------------------------------------------------


def _gateway(*extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if k != "DEV_SESSIONS_GATEWAY_TOKEN"}
    return subprocess.Popen(
        [sys.executable, "-m", "dev_sessions", "gateway", "--port", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize("content", [b"", b"\n", b"short-token", b"\xc2\xa0" * 20])
def test_the_gateway_refuses_to_start_on_an_empty_or_short_token_file(isolated: Path, content: bytes) -> None:
    token_file = _home() / "gateway-token"
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_bytes(content)
    process = _gateway()
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "listening" not in out
    assert err.count("\n") == 1 and str(token_file) in err and "gateway token --rotate" in err


@pytest.mark.parametrize("value", ["x", "\u00a0", "a" * 31, "a b" * 20])
def test_the_gateway_refuses_a_short_token_from_the_environment(isolated: Path, value: str) -> None:
    process = _gateway(env={"DEV_SESSIONS_GATEWAY_TOKEN": value})
    _, err = process.communicate(timeout=30)
    assert process.returncode == 1 and "$DEV_SESSIONS_GATEWAY_TOKEN" in err and err.count("\n") == 1


def test_first_starts_racing_agree_on_one_whole_token(cli: DevSessions) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DEV_SESSIONS_GATEWAY_TOKEN"}
    racers = [
        subprocess.Popen([sys.executable, "-m", "dev_sessions", "gateway", "token"], stdout=subprocess.PIPE,
                         text=True, env=env)
        for _ in range(8)
    ]  # fmt: skip
    tokens = {p.communicate(timeout=60)[0].strip() for p in racers}
    assert all(p.returncode == 0 for p in racers)
    assert len(tokens) == 1 and len(tokens.pop()) >= 32
    token_file = _home() / "gateway-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert not [p for p in token_file.parent.iterdir() if p.name.endswith(".tmp")]


def test_rotate_replaces_the_owner_token(cli: DevSessions, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEV_SESSIONS_GATEWAY_TOKEN", raising=False)
    first = cli.ok("gateway", "token").strip()
    second = cli.ok("gateway", "token", "--rotate").strip()
    assert first != second and cli.ok("gateway", "token").strip() == second


# -- 5. a full disk loses nothing ---------------------------------------------------------------------


def _store_with_sessions(count: int) -> bytes:
    """A sessions.json of ``count`` Claude records whose tmux sessions are long gone, over 8 KiB."""
    records = [
        {
            "championId": f"s{i}-top",
            "internalId": f"t{i}",
            "cli": "claude",
            "path": "/tmp",
            "description": "d" * 3000,
        }
        for i in range(count)
    ]
    store = _home() / "sessions.json"
    store.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps({"version": 1, "sessions": records}, indent=2) + "\n").encode()
    store.write_bytes(data)
    return data


def _kill_with_a_file_size_limit(cli: DevSessions, limit: int) -> subprocess.CompletedProcess[str]:
    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "dev_sessions", "kill", "s0-top"],
        capture_output=True, text=True, cwd=cli.cwd, preexec_fn=limit_files, timeout=60, check=False,
    )  # fmt: skip


def test_a_write_cut_short_leaves_the_store_as_it_was(cli: DevSessions) -> None:
    before = _store_with_sessions(5)
    result = _kill_with_a_file_size_limit(cli, 4096)  # os.write stops at 4096 bytes, then EFBIG
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1 and "sessions.json: could not write it" in result.stderr
    assert "killed" not in result.stdout
    assert (_home() / "sessions.json").read_bytes() == before
    assert not [p for p in _home().iterdir() if p.name.endswith(".tmp")]
    assert len(json.loads(cli.ok("list", "--json"))) == 5


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs (it needs root; test_a_write_cut_short_... covers the same path without)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        need("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if done.returncode != 0:
        need(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_leaves_the_store_as_it_was(
    cli: DevSessions, tiny_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEV_SESSIONS_HOME", str(tiny_disk / "state"))
    before = _store_with_sessions(5)  # ~15 KiB
    filler = tiny_disk / "filler"
    with filler.open("wb") as out:  # leave about 8 KiB: too little for a second copy of the store
        free = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize
        out.write(b"\0" * (free - 8192))
    result = cli("kill", "s0-top")
    assert result.returncode == 1 and "No space left on device" in result.stderr, result
    assert (tiny_disk / "state" / "sessions.json").read_bytes() == before
    filler.unlink()
    assert len(json.loads(cli.ok("list", "--json"))) == 5


# -- 6. the bridge socket cannot be squatted ----------------------------------------------------------


@pytest.fixture
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # Short, as a real one is (/run/user/UID): a deep one is passed over for /tmp (see below).
    run = Path(tempfile.mkdtemp(prefix="xdg-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    yield run / f"dev-sessions-{os.getuid()}"
    shutil.rmtree(run, ignore_errors=True)


def test_a_runtime_dir_too_deep_for_a_socket_is_passed_over_for_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, long_home: Path
) -> None:
    from dev_sessions.codex.link import socket_path

    deep = tmp_path / ("r" * 80)
    deep.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(deep))
    path = socket_path(long_home)
    assert path.parent == Path("/tmp") / f"dev-sessions-{os.getuid()}"
    assert len(os.fsencode(path)) < 100


@pytest.fixture
def long_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / ("h" * 120)
    monkeypatch.setenv("DEV_SESSIONS_HOME", str(home))
    return home


@pytest.mark.parametrize("squat", ["open-mode", "symlink", "file"])
def test_a_squatted_socket_directory_is_refused(
    cli: DevSessions, runtime_dir: Path, long_home: Path, tmp_path: Path, squat: str
) -> None:
    from dev_sessions.codex.link import socket_path

    if squat == "open-mode":
        runtime_dir.mkdir(mode=0o777)
        runtime_dir.chmod(0o777)
    elif squat == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        runtime_dir.symlink_to(tmp_path / "elsewhere")
    else:
        runtime_dir.write_text("")
    with pytest.raises(UnsafePath, match=str(runtime_dir)):
        socket_path(long_home)
    one_line_error(cli("create", "--cli", "codex"), 1, str(runtime_dir), "will not use it")
    if squat == "open-mode":
        assert stat.S_IMODE(runtime_dir.stat().st_mode) == 0o777  # refused, not silently "fixed"


def test_a_socket_directory_of_another_user_is_refused(runtime_dir: Path, long_home: Path) -> None:
    from dev_sessions.codex.link import socket_path

    if os.geteuid() != 0:
        need("making another user's directory needs root")
    runtime_dir.mkdir(mode=0o700)
    os.chown(runtime_dir, 65534, 65534)
    with pytest.raises(UnsafePath, match="belongs to uid 65534"):
        socket_path(long_home)


def test_a_fresh_socket_directory_is_private(runtime_dir: Path, long_home: Path) -> None:
    from dev_sessions.codex.link import socket_path

    path = socket_path(long_home)
    assert path.parent == runtime_dir
    assert stat.S_IMODE(runtime_dir.stat().st_mode) == 0o700


def test_the_client_refuses_a_bridge_run_by_another_user() -> None:
    if os.geteuid() != 0:
        need("a server of another uid needs root to start")

    from dev_sessions.codex.link import BridgeLink, BridgeUnavailable

    shared = Path(tempfile.mkdtemp(prefix="ds-peer-", dir="/tmp"))  # reachable by the other user
    shared.chmod(0o755)
    home = shared / "state"
    (home / "codex").mkdir(parents=True)
    home.chmod(0o755)
    (home / "codex").chmod(0o777)
    sock = home / "codex" / "bridge.sock"
    server = subprocess.Popen(
        [sys.executable, "-c", (
            "import os, socket, sys; os.setgid(65534); os.setuid(65534);"
            "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(); print('up', flush=True);"
            "c, _ = s.accept(); c.recv(100); c.sendall(b'{\"ok\": {}}\\n')"
        ), str(sock)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "up"
        link = BridgeLink(Settings.from_env({**os.environ, "DEV_SESSIONS_HOME": str(home)}), os.environ)
        with pytest.raises(BridgeUnavailable, match="uid 65534"):
            link.call("ping", start=False)
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(shared)


# -- 7. no symbolic link is followed in the state directory --------------------------------------------


@pytest.mark.parametrize("name", ["sessions.json.lock", "sessions.json"])
def test_a_planted_link_is_refused_and_its_target_untouched(
    cli: DevSessions, tmp_path: Path, name: str
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    _store_with_sessions(1)
    (_home() / name).unlink(missing_ok=True)
    (_home() / name).symlink_to(victim)
    result = cli("kill", "s0-top")
    one_line_error(result, 1, str(_home() / name), "symbolic link")
    assert victim.read_text() == "precious\n"


def test_links_in_the_codex_and_messaging_files_are_refused(cli: DevSessions, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    _home().mkdir(parents=True, exist_ok=True)
    (_home() / "messages.db").symlink_to(victim)
    one_line_error(cli("msg", "read"), 1, "messages.db", "symbolic link")
    assert victim.read_text() == "precious\n"


def test_the_app_server_token_is_never_written_through_a_link(tmp_path: Path) -> None:
    from dev_sessions.codex.daemon import AppServer

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "state" / "codex").mkdir(parents=True)
    (tmp_path / "state" / "codex" / "ws-token").symlink_to(victim)
    with pytest.raises(UnsafePath):
        AppServer(tmp_path / "state", "codex", os.environ).token()
    assert victim.read_text() == "precious\n"


# -- 8. hostile bytes never reach the user's terminal --------------------------------------------------

HOSTILE = "title\x1b]0;pwned\x07 red\x1b[31m bell\x07 csi\u009b2J cr\roverwrite"


def _on_a_terminal(cli: DevSessions, *args: str) -> bytes:
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "dev_sessions", *args], stdout=follower, stderr=follower, cwd=cli.cwd
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=30)
    os.close(leader)
    return b"".join(chunks)


def test_message_bodies_are_shown_not_obeyed_on_a_terminal(cli: DevSessions) -> None:
    cli.ok("agents", "register", "boss")
    cli.ok("msg", "send", "--to", "boss", HOSTILE)
    screen = _on_a_terminal(cli, "msg", "read", "--as", "boss")
    assert b"\x1b" not in screen and b"\x07" not in screen and "\u009b".encode() not in screen
    assert "␛]0;pwned␇".encode() in screen
    piped = json.loads(cli.ok("msg", "read", "--as", "boss", "--json"))
    assert piped[0]["body"] == HOSTILE  # --json stays exact


def test_descriptions_are_shown_not_obeyed_in_list(cli: DevSessions, fake_claude: Path) -> None:
    cli.ok("create", "-q", "--description", HOSTILE)
    screen = _on_a_terminal(cli, "list")
    assert b"\x1b" not in screen and b"\x07" not in screen
    assert "␛[31m".encode() in screen
    rows = json.loads(cli.ok("list", "--json"))
    assert rows[0]["description"] == HOSTILE
    table = cli.ok("list")  # piped: a cell still never breaks its line
    assert len(table.strip().splitlines()) == 2 and "\x1b" not in table


def test_errors_naming_a_hostile_value_are_shown_not_obeyed(cli: DevSessions) -> None:
    screen = _on_a_terminal(cli, "create", "--path", "/nowhere/\x1b]0;pwned\x07")
    assert b"\x1b" not in screen and b"no such directory" in screen


# -- 10. smaller ones ---------------------------------------------------------------------------------


def test_a_deeply_nested_store_is_moved_aside_not_a_crash(cli: DevSessions) -> None:
    store = _home() / "sessions.json"
    store.parent.mkdir(parents=True)
    store.write_text('{"version": 1, "sessions": [], "x": ' + "[" * 100000 + "]" * 100000 + "}")
    one_line_error(cli("list"), 1, "nested too deeply", "moved to")
    assert cli("list").returncode == 0


def test_a_version_that_is_not_a_number_is_called_that(cli: DevSessions) -> None:
    store = _home() / "sessions.json"
    store.parent.mkdir(parents=True)
    store.write_text('{"version": "1", "sessions": []}')
    result = cli("list")
    one_line_error(result, 1, "version '1' is not a number")
    assert "newer" not in result.stderr


def test_a_trailing_newline_makes_no_name(cli: DevSessions) -> None:
    one_line_error(cli("agents", "register", "boss\n"), 2, "is not a valid agent name")
    assert cli("status", "fizz-top\n").returncode == 1


def test_the_codex_app_server_never_gets_the_gateway_token() -> None:
    from dev_sessions.codex.daemon import server_env

    env = server_env({"PATH": "/bin", "DEV_SESSIONS_GATEWAY_TOKEN": "x" * 40, "OPENAI_API_KEY": "k"})
    assert env == {"PATH": "/bin", "OPENAI_API_KEY": "k"}
