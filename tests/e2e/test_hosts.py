"""End to end on a remote host: the real Claude Code on "another machine" (a real sshd on 127.0.0.1,
whose login has its own home, state dir and tmux server, tests/fakes/sshd.py), driven from here with
``--host``; the host's own dev-sessions does the work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev_sessions.config import Settings
from dev_sessions.remote.host import SshTransport
from dev_sessions.selftest.fakes.anthropic import FakeAnthropic
from dev_sessions.selftest.fakes.openai_responses import FakeResponses
from dev_sessions.selftest.offline import claude_env, prepare_claude_home, prepare_codex_home
from tests.conftest import DevSessions, _require, eventually, git_repo, serving_sshd, stop_codex
from tests.fakes.agents import AgentSet
from tests.fakes.sshd import ALIAS, UNREACHABLE, Sshd

pytestmark = pytest.mark.e2e


@pytest.fixture
def host(
    agents: AgentSet,
    fake_anthropic: FakeAnthropic,
    fake_responses: FakeResponses,
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Sshd]:
    """The remote host, with the real claude and codex of this agent set against the fake model servers."""
    claude = _require(agents.claude(), f"claude {agents.claude_version} ({agents.name})")
    codex = _require(agents.codex(), f"codex {agents.codex_version} ({agents.name})")

    def agents_there(home: Path) -> dict[str, str]:
        return {
            **claude_env(home, fake_anthropic.url),
            **prepare_codex_home(home / ".codex-home", fake_responses.url),
            "DEV_SESSIONS_CLAUDE_BIN": str(claude),
            "DEV_SESSIONS_CODEX_BIN": str(codex),
        }

    with serving_sshd(isolated, monkeypatch, extra=agents_there) as running:
        prepare_claude_home(running.remote.home, trusted=running.remote.home)
        yield running
        stop_codex(running.remote.state)
        subprocess.run(
            ["tmux", "-L", running.remote.tmux_socket, "kill-server"], capture_output=True, check=False
        )


def calls_on(server: int) -> list[int]:
    """The calls the host's call server is serving now (its live children)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(server) and fields[0] != "Z":
            found.append(int(entry))
    return found


def remote_store(host: Sshd) -> dict[str, dict[str, object]]:
    path = host.remote.state / "sessions.json"
    records = json.loads(path.read_text())["sessions"] if path.exists() else []
    return {r["championId"]: r for r in records}


def test_a_session_on_a_remote_host(
    cli: DevSessions, host: Sshd, fake_anthropic: FakeAnthropic, workdir: Path
) -> None:
    sid = cli.ok("create", "-q", "--host", ALIAS).strip()
    there = remote_store(host)[sid]
    assert there["path"] == str(host.remote.home)  # no --path: the host's home
    here = {r["championId"]: r for r in json.loads(cli.ok("list", "--json"))}[sid]
    assert here["host"] == ALIAS and here["internalId"] == there["internalId"]
    # A megabyte, byte-exact, through a file: on stdin over ssh, never in an argument.
    body = "".join(f"line {n}: tabs\tquotes \"' $(x) `y` ; \u00e9\u2603\n" for n in range(20000))[: 1 << 20]
    source = workdir / "body.txt"
    source.write_text(body)
    cli.ok("send", sid, "--file", str(source))
    waited = cli("wait", sid, "--timeout", "120")
    assert waited.returncode == 0 and waited.stdout.startswith(f"{sid}: completed"), waited.stderr
    assert fake_anthropic.prompts()[-1] == body.rstrip("\n") or fake_anthropic.prompts()[-1] == body
    assert cli.ok("ask", sid, "and a short one", "--timeout", "120") == "and a short one\n"
    assert cli.ok("last-message", sid) == "and a short one\n"
    assert cli.ok("status", sid).strip() == "idle"
    facts = json.loads(cli.ok("inspect", sid))
    assert facts["session"]["host"] == ALIAS and facts["host"]["target"] == ALIAS
    assert facts["status"]["status"] == "idle" and facts["tmux"]["session"] == f"dev-{sid}"
    items = json.loads(cli.ok("logs", sid, "--json"))
    assert [(i["role"], i["text"]) for i in items if i["text"] == "and a short one"][-2:] == [
        ("user", "and a short one"),
        ("assistant", "and a short one"),
    ]
    table = cli.ok("list")
    assert "HOST" in table.splitlines()[0] and ALIAS in table
    killed = cli("kill", sid)
    assert killed.returncode == 0 and killed.stdout == f"{sid}: killed\n", killed.stderr
    assert sid not in remote_store(host)
    assert json.loads(cli.ok("list", "--json")) == []


