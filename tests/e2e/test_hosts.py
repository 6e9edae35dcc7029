"""End to end on a remote host: the real Claude Code on "another machine" (a real sshd on 127.0.0.1,
whose login has its own home, state dir and tmux server, tests/fakes/sshd.py), driven from here with
``--host``; the host's own dev-sessions does the work."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev_sessions.config import Settings
from dev_sessions.errors import HostUnreachable
from dev_sessions.remote.host import SshTransport
from dev_sessions.remote.ssh import Ssh
from dev_sessions.selftest.fakes import anthropic
from dev_sessions.selftest.fakes.anthropic import FakeAnthropic
from dev_sessions.selftest.fakes.openai_responses import FakeResponses
from dev_sessions.selftest.offline import claude_env, prepare_claude_home, prepare_codex_home
from dev_sessions.usage import compact
from tests.conftest import (
    SLOW,
    DevSessions,
    _require,
    eventually,
    git_repo,
    one_line_error,
    serving_sshd,
    stop_codex,
)
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
        try:
            yield running
        finally:  # the host's tmux server goes whatever else failed
            try:
                stop_codex(running.remote.state)
            finally:
                subprocess.run(
                    ["tmux", "-L", running.remote.tmux_socket, "kill-server"],
                    capture_output=True,
                    check=False,
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


def waiting_there(server: int) -> bool:
    """Whether a call the host's server serves is waiting on the session's files (an inotify instance
    among its fds): its request has reached the host and the wait runs, not only its connection (a
    child is forked at the connection, before the client has its hello and sends the request)."""
    for child in calls_on(server):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{child}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{child}/fd/{fd}") == "anon_inode:inotify":
                        return True
    return False


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


def on_the_host(host: Sshd, *args: str) -> str:
    """The host's own dev-sessions, run there as a person logged in there would (not from here)."""
    done = subprocess.run(
        [str(host.remote.bin / "dev-sessions"), *args],
        env=host.remote.environ,
        cwd=host.remote.home,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_usage_of_a_remote_session_is_the_hosts_own(
    cli: DevSessions, host: Sshd, fake_anthropic: FakeAnthropic, claude: FakeAnthropic
) -> None:
    far = cli.ok("create", "-q", "--host", ALIAS).strip()
    near = cli.ok("create", "-q").strip()
    cli.ok("ask", far, "count these tokens", "--timeout", "120")
    cli.ok("ask", far, "think <<multi>>", "--timeout", "120")  # one API message over three entries
    cli.ok("ask", near, "count these tokens", "--timeout", "120")
    theirs = json.loads(on_the_host(host, "usage", far, "--json"))
    (row,) = theirs["sessions"]
    # The fake's counts (see e2e/test_usage.py): the prompts' and replies' characters, fixed caches.
    tokens = (row["input"], row["output"], row["cache_read"], row["cache_write"], row["turns"])
    assert tokens == (33, 39, 2 * anthropic.CACHE_READ, 2 * anthropic.CACHE_WRITE, 2)
    assert json.loads(cli.ok("usage", far, "--json")) == theirs
    listed = {r["championId"]: r["usage"] for r in json.loads(cli.ok("list", "--json"))}
    assert listed[far] == row
    assert json.loads(cli.ok("inspect", far))["usage"] == row
    both = json.loads(cli.ok("usage", "--json"))
    assert both["total"]["tokens"] == row["tokens"] + listed[near]["tokens"]
    # The text list: tokens for the session here; the remote one's would cost an ssh call more.
    table = [line.split() for line in cli.ok("list").splitlines()]
    column = table[0].index("TOKENS")
    rows = {cells[0]: cells for cells in table[1:]}
    assert rows[near][column] == compact(listed[near]["tokens"]) and rows[far][column] == "-"


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


def prompts_seen(cli: DevSessions, sid: str) -> list[str]:
    return [i["text"] for i in json.loads(cli.ok("logs", sid, "--json")) if i["role"] == "user"]


def test_messages_reach_a_remote_session_and_its_answers_come_back(
    cli: DevSessions, host: Sshd, fake_anthropic: FakeAnthropic, claude: FakeAnthropic
) -> None:
    remote = cli.ok("create", "-q", "--host", ALIAS).strip()
    # Asked from here, the session there answers its parent (here) as a model would: with the command.
    ask = "report back <<bash:dev-sessions msg send --to parent the-answer-is-42>>"
    mid = cli.ok("msg", "send", "--to", remote, ask).strip()
    (answer,) = json.loads(cli.ok("msg", "wait", "--timeout", "90", "--json", timeout=120))
    assert (answer["from"], answer["body"]) == (remote, "the-answer-is-42")
    assert answer["metadata"]["host"] == ALIAS
    # The host's deliverer put it into the session (as the host's own message), and says so here.
    (receipt,) = json.loads(cli.ok("msg", "status", mid, "--json"))["recipients"]
    assert receipt["via"] == "host" and receipt["state"] == "delivered", receipt
    there = str(receipt["reason"]).removeprefix(f"on {ALIAS} as message ")
    assert any(p.startswith(f"[dev-sessions] Message {there} from user") for p in prompts_seen(cli, remote))
    cli.ok("wait", remote, "--timeout", "60")

    # A session here writes to the one there; the answer lands in this session's conversation.
    local = cli.ok("create", "-q").strip()
    ping = f"ping <<bash:dev-sessions msg send --to {local} pong-from-{remote}>>"
    cli.ok("msg", "send", "--from", local, "--to", remote, ping)

    def pong() -> str | None:
        found = [p for p in prompts_seen(cli, local) if f"pong-from-{remote}" in p]
        return found[0] if found else None

    try:
        notice = str(eventually(pong, timeout=90))
    except AssertionError as err:  # say what each side's deliverer did (a rare miss in CI)
        logs = {"here": Settings.from_env().home, "there": host.remote.state}
        told = "".join(f"\n--- {side}:\n{tail(home / 'deliverer.log')}" for side, home in logs.items())
        raise AssertionError(f"{err}{told}") from None
    assert notice.startswith("[dev-sessions] Message ") and f" from {remote} " in notice
    cli.ok("wait", local, remote, "--timeout", "60")


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text().splitlines()[-lines:]) if path.exists() else "(no log)"


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


