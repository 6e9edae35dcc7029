"""The real gateway process against malformed and hostile requests, over raw sockets.

Each request gets a clean 4xx and exactly one log line: never a 500, a dropped connection, a blocking
DNS lookup or a socket held open. Then a Hypothesis fuzz sends well-formed calls with arguments of any
JSON shape, and no answer may be an internal error. Then scoped tokens, end to end.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dev_sessions.gateway.protocol import CALLS
from tests.conftest import SLOW, DevSessions, GatewayProcess, start_gateway


def raw(gw: GatewayProcess, request: bytes, timeout: float = 15.0) -> tuple[int, bytes, float]:
    """Send bytes as they are; the status, the body, and how long the answer took."""
    parts = urlsplit(gw.url)
    started = time.monotonic()
    with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=timeout * SLOW) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
        while True:  # the server must close (or finish) on its own, within the timeout
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return status, body, time.monotonic() - started


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def request(gw: GatewayProcess, body: bytes, *, host: str | None = "127.0.0.1", extra: str = "",
            length: int | None = None, token: str | None = None, version: str = "1.1") -> bytes:  # fmt: skip
    lines = [f"POST /v1/call HTTP/{version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [
        f"Authorization: Bearer {token or gw.token}",
        "Content-Type: application/json",
        f"Content-Length: {len(body) if length is None else length}",
        "Connection: close",
    ]
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def call(api: str, method: str, args: Any) -> bytes:
    return json.dumps({"api": api, "method": method, "args": args}).encode()


class Case:
    """A request, and the status it must get; ``parser``: refused by aiohttp's parser (a text body)."""

    def __init__(self, test_id: str, build: Any, expected: int, parser: bool = False) -> None:
        self.test_id, self.build, self.expected, self.parser = test_id, build, expected, parser


CASES = [
    Case("nul-in-a-string", lambda gw: request(gw, call("messages", "register", {"name": "a\u0000b"})), 400),
    Case("nul-in-a-path", lambda gw: request(gw, call("sessions", "create", {"path": "/tmp/\u0000x"})), 400),
    Case("lone-surrogate", lambda gw: request(gw, b'{"api": "messages", "method": "register", "args": {"name": "\\ud800"}}'), 400),
    Case("deep-nesting", lambda gw: request(gw, b'{"api": "messages", "method": "send", "args": {"metadata": ' + b"[" * 50000 + b"]" * 50000 + b"}}"), 400),
    Case("wrong-type-int-for-str", lambda gw: request(gw, call("messages", "register", {"name": 5})), 400),
    Case("wrong-type-list-for-id", lambda gw: request(gw, call("sessions", "status", {"session_id": ["a"]})), 400),
    Case("wrong-type-str-for-list", lambda gw: request(gw, call("sessions", "kill", {"session_ids": "fizz-top"})), 400),
    Case("wrong-type-bool-for-int", lambda gw: request(gw, call("messages", "thread", {"message_id": True})), 400),
    Case("args-not-an-object", lambda gw: request(gw, call("messages", "spaces", [1, 2])), 400),
    Case("api-not-a-string", lambda gw: request(gw, call(["x"], "y", {})), 404),  # type: ignore[arg-type]
    Case("huge-number", lambda gw: request(gw, b'{"api": "messages", "method": "feed", "args": {"limit": 1e999}}'), 400),
    Case("missing-required", lambda gw: request(gw, call("messages", "register", {})), 400),
    Case("not-json", lambda gw: request(gw, b"{nope"), 400),
    Case("not-utf8", lambda gw: request(gw, b'{"api": "\xff"}'), 400),
    Case("missing-host", lambda gw: request(gw, call("messages", "spaces", {}), host=None, version="1.0"), 400),
    Case("loose-v6-host", lambda gw: request(gw, call("messages", "spaces", {}), host="[::1]evil"), 400),
    Case("loose-port", lambda gw: request(gw, call("messages", "spaces", {}), host="127.0.0.1:abc"), 400),
    Case("two-hosts", lambda gw: request(gw, call("messages", "spaces", {}), extra="Host: evil.example"), 400, True),
    Case("unicode-space-token", lambda gw: request(gw, call("messages", "spaces", {}), token="\u00a0"), 401),
]  # fmt: skip


