"""The app-server process and its client, with the real pinned codex binary."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dev_sessions.codex.client import AppServerClient, AppServerError, AppServerUnavailable
from dev_sessions.codex.daemon import AppServer
from dev_sessions.codex.link import BridgeLink
from dev_sessions.codex.protocol import Notification, ServerRequest
from dev_sessions.config import Settings
from dev_sessions.errors import UsageError
from dev_sessions.selftest.fakes.openai_responses import FakeResponses
from tests.conftest import ROOT, SLOW, eventually

ENSURE = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from dev_sessions.codex.daemon import AppServer
    print(AppServer(Path(sys.argv[1]), os.environ["DEV_SESSIONS_CODEX_BIN"], os.environ).ensure().pid)
    """
)


@pytest.fixture
def app(codex: FakeResponses, tmp_path: Path) -> AppServer:
    return AppServer(Path(os.environ["DEV_SESSIONS_HOME"]), os.environ["DEV_SESSIONS_CODEX_BIN"], os.environ)


def test_start_records_state_and_a_private_token(app: AppServer) -> None:
    state = app.ensure()
    assert app.alive() == state
    assert state.url == f"ws://127.0.0.1:{state.port}"
    assert stat.S_IMODE(app.token_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(app.dir.stat().st_mode) == 0o700
    assert json.loads(app.state_path.read_text())["pid"] == state.pid
    assert app.stop()
    assert app.running() is None
    assert not app.state_path.exists()
    assert not Path(f"/proc/{state.pid}").exists() or ") Z" in Path(f"/proc/{state.pid}/stat").read_text()


def test_parallel_starters_share_one_server(app: AppServer) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ENSURE, str(app.dir.parent)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for _ in range(5)
    ]
    pids = {int(p.communicate(timeout=60 * SLOW)[0]) for p in procs}
    assert len(pids) == 1
    app.stop()


def test_a_dead_server_is_replaced(app: AppServer) -> None:
    first = app.ensure()
    os.kill(first.pid, signal.SIGKILL)
    eventually(lambda: app.alive() is None)
    second = app.ensure()
    assert second.pid != first.pid
    app.stop()


def test_a_stale_state_file_never_signals_someone_else(app: AppServer) -> None:
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        app.dir.mkdir(parents=True, exist_ok=True)
        fake_state = {
            "pid": bystander.pid, "port": 1, "url": "ws://127.0.0.1:1", "startedAt": "",
            "binary": os.environ["DEV_SESSIONS_CODEX_BIN"], "procStart": "12345",
        }  # fmt: skip
        app.state_path.write_text(json.dumps(fake_state))
        assert app.running() is None
        state = app.ensure()  # starts a real one instead
        assert state.pid != bystander.pid
        assert bystander.poll() is None, "the unrelated process must not have been signalled"
        app.stop()
    finally:
        bystander.kill()
        bystander.wait()


def client_for(app: AppServer, listeners: list | None = None, token: str | None = "") -> AppServerClient:
    state = app.ensure()
    return AppServerClient(state.url, app.token() if token == "" else token, listeners=listeners)


def test_client_needs_the_token(app: AppServer) -> None:
    async def attempt() -> None:
        await client_for(app, token="wrong").connect()

    with pytest.raises(AppServerUnavailable, match="401"):
        asyncio.run(attempt())
    app.stop()


def test_client_errors_timeouts_and_connection_loss(app: AppServer) -> None:
    seen: list[object] = []

    async def scenario() -> None:
        client = client_for(app, listeners=[seen.append])
        await client.connect()
        assert client.info["codexHome"]
        with pytest.raises(AppServerError, match="refused no/such"):
            await client.call("no/such", {})
        listed = await client.call("thread/list", {})
        assert "data" in listed
        os.kill(app.state().pid, signal.SIGKILL)  # type: ignore[union-attr]
        with pytest.raises(AppServerUnavailable):
            await client.call("thread/list", {}, timeout=5)
        await client.close()

    asyncio.run(scenario())
    assert seen[-1] is None, "listeners hear that the connection is gone"
    app.stop()


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """``eventually`` for a test's own event loop: poll without blocking the loop."""
    deadline = time.monotonic() + timeout * SLOW
    while not predicate():
        assert time.monotonic() < deadline, f"condition not met within {timeout * SLOW:.1f} s"
        await asyncio.sleep(0.05)


def test_server_requests_reach_listeners_with_their_own_ids(app: AppServer, workdir: Path) -> None:
    events: list[Notification | ServerRequest | None] = []

    async def scenario() -> None:
        client = client_for(app, listeners=[events.append])
        await client.connect()
        thread = (await client.call("thread/start", {"cwd": str(workdir), "approvalPolicy": "untrusted"}))[
            "thread"
        ]
        await client.call(
            "turn/start", {"threadId": thread["id"], "input": [{"type": "text", "text": "<<bash:echo hi>>"}]}
        )
        await until(lambda: any(isinstance(e, ServerRequest) for e in events))
        (request,) = [e for e in events if isinstance(e, ServerRequest)]
        assert request.method == "item/commandExecution/requestApproval"
        await client.reply(request.id, {"decision": "accept"})
        await until(lambda: any(isinstance(e, Notification) and e.method == "turn/completed" for e in events))
        await client.close()

    asyncio.run(scenario())
    completed = [e for e in events if isinstance(e, Notification) and e.method == "turn/completed"]
    assert completed and completed[0].params["turn"]["status"] == "completed"
    app.stop()


def test_bridge_socket_is_private_and_refuses_unknown_operations(codex: FakeResponses) -> None:
    link = BridgeLink(Settings.from_env(), os.environ)
    assert link.call("ping")["pid"] > 0  # type: ignore[index]
    assert stat.S_IMODE(link.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(link.path.parent.stat().st_mode) == 0o700
    with pytest.raises(UsageError, match="unknown bridge operation 'format-disk'") as caught:
        link.call("format-disk")
    assert caught.value.exit_code == 2


def test_a_bridge_running_other_code_is_replaced(codex: FakeResponses) -> None:
    first = BridgeLink(Settings.from_env(), os.environ).call("ping")
    assert first is not None
    same = BridgeLink(Settings.from_env(), os.environ).call("ping")
    assert same is not None and same["pid"] == first["pid"], "the same code keeps its bridge"
    # A command of another version of dev-sessions (an upgrade) meets the running bridge.
    upgraded = BridgeLink(Settings.from_env(), os.environ, code="another version")
    second = upgraded.call("ping")
    assert second is not None and second["pid"] != first["pid"]
    eventually(lambda: gone(first["pid"]), timeout=10)


def gone(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return ") Z" in stat.read_text()
    except FileNotFoundError:
        return True
