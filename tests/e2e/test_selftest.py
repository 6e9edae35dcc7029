"""End to end: `dev-sessions selftest` with the real pinned agents, and with broken ones.

The selftest makes its own sandbox (under TMPDIR, here a fresh short directory per test) and its own
fake model server; the test checks what it prints and that it leaves nothing behind: no directory, no
process that carries the sandbox in its environment or command line (the tmux server, Claude, the Codex
bridge and app-server), no tmux socket. The caller's own state dir, home and tmux server are never
touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.conftest import SLOW, eventually, need, one_line_error
from tests.fakes.agents import AgentSet

pytestmark = pytest.mark.e2e

CHECKS = [
    "create", "send", "wait", "last-message", "status", "question", "permission", "interrupt", "kill",
    "cleanup",
]  # fmt: skip
# What the brief promises: under 60 s per agent on a 2-core machine (a generous bound, not a benchmark).
LIMIT_S = 60.0


class Run(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def tmpdir_root() -> Iterator[Path]:
    """The TMPDIR the selftest makes its sandbox in: short (its sockets live there) and this test's own."""
    root = Path(tempfile.mkdtemp(prefix="st-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def selftest_env(tmpdir_root: Path, **binaries: str) -> dict[str, str]:
    env = {**os.environ, "TMPDIR": str(tmpdir_root), **binaries}
    env.pop("DEV_SESSIONS_DEBUG", None)
    return env


def run_selftest(env: dict[str, str], *args: str) -> Run:
    proc = subprocess.run(
        [sys.executable, "-m", "dev_sessions", "selftest", *args],
        capture_output=True, text=True, env=env, timeout=180 * SLOW, check=False, cwd="/",
    )  # fmt: skip
    return Run(proc.returncode, proc.stdout, proc.stderr)


def carriers(needle: str) -> dict[int, str]:
    """Live processes whose environment or command line mentions ``needle``."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            seen = (entry / "environ").read_bytes() + (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if needle.encode() in seen and stat.rsplit(") ", 1)[1][0] != "Z":
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    return found


def assert_nothing_left(tmpdir_root: Path, sandbox: str | None = None, socket: str | None = None) -> None:
    assert list(tmpdir_root.iterdir()) == [], "the sandbox directory is left"
    if sandbox is not None:
        assert not Path(sandbox).exists()
    if socket is not None:
        assert not Path(socket).exists()
        found = subprocess.run(["tmux", "-S", socket, "list-sessions"], capture_output=True, check=False)
        assert found.returncode != 0, "a tmux server still answers on the sandbox's socket"
    assert carriers(str(tmpdir_root)) == {}, "processes of the sandbox still run"


def assert_caller_untouched() -> None:
    """The caller's own state dir, home and tmux server (the test's, from `isolated`) were not used."""
    assert not Path(os.environ["DEV_SESSIONS_HOME"]).exists()
    assert list(Path(os.environ["HOME"]).iterdir()) == []
    default = subprocess.run(
        ["tmux", "-L", os.environ["DEV_SESSIONS_TMUX_SOCKET"], "list-sessions"],
        capture_output=True,
        check=False,
    )
    assert default.returncode != 0


def binary_of(agents: AgentSet, cli: str) -> dict[str, str]:
    """The pinned binary of ``cli`` in this set, as the variable dev-sessions finds it by."""
    found = agents.claude() if cli == "claude" else agents.codex()
    version = agents.claude_version if cli == "claude" else agents.codex_version
    if found is None:
        need(f"the pinned {cli} {version} ({agents.name}) is not installed (run scripts/test)")
    return {f"DEV_SESSIONS_{cli.upper()}_BIN": str(found)}


@pytest.mark.parametrize("cli", ["claude", "codex"])
def test_selftest_passes_with_the_pinned_agent_and_leaves_nothing(
    cli: str, agents: AgentSet, tmpdir_root: Path
) -> None:
    env = selftest_env(tmpdir_root, **binary_of(agents, cli))
    binary = next(iter(binary_of(agents, cli).values()))
    version = agents.claude_version if cli == "claude" else agents.codex_version

    shown = run_selftest(env, "--cli", cli)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert shown.stderr == ""
    header, *lines, summary = shown.stdout.splitlines()
    assert header.startswith(f"{cli} ") and version in header and f" at {binary} " in header
    assert [line.split()[0] for line in lines] == CHECKS
    for line in lines:
        assert line.split(maxsplit=1)[1] == "ok", line
    assert summary.startswith(f"{cli}: ok in ")
    assert float(summary.split()[-2]) < LIMIT_S * SLOW
    assert_nothing_left(tmpdir_root)

    as_json = run_selftest(env, "--cli", cli, "--json")
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["ok"] is True
    (agent,) = report["agents"]
    assert {k: agent[k] for k in ("cli", "binary", "ok", "placement")} == {
        "cli": cli, "binary": binary, "ok": True, "placement": "tested",
    }  # fmt: skip
    assert version in agent["version"]
    assert agent["seconds"] < LIMIT_S * SLOW
    assert [c["check"] for c in agent["checks"]] == CHECKS
    for check in agent["checks"]:
        assert check["result"] == "ok", check
    assert Path(agent["sandbox"]).parent == tmpdir_root
    assert_nothing_left(tmpdir_root, agent["sandbox"], agent["tmuxSocket"])
    assert_caller_untouched()


class Broken(NamedTuple):
    test_id: str
    cli: str
    says: str


BROKEN = [
    # tmux sometimes marks the pane dead before it knows the exit status: "(exit status 1)" may be missing.
    Broken("claude", "claude", "claude did not start: claude exited"),
    Broken("codex", "codex", "did not start: exit status 1: broken on purpose"),
]


@pytest.mark.parametrize("case", BROKEN, ids=[c.test_id for c in BROKEN])
def test_a_broken_agent_fails_at_create(case: Broken, tmp_path: Path, tmpdir_root: Path) -> None:
    broken = tmp_path / "bin" / case.cli
    broken.parent.mkdir()
    broken.write_text('#!/bin/sh\necho "broken on purpose" >&2\nexit 1\n')
    broken.chmod(0o755)
    env = selftest_env(tmpdir_root, **{f"DEV_SESSIONS_{case.cli.upper()}_BIN": str(broken)})
    result = run_selftest(env, "--cli", case.cli)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"{case.cli} (no version: --version failed) at {broken} ({_tested(case.cli)})"
    create = next(line for line in lines if line.split()[0] == "create")
    assert create.split(maxsplit=1)[1].startswith("FAILED: `dev-sessions create --cli")
    assert case.says in create and "broken on purpose" in create
    assert all(line.split(maxsplit=1)[1] == "FAILED: not run: create failed" for line in lines[2:-2]), lines
    assert lines[-2].split() == ["cleanup", "ok"]
    failed = len(CHECKS) - 1  # all but cleanup
    assert lines[-1].startswith(f"{case.cli}: {failed} of {len(CHECKS)} FAILED in ")
    assert_nothing_left(tmpdir_root)


def _tested(cli: str) -> str:
    from dev_sessions.compat import TESTED

    low, high = TESTED[cli]
    return f"tested: {low} to {high}"


def test_a_missing_agent_fails_and_all_skips_it(tmpdir_root: Path) -> None:
    env = selftest_env(tmpdir_root, DEV_SESSIONS_CLAUDE_BIN="/nowhere/claude")
    named = run_selftest(env, "--cli", "claude", "--json")
    assert named.returncode == 1
    (agent,) = json.loads(named.stdout)["agents"]
    assert agent["checks"] == [
        {
            "check": "binary",
            "result": "failed",
            "detail": "DEV_SESSIONS_CLAUDE_BIN=/nowhere/claude: not found",
        }
    ]
    # --cli all (the default) tests what is installed, and says what it skipped.
    env["DEV_SESSIONS_CODEX_BIN"] = "/nowhere/codex"
    nothing = run_selftest(env)
    one_line_error(nothing, 1, "claude and codex: not found; install one")
    assert_nothing_left(tmpdir_root)


def test_a_bad_cli_value_is_one_line_and_exit_2(tmpdir_root: Path) -> None:
    result = run_selftest(selftest_env(tmpdir_root), "--cli", "grok")
    one_line_error(result, 2, "--cli 'grok': choose claude, codex or all")
    assert result.stdout == ""


@pytest.mark.parametrize("cli", ["claude", "codex"])
def test_ctrl_c_stops_it_and_leaves_nothing(cli: str, agents: AgentSet, tmpdir_root: Path) -> None:
    env = selftest_env(tmpdir_root, **binary_of(agents, cli))
    # As a terminal's Ctrl-C does: SIGINT to the whole process group (the selftest and the command it
    # runs at that moment), once the agent runs (its session was created and given text).
    process = subprocess.Popen(
        [sys.executable, "-m", "dev_sessions", "selftest", "--cli", cli],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd="/",
        start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None
    said = []
    for line in process.stdout:
        said.append(line)
        if line.split()[:2] == ["send", "ok"]:
            break
    assert said and said[-1].split()[:2] == ["send", "ok"], said
    eventually(lambda: carriers(str(tmpdir_root)))  # its agent (and for Codex the app-server) runs
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60 * SLOW)
    assert process.returncode == 130, out + err
    assert err == "dev-sessions: selftest: interrupted; what it started is stopped and removed\n"
    assert_nothing_left(tmpdir_root)