def test_a_remote_kill_says_what_became_of_the_worktree_there(cli: DevSessions, host: Sshd) -> None:
    repo = git_repo(host.remote.home / "repo")
    dirty, clean, kept = (
        cli.ok("create", "-q", "--host", ALIAS, "--worktree", "-p", str(repo)).strip() for _ in range(3)
    )
    place = {sid: host.remote.home / ".worktrees" / sid for sid in (dirty, clean, kept)}
    (place[dirty] / "wip.txt").write_text("not committed\n")
    killed = cli("kill", "--json", dirty, clean)
    assert killed.returncode == 0, killed.stderr
    kept_note = (
        f"{ALIAS}: worktree kept at {place[dirty]} (branch dev-sessions/{dirty}): 1 uncommitted change(s)"
    )
    assert json.loads(killed.stdout) == [
        {
            "id": dirty,
            "killed": True,
            "host": ALIAS,
            "worktree": {"path": str(place[dirty]), "kept": True},
            "note": kept_note,
        },
        {
            "id": clean,
            "killed": True,
            "host": ALIAS,
            "worktree": {"path": str(place[clean]), "kept": False},
            "note": None,
        },
    ]
    assert killed.stderr == f"{dirty}: {kept_note}\n"  # said here, with the host and the path there
    assert place[dirty].is_dir() and not place[clean].exists()
    assert dirty not in remote_store(host) and clean not in remote_store(host)
    # --keep-worktree reaches the host's own kill: even a clean worktree stays.
    kept_one = cli("kill", "--keep-worktree", kept)
    assert kept_one.returncode == 0 and kept_one.stdout == f"{kept}: killed\n", kept_one.stderr
    assert (
        kept_one.stderr == f"{kept}: {ALIAS}: worktree kept at {place[kept]} (branch dev-sessions/{kept})\n"
    )
    assert place[kept].is_dir()


