"""The gateway over real HTTP: who may call, what they may reach, and what is logged."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, DevSessions, GatewayProcess, eventually, need, start_gateway
from tests.integration.user_systemd import CannotRun, UserManager


def post(
    gw: GatewayProcess,
    body: bytes | dict[str, object],
    *,
    token: str | None = "",
    host: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, object]]:
    parts = urlsplit(gw.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token or gw.token}"
    if host is not None:
        sent["Host"] = host
    connection.request("POST", "/v1/call", body=data, headers=sent)
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
    return response.status, (lines[-1] if lines else {})


def nothing_happened(cli: DevSessions) -> None:
    assert json.loads(cli.ok("list", "--json")) == []
    assert json.loads(cli.ok("msg", "feed", "--json")) == []


def test_a_good_call(gateway: GatewayProcess, cli: DevSessions) -> None:
    cli.ok("agents", "register", "boss")
    status, answer = post(
        gateway, {"api": "messages", "method": "send", "args": {"to": "boss", "body": "hi"}}
    )
    assert status == 200
    assert answer["result"]["body"] == "hi"  # type: ignore[index]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ({"token": None}, 401),
        ({"token": "wrong"}, 401),
        ({"host": "evil.example.com"}, 403),
        ({"host": "evil.example.com:6767"}, 403),
        ({"headers": {"Origin": "http://evil.example.com"}}, 403),
        ({"headers": {"Sec-Fetch-Site": "cross-site"}}, 403),
    ],
)
def test_refusals_have_no_effect(
    gateway: GatewayProcess, cli: DevSessions, case: dict[str, object], expected: int
) -> None:
    call = {"api": "messages", "method": "register", "args": {"name": "intruder"}}
    status, answer = post(gateway, call, **case)  # type: ignore[arg-type]
    assert status == expected
    assert "intruder" not in json.dumps(answer)
    names = [row["name"] for row in json.loads(cli.ok("agents", "--json"))]
    assert "intruder" not in names
    nothing_happened(cli)


def test_health_needs_no_token_but_a_good_host(gateway: GatewayProcess) -> None:
    parts = urlsplit(gateway.url)
    for host, expected in (("127.0.0.1", 200), ("host.docker.internal:6767", 200), ("rebound.example", 403)):
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        connection.request("GET", "/health", headers={"Host": host})
        assert connection.getresponse().status == expected
        connection.close()


def test_only_listed_calls_and_arguments(gateway: GatewayProcess, cli: DevSessions) -> None:
    assert post(gateway, {"api": "sessions", "method": "store", "args": {}})[0] == 404
    assert post(gateway, {"api": "os", "method": "system", "args": {}})[0] == 404
    extra = {"api": "sessions", "method": "list_sessions", "args": {"environ": {"PATH": "/tmp"}}}
    assert post(gateway, extra)[0] == 400
    assert post(gateway, b"not json")[0] == 400
    nothing_happened(cli)


@pytest.mark.parametrize("path", ["/etc", "relative/dir", "{root}/work/../../..", "{root}/../escape"])
def test_a_path_outside_the_served_roots_is_400(
    gateway: GatewayProcess, cli: DevSessions, isolated: Path, path: str
) -> None:
    call = {"api": "sessions", "method": "create", "args": {"path": path.format(root=isolated)}}
    status, answer = post(gateway, call)
    assert status == 400
    assert "path:" in json.dumps(answer)
    nothing_happened(cli)


def test_oversized_body_is_413(isolated: Path, cli: DevSessions) -> None:
    small = start_gateway("--root", str(isolated), "--max-body", "1000")
    try:
        body = {"api": "messages", "method": "register", "args": {"name": "x" * 5000}}
        assert post(small, body)[0] == 413
    finally:
        small.process.terminate()
        small.process.wait()
    nothing_happened(cli)


def test_the_log_names_calls_but_never_bodies_or_tokens(gateway: GatewayProcess, cli: DevSessions) -> None:
    cli.ok("agents", "register", "boss")
    secret = "the-launch-code-is-0000"
    assert (
        post(gateway, {"api": "messages", "method": "send", "args": {"to": "boss", "body": secret}})[0] == 200
    )
    post(
        gateway, {"api": "messages", "method": "send", "args": {"to": "boss", "body": secret}}, token="wrong"
    )
    log = gateway.log()
    assert "messages.send 200 ok" in log
    assert "/v1/call 401" in log
    assert secret not in log
    assert gateway.token not in log


def test_a_request_path_cannot_write_control_characters_into_the_log(gateway: GatewayProcess) -> None:
    # Any web page can make a browser ask the gateway for a path (refused, but logged), and aiohttp
    # decodes %1b in it: the log line, on the user's terminal, must show it as text.
    parts = urlsplit(gateway.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    connection.request("GET", "/%1b]0;pwned%07%0d%0aforged%20200", headers={"Host": "127.0.0.1"})
    assert connection.getresponse().status == 401
    connection.close()
    log = gateway.log()
    assert "\x1b" not in log and "\x07" not in log and "\r" not in log
    assert "␛]0;pwned␇␍␊forged 200" in log
    assert not any(line.startswith("forged") for line in log.splitlines())


def test_errors_keep_their_message_and_exit_code(gateway: GatewayProcess, cli: DevSessions) -> None:
    status, answer = post(
        gateway, {"api": "sessions", "method": "status", "args": {"session_id": "nope-top"}}
    )
    assert status == 200
    assert answer["error"] == {  # type: ignore[comparison-overlap]
        "message": "nope-top: no such session (see `dev-sessions list`)",
        "exit": 1,
        "kind": "SessionNotFound",
        "fields": {"session_id": "nope-top"},
    }


@pytest.fixture
def sandbox(gateway: GatewayProcess, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The command line as inside a container: the workspace maps to the host's work directory."""
    container = isolated / "container-workspace"
    container.mkdir()
    monkeypatch.setenv("DEV_SESSIONS_SANDBOX", "1")
    monkeypatch.setenv("DEV_SESSIONS_GATEWAY_URL", gateway.url)
    monkeypatch.setenv("DEV_SESSIONS_GATEWAY_TOKEN", gateway.token)
    monkeypatch.setenv("CONTAINER_WORKSPACE", str(container))
    monkeypatch.setenv("HOST_PATH", str(isolated / "work"))
    return container


