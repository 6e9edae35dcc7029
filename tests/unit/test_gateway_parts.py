"""Gateway pieces without a network: the wire codec, path translation, service files."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dev_sessions.backend import Dialog, Option, Started, Status, WaitResult
from dev_sessions.config import Settings
from dev_sessions.errors import ReportedError, UsageError
from dev_sessions.gateway.client import host_path
from dev_sessions.gateway.protocol import CALLS, decode, encode
from dev_sessions.gateway.service import (
    installed_port,
    render_launchd,
    render_systemd,
    service_argv,
    service_env,
)
from dev_sessions.messaging.records import Message, Receipt
from dev_sessions.results import Created, Goal, Inspection
from dev_sessions.store import Session
from tests.conftest import need


def test_library_values_cross_the_wire_unchanged() -> None:
    dialog = Dialog("Which?", ("ctx",), (Option(1, "A", "a"), Option(2, "B")), 1, Option(2, "B"))
    values = [
        Created(
            Session(
                id="fizz-top",
                internal_id="u",
                cli="claude",
                path="/p",
                last_send={"offset": 3},
                extra={"x": [1]},
            ),
            Started(Status("waiting_for_input", dialog), {"tmux": "dev-fizz-top"}),
        ),
        [WaitResult("fizz-top", "completed", 1.5), WaitResult("lux-mid", "failed", 2.0, error="boom")],
        (WaitResult("a", "idle", 0.0), ["hello", "world"]),
        (Message(1, "a", None, "high", "body", {"k": 1}, None, 1, "t"), [Receipt("b", "read", "mailbox")]),
        [("agent", "2026")],
        Goal.from_record({"objective": "ship", "status": "active", "tokenBudget": 5, "tokensUsed": 2}),
        Inspection(
            Session(id="a", internal_id="u", cli="codex", path="/p"), Status("idle"), {"bridge": None}
        ),
        {"status": Status("idle"), "nested": {"list": [1, None, True]}},
        None,
        "plain",
    ]
    for value in values:
        assert decode(encode(value)) == value


@pytest.mark.parametrize(
    "name", ["Popen", "subprocess:Popen", "dev_sessions.launch:main", "dev_sessions.nowhere:X", "os:system"]
)
def test_unknown_types_are_refused(name: str) -> None:
    with pytest.raises(ReportedError, match="does not know"):
        decode({"$": name, "args": ["rm"]})


def test_the_api_exposes_only_named_calls() -> None:
    assert set(CALLS) == {"sessions", "messages"}
    assert "store" not in CALLS["sessions"] and "backend" not in CALLS["sessions"]
    assert CALLS["sessions"]["create"].paths == {"path"}
    assert CALLS["sessions"]["wait"].long and CALLS["messages"]["wait"].long


@pytest.fixture
def workspace(tmp_path: Path) -> Settings:
    (tmp_path / "ws" / "repo" / "src").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    return Settings.from_env({"CONTAINER_WORKSPACE": str(tmp_path / "ws"), "HOST_PATH": "/home/me/project"})


def test_workspace_paths_map_to_the_host(workspace: Settings, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert host_path(str(ws), workspace) == "/home/me/project"
    assert host_path(str(ws / "repo" / "src"), workspace) == "/home/me/project/repo/src"
    assert host_path(str(ws / "repo" / ".." / "repo"), workspace) == "/home/me/project/repo"


@pytest.mark.parametrize("escape", ["outside", "ws/../outside", "ws/link-out"])
def test_paths_leaving_the_workspace_are_refused(workspace: Settings, tmp_path: Path, escape: str) -> None:
    (tmp_path / "ws" / "link-out").symlink_to(tmp_path / "outside")
    with pytest.raises(UsageError, match="outside the container workspace"):
        host_path(str(tmp_path / escape), workspace)


def test_host_path_must_be_known(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    with pytest.raises(UsageError, match="HOST_PATH"):
        host_path(str(tmp_path / "ws"), Settings.from_env({"CONTAINER_WORKSPACE": str(tmp_path / "ws")}))


AWKWARD = "/opt/my tools/py$thon%3"


def test_systemd_unit_quotes_every_word(tmp_path: Path) -> None:
    argv = [*service_argv(7000, [], python=AWKWARD), "--bind", r'odd "$arg" \ 5%']
    unit = render_systemd(argv, {"PATH": "/usr/bin:/bin", "DEV_SESSIONS_HOME": '/h/100% "sure" $HOME'})
    assert 'ExecStart="/opt/my tools/py$thon%%3" "-m" "dev_sessions" "gateway" "--port" "7000"' in unit
    assert r'"--bind" "odd \"$$arg\" \\ 5%%"' in unit
    assert r'Environment="DEV_SESSIONS_HOME=/h/100%% \"sure\" $HOME"' in unit
    path = tmp_path / "dev-sessions-gateway.service"
    path.write_text(unit)
    assert installed_port(path, "systemd") == 7000


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="systemd runs on Linux only")
def test_systemd_reads_the_quoting_back(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        need("systemd-analyze is not installed (scripts/test installs Debian's systemd package)")
    # An executable with an awkward name must be found where the unit says it is, and the
    # arguments read back as they were given.
    awkward = tmp_path / "my tools" / "py$thon%3"
    awkward.parent.mkdir()
    awkward.write_text("#!/bin/sh\n")
    awkward.chmod(0o755)
    checked = tmp_path / "checked.service"
    checked.write_text(
        render_systemd(
            [*service_argv(7000, [], python=str(awkward)), "--bind", r'odd "$arg" \ 5%'], {"X": 'a "b" %c'}
        )
    )
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(checked)], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stderr
    broken = tmp_path / "broken.service"
    broken.write_text("[Service]\nExecStart=relative/path\n")
    refused = subprocess.run(
        ["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, check=False
    )
    assert refused.returncode != 0, "the check can fail"


def test_an_executable_systemd_cannot_run_is_refused() -> None:
    with pytest.raises(UsageError, match="quotes or backslashes"):
        render_systemd(service_argv(1, [], python='/opt/"py"'), {})


def test_launchd_plist_round_trips(tmp_path: Path) -> None:
    argv = service_argv(6767, [], python=AWKWARD)
    data = render_launchd(argv, {"PATH": "/usr/bin"}, tmp_path / "gw.log")
    plist = plistlib.loads(data)
    assert plist["ProgramArguments"] == argv
    assert plist["Label"] == "dev.dev-sessions.gateway"
    assert plist["EnvironmentVariables"] == {"PATH": "/usr/bin"}
    path = tmp_path / "x.plist"
    path.write_bytes(data)
    assert installed_port(path, "launchd") == 6767


def test_no_secrets_go_into_the_service() -> None:
    env = service_env(
        {"PATH": "/bin", "ANTHROPIC_API_KEY": "sk-x", "DEV_SESSIONS_GATEWAY_TOKEN": "t", "HOME": "/h"}
    )
    assert env == {"PATH": "/bin"}