def test_wait_across_hosts_and_an_unreachable_one(
    cli: DevSessions, host: Sshd, fake_anthropic: FakeAnthropic, claude: FakeAnthropic
) -> None:
    remote = cli.ok("create", "-q", "--host", ALIAS).strip()
    local = cli.ok("create", "-q").strip()
    assert remote != local
    for sid in (remote, local):
        cli.ok("send", sid, f"hello from {sid}")
    waited = cli("wait", remote, local, "--timeout", "120")
    assert waited.returncode == 0, waited.stderr
    assert [line.split(":")[0] for line in waited.stdout.splitlines()] == [remote, local]
    refused = cli("create", "--host", UNREACHABLE)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert f"{UNREACHABLE}: no ssh connection" in refused.stderr
    assert {r["championId"] for r in json.loads(cli.ok("list", "--json"))} == {remote, local}
    # The host goes away: list says so at once and still lists the local session.
    host.process.send_signal(signal.SIGTERM)
    host.process.wait(10)
    for control in (Path(os.environ["DEV_SESSIONS_HOME"]) / "ssh").glob("cm-*"):
        subprocess.run(["ssh", "-S", str(control), "-O", "exit", "any"], capture_output=True, check=False)
    rows = {r["championId"]: r for r in json.loads(cli.ok("list", "--json"))}
    assert rows[remote]["live"] == "unreachable" and rows[local]["live"] == "idle"
    refused = cli("kill", remote)
    assert refused.returncode == 1 and f"{ALIAS}: no ssh connection" in refused.stderr
    assert refused.stderr.count("\n") == 1
    forgotten = cli("kill", "--forget", remote)
    assert forgotten.returncode == 0 and forgotten.stdout == f"{remote}: killed\n"
    assert f"{remote}: forgotten here; {ALIAS} did not answer" in forgotten.stderr
    assert [r["championId"] for r in json.loads(cli.ok("list", "--json"))] == [local]


def test_doctor_checks_a_host(cli: DevSessions, host: Sshd, agents: AgentSet) -> None:
    checks = {c["check"]: c for c in json.loads(cli.ok("doctor", "--host", ALIAS, "--json"))}
    assert checks[f"{ALIAS}: dev-sessions over ssh"]["level"] == "ok"
    assert checks[f"{ALIAS}: tmux"]["level"] == "ok"
    assert checks[f"{ALIAS}: claude"]["message"].startswith(agents.claude_version)
    down = cli("doctor", "--host", UNREACHABLE)
    assert (
        down.returncode == 1
        and f"fail  {UNREACHABLE}: dev-sessions over ssh: {UNREACHABLE}: no ssh" in down.stdout
    )


def test_a_message_to_a_remote_session_is_refused_in_one_line(cli: DevSessions, host: Sshd) -> None:
    sid = cli.ok("create", "-q", "--host", ALIAS).strip()
    refused = cli("msg", "send", "--to", sid, "hello")
    assert refused.returncode == 2 and refused.stderr == (
        f"dev-sessions: {sid}: runs on {ALIAS}; messages to a session on another host are not there yet\n"
    )


def test_codex_and_a_worktree_on_a_remote_host(
    cli: DevSessions, host: Sshd, fake_responses: FakeResponses
) -> None:
    repo = host.remote.home / "repo"
    git_repo(repo)
    sid = cli.ok("create", "--cli", "codex", "-q", "--host", ALIAS, "--worktree", "-p", str(repo)).strip()
    there = remote_store(host)[sid]
    assert (
        there["worktree"] == str(host.remote.home / ".worktrees" / sid)
        and there["branch"] == f"dev-sessions/{sid}"
    )
    assert cli.ok("ask", sid, "hello codex over ssh", "--timeout", "120") == "hello codex over ssh\n"
    assert cli.ok("status", sid).strip() == "idle"
    assert cli.ok("kill", sid) == f"{sid}: killed\n"
    assert not (host.remote.home / ".worktrees" / sid).exists()  # clean: removed there


def test_commands_to_a_host_go_to_its_warm_server_and_ctrl_c_of_a_wait_stops_it_there(
    cli: DevSessions, host: Sshd, fake_anthropic: FakeAnthropic
) -> None:
    sid = cli.ok("create", "-q", "--host", ALIAS).strip()  # over ssh; then the warm path is made
    started = host.remote.started()
    hello = SshTransport(Settings.from_env(), ALIAS).warm.hello()
    assert hello is not None
    server = hello["server"]
    cli.ok("send", sid, "<<hold:warm>> held over the warm path")
    eventually(lambda: fake_anthropic.holding("warm") == 1)
    waiting = cli.start("wait", sid, "--timeout", "120")
    eventually(lambda: len(calls_on(server)) == 1)  # the wait, forked by the server
    waiting.process.send_signal(signal.SIGINT)
    stopped = waiting.finish()
    assert stopped.returncode == 130 and "Traceback" not in stopped.stderr, stopped
    eventually(lambda: calls_on(server) == [])  # the wait there stopped with it
    assert cli.ok("status", sid).strip() == "working"
    fake_anthropic.release("warm")
    waited = cli("wait", sid, "--timeout", "120")
    assert waited.returncode == 0 and waited.stdout.startswith(f"{sid}: completed"), waited
    assert cli.ok("last-message", sid) == "<<hold:warm>> held over the warm path\n"
    assert cli.ok("status", sid).strip() == "idle"
    # None of these started a process on the host: its server answered them all.
    assert host.remote.started() == started and calls_on(server) == []
    again = SshTransport(Settings.from_env(), ALIAS).warm.hello()
    assert again is not None and again["server"] == server  # the same server all along
    assert cli.ok("kill", sid) == f"{sid}: killed\n"