def test_killing_the_shared_connection_mid_command(
    cli: DevSessions, host: Sshd, fake_anthropic: FakeAnthropic
) -> None:
    sid = cli.ok("create", "-q", "--host", ALIAS).strip()
    cli.ok("send", sid, "a long one <<hold>>")
    eventually(lambda: fake_anthropic.holding() == 1)  # the turn runs until the test lets it end
    ssh = Ssh(Settings.from_env(), ALIAS)
    master = ssh.master_pid()
    assert master is not None  # left by the commands above, and shared by the next one
    hello = SshTransport(Settings.from_env(), ALIAS).warm.hello()
    assert hello is not None  # the calls go through the master to the host's warm server
    # The calls before it are done there (a call's child can outlive its answer by a moment, and
    # would pass for the wait's): then the one call running is the wait.
    eventually(lambda: calls_on(hello["server"]) == [])
    waiter = cli.start("wait", sid, "--timeout", "300")
    eventually(lambda: len(calls_on(hello["server"])) == 1)  # the wait runs there, over the master
    # Its request has reached the host: killed before, the master would only have made the wait go
    # over a new connection (as it must: nothing was sent yet), and it would wait on (a CI run).
    eventually(lambda: waiting_there(hello["server"]))
    assert waiter.process.poll() is None
    os.kill(master, signal.SIGKILL)
    killed_at = time.monotonic()
    ended = waiter.finish(timeout=20)
    assert time.monotonic() - killed_at < 10 * SLOW  # at once, not when the turn or the timeout ends
    code = HostUnreachable(host=ALIAS, detail="").exit_code  # exit 1, from the table
    one_line_error(ended, code, f"{ALIAS}: no ssh connection (")
    assert ended.stdout == ""
    # The next command makes a new shared connection, and the session runs on there.
    assert cli.ok("status", sid).strip() == "working"
    assert ssh.master_pid() not in (None, master)
    fake_anthropic.release()
    done = cli("wait", sid, "--timeout", "120")
    assert done.returncode == 0 and done.stdout.startswith(f"{sid}: completed"), done.stderr


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
    eventually(lambda: calls_on(server) == [])  # the send's call is over there: the next one is the wait
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


def test_following_a_remote_session_live(cli: DevSessions, host: Sshd, tmp_path: Path) -> None:
    """``logs --follow --json``, ``wait --follow`` and the progress line of a session on the host,
    from here: the host's own follow, streamed, each event here while the turn still runs there."""
    from tests.e2e.test_follow import Screen, Terminal, drawn_lines, held_turn

    sid = cli.ok("create", "-q", "--host", ALIAS).strip()
    logs = cli.start("logs", sid, "--follow", "--json")
    eventually(lambda: '"kind":"status"' in logs.stdout or '"kind":"tokens"' in logs.stdout, 60)
    prompt, release = held_turn(tmp_path)  # the host is this machine: the file is the same there
    cli.ok("send", sid, prompt)
    following = cli.start("wait", sid, "--follow", "--timeout", "120")
    terminal = Terminal(["wait", sid, "--timeout", "120"], cli.cwd)
    try:
        eventually(lambda: "tool: Bash(" in following.stdout, 60)
        eventually(lambda: '"kind":"tool"' in logs.stdout, 60)
        eventually(lambda: any("Bash: " in line for line in drawn_lines(terminal.output)), 60)
    except AssertionError as err:
        raise AssertionError(f"{err}; wait --follow: {following.stdout!r}; logs: {logs.stdout!r}") from None
    assert "turn: turn completed" not in following.stdout  # the turn is still held there
    release.touch()
    waited = following.finish(120)
    assert waited.returncode == 0 and waited.stderr == "", waited
    *events, last = waited.stdout.splitlines()
    assert last.startswith(f"{sid}: completed in "), waited.stdout
    kinds = [line.split("] ", 1)[1].split(":", 1)[0] for line in events if line.startswith("[")]
    assert kinds == ["user", "tool", "result", "assistant", "turn"], events
    code, output = terminal.finish(120)
    screen = Screen()
    screen.feed(output)
    assert code == 0 and len(screen.text()) == 1 and screen.text()[0].startswith(f"{sid}: completed in ")
    eventually(lambda: '"kind":"turn"' in logs.stdout, 60)
    assert cli.ok("kill", sid) == f"{sid}: killed\n"
    followed = logs.finish(60)
    assert followed.returncode == 0 and followed.stderr == "", followed
    seen = [json.loads(line) for line in followed.stdout.splitlines()]
    talk = [e["kind"] for e in seen if e["kind"] in ("prompt", "tool", "result", "reply", "turn")]
    assert talk == ["prompt", "tool", "result", "reply", "turn"], seen
    assert (
        all(e["id"] == sid for e in seen) and seen[-1]["kind"] == "status" and seen[-1]["state"] == "exited"
    )