@pytest.fixture(scope="module")
def shared_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway for the module's many requests, with its own state dir and root."""
    base = tmp_path_factory.mktemp("hostile")
    env = {
        "HOME": str(base),
        "DEV_SESSIONS_HOME": str(base / "state"),
        "DEV_SESSIONS_TMUX_SOCKET": "ds-hostile-never-started",
        "DEV_SESSIONS_CLAUDE_BIN": str(base / "no-such-claude"),
        "DEV_SESSIONS_CODEX_BIN": str(base / "no-such-codex"),
    }
    running = start_gateway("--root", str(base), env=env)
    yield running
    running.process.terminate()
    running.process.wait(timeout=10)


@pytest.mark.parametrize("case", CASES, ids=[c.test_id for c in CASES])
def test_a_malformed_request_gets_a_clean_refusal(shared_gateway: GatewayProcess, case: Case) -> None:
    status, body, _ = raw(shared_gateway, case.build(shared_gateway))
    assert status == case.expected, body
    if case.parser:
        assert b"Host" in body and len(body.splitlines()) == 1
        return
    answer = json.loads(body)
    assert answer["error"]["exit"] == 1 and "\n" not in answer["error"]["message"]


def test_an_http11_request_without_host_is_refused_by_the_parser(shared_gateway: GatewayProcess) -> None:
    status, body, _ = raw(shared_gateway, request(shared_gateway, call("messages", "spaces", {}), host=None))
    assert status == 400 and b"Host" in body


def test_a_huge_content_length_is_refused_at_once_and_the_socket_closed(
    shared_gateway: GatewayProcess,
) -> None:
    # No body follows: a server that waited for it would hold the socket until our timeout, and
    # raw() would fail with a timeout instead of seeing the server close (it lingers 1 s at most).
    status, body, _ = raw(shared_gateway, request(shared_gateway, b"", length=10**12), timeout=8)
    assert status == 413 and "request body over" in json.loads(body)["error"]["message"]


def test_each_refusal_is_one_log_line(isolated: Path) -> None:
    gw = start_gateway("--root", str(isolated))
    for case in CASES:
        raw(gw, case.build(gw))
    raw(gw, request(gw, b"", length=10**12))
    raw(gw, request(gw, call("messages", "spaces", {}), host=None))  # refused by aiohttp's parser
    raw(gw, b"GARBAGE\r\n\r\n")
    log = gw.log()
    lines = [line for line in log.splitlines() if "listening" not in line and "token:" not in line]
    assert len(lines) == len(CASES) + 3, log
    assert " 500 " not in log and "Traceback" not in log and "internal" not in log


def test_create_without_a_path_is_checked_against_the_roots(isolated: Path, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    gw = start_gateway("--root", str(served))  # the gateway runs in the repository, outside that root
    status, body, _ = raw(gw, request(gw, call("sessions", "create", {"cli": "claude"})))
    assert (
        status == 400
        and "outside the directories this gateway serves" in json.loads(body)["error"]["message"]
    )
    gw.log()


# -- fuzz ---------------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)  # fmt: skip
CALL_NAMES = [(api, method) for api, methods in CALLS.items() for method in methods]


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
    api, method = draw(st.sampled_from(CALL_NAMES))
    names = sorted(CALLS[api][method].args)
    args = draw(st.dictionaries(st.sampled_from(names), JSON, max_size=len(names))) if names else {}
    if CALLS[api][method].long:
        args["timeout"] = 0.05  # a long call must end within the example
    return api, method, args


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls())
def test_no_argument_shape_makes_an_internal_error(
    shared_gateway: GatewayProcess, fuzzed: tuple[str, str, dict[str, Any]]
) -> None:
    api, method, args = fuzzed
    status, body, _ = raw(shared_gateway, request(shared_gateway, call(api, method, args)), timeout=30)
    assert status in (200, 400, 403, 404), body
    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    final = lines[-1]
    assert "result" in final or "error" in final
    if "error" in final:
        assert "internal error" not in final["error"]["message"], (api, method, args, final)


# -- scoped tokens ------------------------------------------------------------------------------------