def test_sandbox_mode_answers_like_local_mode(
    sandbox: Path, cli: DevSessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = DevSessions(sandbox)
    remote.ok("agents", "register", "boss")
    sent = remote.ok("msg", "send", "--to", "boss", "from the container").strip()
    remote_out = remote.ok("msg", "thread", sent)
    unknown = remote("status", "nope-top")
    monkeypatch.delenv("DEV_SESSIONS_SANDBOX")
    assert cli.ok("msg", "thread", sent) == remote_out
    local_unknown = cli("status", "nope-top")
    assert (unknown.returncode, unknown.stderr) == (local_unknown.returncode, local_unknown.stderr)


def test_sandbox_mode_refuses_paths_outside_the_workspace(sandbox: Path, isolated: Path) -> None:
    remote = DevSessions(sandbox)
    result = remote("create", "--path", str(isolated))
    assert result.returncode == 2
    assert "outside the container workspace" in result.stderr


def test_sandbox_mode_without_a_gateway_says_what_to_check(
    cli: DevSessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEV_SESSIONS_SANDBOX", "1")
    monkeypatch.setenv("DEV_SESSIONS_GATEWAY_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DEV_SESSIONS_GATEWAY_TOKEN", "t")
    result = cli("list")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "gateway http://127.0.0.1:9 does not answer" in result.stderr
    assert "dev-sessions gateway" in result.stderr


def test_service_install_status_uninstall(cli: DevSessions) -> None:
    out = cli.ok("gateway", "install", "--port", "7123", "--no-start")
    unit = Path(os.environ["HOME"]) / ".config" / "systemd" / "user" / "dev-sessions-gateway.service"
    assert str(unit) in out
    text = unit.read_text()
    assert '"--port" "7123"' in text
    status = cli("gateway", "status", "--json")
    info = json.loads(status.stdout)
    assert info["installed"] is True and info["port"] == 7123
    assert str(info["health"]).startswith("no answer")
    assert cli.ok("gateway", "uninstall").strip() == f"removed {unit}"
    assert not unit.exists()
    assert cli("gateway", "status").returncode == 1


def test_doctor_in_a_sandbox_checks_the_gateway(
    sandbox: Path, gateway: GatewayProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = DevSessions(sandbox)
    good = remote("doctor")
    assert good.returncode == 0, good.stdout
    assert "ok    gateway token: accepted" in good.stdout
    monkeypatch.setenv("DEV_SESSIONS_GATEWAY_TOKEN", "wrong")
    bad = remote("doctor")
    assert bad.returncode == 1
    assert "fail  gateway token" in bad.stdout


def health(url: str, host: str | None = None) -> int:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    connection.request("GET", "/health", headers={"Host": host} if host else {})
    status = connection.getresponse().status
    connection.close()
    return status


@contextlib.contextmanager
def running(
    *extra: str, env: dict[str, str] | None = None, token_file: bool = False
) -> Iterator[GatewayProcess]:
    gw = start_gateway(*extra, env=env, token_file=token_file)
    try:
        yield gw
    finally:
        gw.process.terminate()
        gw.process.wait(timeout=10)


def test_bind_adds_an_address_and_its_name(isolated: Path, cli: DevSessions) -> None:
    with running("--root", str(isolated), "--bind", "127.0.0.2") as gw:
        port = urlsplit(gw.url).port
        assert gw.url == f"http://127.0.0.1:{port}"
        assert gw.process.stdout is not None
        assert gw.process.stdout.readline().strip().endswith(f"listening on http://127.0.0.2:{port}")
        there = GatewayProcess(f"http://127.0.0.2:{port}", gw.token, gw.process)
        assert health(there.url) == 200  # Host: 127.0.0.2, a name of its own now
        call = {"api": "messages", "method": "register", "args": {"name": "via-bind"}}
        assert post(there, call)[0] == 200
    assert "via-bind" in [row["name"] for row in json.loads(cli.ok("agents", "--json"))]


def test_without_bind_only_loopback_is_served(gateway: GatewayProcess) -> None:
    port = urlsplit(gateway.url).port
    with pytest.raises(ConnectionRefusedError):
        health(f"http://127.0.0.2:{port}")
    assert health(gateway.url, host="127.0.0.2") == 403


def test_bind_names_an_interface_or_is_refused(isolated: Path) -> None:
    with running("--root", str(isolated), "--bind", "lo") as gw:  # lo's address: 127.0.0.1, once
        assert health(gw.url) == 200
    bad = subprocess.run(
        [sys.executable, "-m", "dev_sessions", "gateway", "--port", "0", "--bind", "nosuch0"],
        capture_output=True, text=True, cwd=ROOT, timeout=30, check=False,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "--bind nosuch0: no such address or interface" in bad.stderr


def test_allow_host_accepts_another_name(isolated: Path, gateway: GatewayProcess) -> None:
    assert health(gateway.url, host="gw.internal") == 403
    with running("--root", str(isolated), "--allow-host", "gw.internal") as gw:
        assert health(gw.url, host="gw.internal") == 200
        call = {"api": "messages", "method": "register", "args": {"name": "named"}}
        assert post(gw, call, host="gw.internal:6767")[0] == 200
        assert post(gw, call, host="other.internal")[0] == 403


def test_gateway_token_is_the_one_the_gateway_takes(
    isolated: Path, cli: DevSessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = cli.ok("gateway", "token").strip()
    path = Path(os.environ["DEV_SESSIONS_HOME"]) / "gateway-token"
    assert path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert cli.ok("gateway", "token").strip() == token, "made once, then kept"
    call = {"api": "messages", "method": "register", "args": {"name": "tokened"}}
    with running("--root", str(isolated), token_file=True) as gw:
        assert gw.token == token
        assert post(gw, call)[0] == 200
        assert post(gw, call, token="not-" + token)[0] == 401
    monkeypatch.setenv("DEV_SESSIONS_GATEWAY_TOKEN", "from-the-environment-" + "e" * 20)
    assert cli.ok("gateway", "token").strip() == "from-the-environment-" + "e" * 20


def test_gateway_roots_from_the_environment(
    isolated: Path, cli: DevSessions, fake_claude: Path, tmp_path: Path
) -> None:
    served, other = tmp_path / "served", tmp_path / "other"
    (served / "repo").mkdir(parents=True)
    other.mkdir()
    roots = {"DEV_SESSIONS_GATEWAY_ROOTS": f"{tmp_path / 'elsewhere'}:{served}"}
    with running(env=roots) as gw:
        refused = post(gw, {"api": "sessions", "method": "create", "args": {"path": str(other)}})
        assert refused[0] == 400 and "path:" in json.dumps(refused[1])
        status, answer = post(
            gw, {"api": "sessions", "method": "create", "args": {"path": str(served / "repo")}}
        )
        assert status == 200, answer
    (session,) = json.loads(cli.ok("list", "--json"))
    assert session["path"] == str((served / "repo").resolve())


@pytest.fixture
def user_systemd(isolated: Path) -> Iterator[UserManager]:
    """A private systemd user manager that `systemctl --user` (and so `gateway install`) reaches."""
    manager = UserManager(
        home=Path(os.environ["HOME"]),
        runtime=Path(os.environ["XDG_RUNTIME_DIR"]),
        log=isolated / "systemd.log",
    )
    try:
        manager.start()
    except CannotRun as err:
        need(f"a private systemd user manager cannot run here: {err}")
    try:
        yield manager
    finally:
        manager.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="systemd runs on Linux only (launchd: not yet)"
)
def test_install_starts_the_service_and_status_sees_it_live(
    cli: DevSessions, user_systemd: UserManager
) -> None:
    port = free_port()
    unit = Path(os.environ["HOME"]) / ".config" / "systemd" / "user" / "dev-sessions-gateway.service"
    assert cli.ok("gateway", "install", "--port", str(port)).startswith(f"systemd: {unit} (started)")
    facts = user_systemd.show("dev-sessions-gateway.service", "ActiveState", "UnitFileState", "MainPID")
    assert (facts["ActiveState"], facts["UnitFileState"]) == ("active", "enabled")
    argv = Path(f"/proc/{facts['MainPID']}/cmdline").read_bytes().split(b"\0")[1:-1]
    assert [a.decode() for a in argv] == ["-m", "dev_sessions", "gateway", "--port", str(port)]

    def live() -> dict[str, object] | None:
        found: dict[str, object] = json.loads(cli.ok("gateway", "status", "--json"))
        return found if found["health"] == "ok" else None

    assert eventually(live, timeout=20) == {
        "kind": "systemd", "path": str(unit), "installed": True, "port": port, "active": "active",
        "health": "ok",
    }  # fmt: skip
    assert cli.ok("gateway", "status") == f"installed: {unit} (systemd, active)\nport {port}: health ok\n"
    # It serves this state dir, with the token that `gateway token` prints.
    token = cli.ok("gateway", "token").strip()
    service = GatewayProcess(f"http://127.0.0.1:{port}", token, None)  # type: ignore[arg-type]
    assert post(service, {"api": "messages", "method": "register", "args": {"name": "via-service"}})[0] == 200
    assert "via-service" in [row["name"] for row in json.loads(cli.ok("agents", "--json"))]

    assert cli.ok("gateway", "uninstall").strip() == f"removed {unit}"
    assert not unit.exists()
    eventually(lambda: not Path(f"/proc/{facts['MainPID']}").exists(), timeout=20)
    # Stopped cleanly, and gone from the manager (a failed unit would stay loaded as "failed").
    assert user_systemd.show("dev-sessions-gateway.service", "ActiveState", "LoadState") == {
        "ActiveState": "inactive",
        "LoadState": "not-found",
    }
    with pytest.raises(ConnectionRefusedError):
        health(service.url)
    assert cli("gateway", "status").returncode == 1


def test_sigterm_is_a_clean_stop(gateway: GatewayProcess) -> None:
    gateway.process.terminate()  # what systemd (and launchd) send to stop the service
    assert gateway.process.wait(timeout=10) == 0, (
        gateway.process.stderr.read() if gateway.process.stderr else ""
    )