def _scoped(cli: DevSessions, name: str, *roots: Path) -> str:
    args = ["gateway", "token", "--for", name]
    for root in roots:
        args += ["--root", str(root)]
    return cli.ok(*args).strip()


def _answer(gw: GatewayProcess, token: str, api: str, method: str, args: dict[str, Any]) -> tuple[int, Any]:
    status, body, _ = raw(gw, request(gw, call(api, method, args), token=token))
    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    return status, lines[-1] if lines else {}


def test_a_scoped_token_acts_as_its_name_only(gateway: GatewayProcess, cli: DevSessions) -> None:
    for name in ("boss", "worker", "other"):
        cli.ok("agents", "register", name)
    token = _scoped(cli, "worker")
    assert token.startswith("dsg_")
    status, answer = _answer(gateway, token, "messages", "send", {"to": "boss", "body": "done"})
    assert status == 200 and answer["result"]["sender"] == "worker"  # filled in
    status, answer = _answer(
        gateway, token, "messages", "send", {"to": "boss", "body": "x", "sender": "boss"}
    )
    assert status == 403 and "acts as worker only" in answer["error"]["message"]
    status, _ = _answer(gateway, token, "messages", "read", {"reader": "boss"})
    assert status == 403
    status, _ = _answer(gateway, token, "messages", "register", {"name": "newname"})
    assert status == 403
    cli.ok("msg", "send", "--from", "boss", "--to", "other", "secret plans")
    for method, args in (("feed", {}), ("search", {"query": "plans"})):
        status, answer = _answer(gateway, token, "messages", method, args)
        assert status == 200 and all("secret" not in m["body"] for m in answer["result"]), method
    boss_message = json.loads(cli.ok("msg", "feed", "--json"))[-1]["id"]
    status, answer = _answer(gateway, token, "messages", "thread", {"message_id": boss_message})
    assert "no such message" in answer["error"]["message"]
    status, answer = _answer(gateway, gateway.token, "messages", "feed", {})  # the owner sees everything
    assert any("secret" in m["body"] for m in answer["result"])


def test_a_scoped_token_reacts_pins_and_sees_mentions_of_its_own_messages_only(
    gateway: GatewayProcess, cli: DevSessions
) -> None:
    for name in ("boss", "worker", "other"):
        cli.ok("agents", "register", name)
    token = _scoped(cli, "worker")
    theirs = int(cli.ok("msg", "send", "--from", "boss", "--to", "other", "@worker is slow").strip())
    mine = int(cli.ok("msg", "send", "--from", "boss", "--to", "worker", "@worker go").strip())
    for method in ("react", "unreact"):
        status, answer = _answer(gateway, token, "messages", method, {"message_id": theirs, "emoji": "👍"})
        assert "no such message" in answer["error"]["message"], method
    for method in ("pin", "unpin", "reactions"):
        status, answer = _answer(gateway, token, "messages", method, {"message_id": theirs})
        assert "no such message" in answer["error"]["message"], method
    status, answer = _answer(gateway, token, "messages", "react", {"message_id": mine, "emoji": "👍"})
    assert status == 200 and answer["result"] is True
    assert json.loads(cli.ok("msg", "reactions", str(mine), "--json"))[0]["agents"] == ["worker"]
    cli.ok("msg", "pin", str(theirs))
    status, answer = _answer(gateway, token, "messages", "pinned", {})
    assert status == 200 and answer["result"] == []
    status, answer = _answer(gateway, token, "messages", "context", {})
    assert status == 200 and [m["id"] for m in answer["result"]["mentions"]["$tuple"]] == [mine]
    for method, args in (("prune", {"older_than": "1d"}), ("stats", {})):
        status, answer = _answer(gateway, token, "messages", method, args)
        assert status == 403 and "only with the owner's token" in answer["error"]["message"], method
    status, answer = _answer(gateway, gateway.token, "messages", "stats", {})  # the owner may
    assert status == 200 and answer["result"]["pinned"] == 1


def test_a_scoped_token_reaches_only_its_own_sessions_and_roots(
    gateway: GatewayProcess, cli: DevSessions, tmp_path: Path, isolated: Path
) -> None:
    own = tmp_path / "own"
    own.mkdir()
    store = Path(os.environ["DEV_SESSIONS_HOME"]) / "sessions.json"
    store.parent.mkdir(parents=True, exist_ok=True)
    records = [
        {"championId": "mine-top", "internalId": "u1", "cli": "claude", "path": str(own), "parent": "worker"},
        {"championId": "theirs-top", "internalId": "u2", "cli": "claude", "path": str(own), "parent": "boss"},
    ]
    store.write_text(json.dumps({"version": 1, "sessions": records}))
    token = _scoped(cli, "worker", own)
    status, answer = _answer(gateway, token, "sessions", "list_sessions", {})
    assert status == 200 and [s["id"] for s, _ in (r["$tuple"] for r in answer["result"])] == ["mine-top"]
    status, answer = _answer(gateway, token, "sessions", "kill", {"session_ids": ["theirs-top"]})
    assert status == 403 and "not a session of worker" in answer["error"]["message"]
    status, answer = _answer(gateway, token, "sessions", "kill_all", {})
    assert status == 200 and [k["id"] for k in answer["result"]] == ["mine-top"]
    assert [r["championId"] for r in json.loads(store.read_text())["sessions"]] == ["theirs-top"]
    status, answer = _answer(gateway, token, "sessions", "create", {"path": str(isolated)})
    assert status == 400 and "outside the directories this token may use" in answer["error"]["message"]


def test_tokens_are_listed_hashed_and_revoked_live(gateway: GatewayProcess, cli: DevSessions) -> None:
    cli.ok("agents", "register", "worker")
    token = _scoped(cli, "worker")
    listed = json.loads(cli.ok("gateway", "tokens", "--json"))
    assert [t["name"] for t in listed] == ["worker"]
    kept = (Path(os.environ["DEV_SESSIONS_HOME"]) / "gateway-tokens.json").read_text()
    assert token not in kept and token.split("_")[2] not in kept
    assert _answer(gateway, token, "messages", "spaces", {})[0] == 200
    assert cli.ok("gateway", "revoke", "worker").startswith(f"revoked {listed[0]['id']}")
    assert _answer(gateway, token, "messages", "spaces", {})[0] == 401  # the running gateway sees it
    result = cli("gateway", "revoke", "worker")
    assert result.returncode == 1 and "no such scoped token" in result.stderr


def test_scoped_token_usage_errors(cli: DevSessions, tmp_path: Path) -> None:
    for args, needle in (
        (["gateway", "token", "--for", "bad name"], "is not a valid agent name"),
        (["gateway", "token", "--for", "w", "--root", str(tmp_path / "none")], "no such directory"),
        (["gateway", "token", "--root", str(tmp_path)], "--root goes with --for"),
        (["gateway", "token", "--for", "w", "--rotate"], "--rotate is for the owner token"),
    ):
        result = cli(*args)
        assert result.returncode == 2 and needle in result.stderr and result.stderr.count("\n") == 1, args


def test_sandbox_mode_with_a_scoped_token(gateway: GatewayProcess, cli: DevSessions, isolated: Path) -> None:
    cli.ok("agents", "register", "boss")
    cli.ok("agents", "register", "worker")
    token = _scoped(cli, "worker")
    env = {**os.environ, "DEV_SESSIONS_SANDBOX": "1", "DEV_SESSIONS_GATEWAY_URL": gateway.url,
           "DEV_SESSIONS_GATEWAY_TOKEN": token, "HOST_PATH": str(isolated), "CONTAINER_WORKSPACE": str(isolated)}  # fmt: skip
    env.pop("DEV_SESSIONS_AGENT", None)
    sent = subprocess.run(
        [sys.executable, "-m", "dev_sessions", "msg", "send", "--to", "boss", "--json", "from the box"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["from"] == "worker"
    spoof = subprocess.run(
        [sys.executable, "-m", "dev_sessions", "msg", "send", "--from", "boss", "--to", "worker", "x"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert spoof.returncode == 1 and "acts as worker only" in spoof.stderr


def test_no_token_reaches_a_remote_host_through_the_gateway(
    gateway: GatewayProcess, cli: DevSessions
) -> None:
    status, body, _ = raw(gateway, request(gateway, call("sessions", "create", {"host": "build-box"})))
    assert status == 403 and b"create --host: not through the gateway" in body
    assert json.loads(cli.ok("list", "--json")) == []
