"""Following a session on a remote host (``logs --follow`` of a ``create --host`` session), against a
real sshd (tests/fakes/sshd.py): the host's own ``follow``, streamed back a line per event as it
happens, through the host's warm call server (forwarded socket) or, where the host's sshd refuses
forwarding, over plain ssh.

The agent on the host is tests/fakes/fake_claude.py (it only draws Claude's screen) and the test
writes its transcript by hand, a line at a time, where the host's dev-sessions reads it: so each event
is known to have happened there before the test looks for it here, and nothing waits on a clock.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev_sessions.claude.facts import transcript_path
from dev_sessions.config import Settings
from dev_sessions.remote.ssh import Ssh
from tests.conftest import FAKE_CLAUDE, DevSessions, Running, eventually, serving_sshd
from tests.fakes.sshd import ALIAS, Sshd


def tmux_stopped(host: Sshd) -> None:
    import subprocess

    subprocess.run(["tmux", "-L", host.remote.tmux_socket, "kill-server"], capture_output=True, check=False)


@pytest.fixture(params=[True, False], ids=["warm-socket", "plain-ssh"])
def host(request: pytest.FixtureRequest, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sshd]:
    """The remote host, its agent the fake claude; with forwarding (the warm path) or without."""
    extra = {"DEV_SESSIONS_CLAUDE_BIN": str(FAKE_CLAUDE)}
    with serving_sshd(isolated, monkeypatch, extra=lambda home: extra, forwarding=request.param) as running:
        try:
            yield running
        finally:
            tmux_stopped(running)


class Transcript:
    """The transcript of a session on the host, written the way Claude writes it: a line at a time."""

    def __init__(self, host: Sshd, session_id: str) -> None:
        records = json.loads((host.remote.state / "sessions.json").read_text())["sessions"]
        (record,) = [r for r in records if r["championId"] == session_id]
        self.session = record["internalId"]
        config = Path(record.get("claudeConfigDir") or host.remote.home / ".claude")
        self.path = transcript_path(config, record["path"], self.session)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.seconds = 0

    def write(self, entry: dict[str, object]) -> None:
        self.seconds += 1
        stamp = f"2026-12-01T10:00:{self.seconds:02d}.000Z"
        line = {"sessionId": self.session, "isSidechain": False, "timestamp": stamp, **entry}
        with self.path.open("a") as out:
            out.write(json.dumps(line) + "\n")

    def prompt(self, text: str) -> None:
        self.write({"type": "user", "message": {"role": "user", "content": text}})

    def tool(self, name: str, command: str) -> None:
        block = {"type": "tool_use", "id": "toolu_1", "name": name, "input": {"command": command}}
        self.write({"type": "assistant", "message": {"role": "assistant", "content": [block]}})

    def result(self, text: str) -> None:
        block = {"type": "tool_result", "tool_use_id": "toolu_1", "content": text}
        self.write({"type": "user", "message": {"role": "user", "content": [block]}})

    def reply(self, text: str) -> None:
        block = {"type": "text", "text": text}
        self.write({"type": "assistant", "message": {"role": "assistant", "content": [block]}})

    def turn_end(self) -> None:
        self.write({"type": "system", "subtype": "turn_duration", "durationMs": 2500})


def events(follower: Running) -> list[dict[str, object]]:
    return [json.loads(line) for line in follower.stdout.splitlines() if line.startswith("{")]


def talk(follower: Running) -> list[tuple[object, object]]:
    return [
        (e["kind"], e.get("text") or e.get("target") or e.get("outcome"))
        for e in events(follower)
        if e["kind"] in ("prompt", "reply", "tool", "result", "turn")
    ]


def on_the_host(host: Sshd) -> list[int]:
    """The Python processes of the host's dev-sessions now, but its warm call server (which runs
    there, forwarded to here or not)."""

    def serve(pid: int | str) -> bool:
        try:
            return b"dev_sessions.remote.serve" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    def server(pid: int) -> bool:  # the server itself, not a call it forked (the same command line)
        try:
            parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            return False
        return serve(pid) and not serve(parent)

    return [pid for pid in host.remote.running() if not server(pid)]


def test_logs_follow_of_a_remote_session_streams_each_event_as_it_lands(cli: DevSessions, host: Sshd) -> None:
    sid = cli.ok("create", "-q", "--host", ALIAS).strip()
    transcript = Transcript(host, sid)
    transcript.prompt("before the follow")
    follower = cli.start("logs", sid, "--follow", "--json")
    eventually(lambda: ("prompt", "before the follow") in talk(follower), 30)  # the backlog
    # Each event is here while the next has not happened there yet: streamed, not at the end.
    steps = [
        (lambda: transcript.prompt("run the tests"), ("prompt", "run the tests")),
        (lambda: transcript.tool("Bash", "make test"), ("tool", "make test")),
        (lambda: transcript.result("12 passed"), ("result", "12 passed")),
        (lambda: transcript.reply("all green"), ("reply", "all green")),
        (transcript.turn_end, ("turn", "completed")),
    ]
    for write, expected in steps:
        write()
        eventually(lambda expected=expected: expected in talk(follower), 30)  # type: ignore[misc]
    assert follower.process.poll() is None
    cli.ok("kill", sid)
    ended = follower.finish(30)
    assert ended.returncode == 0 and ended.stderr == "", ended
    assert talk(follower) == [("prompt", "before the follow")] + [expected for _, expected in steps]
    assert all(e["id"] == sid for e in events(follower))
    last = events(follower)[-1]
    assert (last["kind"], last["state"]) == ("status", "exited")  # the host's follow ended: so did ours
    eventually(lambda: on_the_host(host) == [], 30)  # and left nothing running there


def test_since_leaves_out_the_remote_backlog_before_then(cli: DevSessions, host: Sshd) -> None:
    sid = cli.ok("create", "-q", "--host", ALIAS).strip()
    transcript = Transcript(host, sid)
    transcript.prompt("old")  # 10:00:01
    transcript.prompt("new")  # 10:00:02
    follower = cli.start("logs", sid, "--follow", "--since", "2026-12-01T10:00:02Z")
    eventually(lambda: "user: new" in follower.stdout, 30)
    cli.ok("kill", sid)
    ended = follower.finish(30)
    assert ended.returncode == 0, ended
    assert "old" not in ended.stdout and ended.stdout.startswith("[10:00:02] user: new\n"), ended.stdout


def test_a_follow_cut_off_from_the_host_is_one_line_that_says_from_when_to_go_on(
    cli: DevSessions, host: Sshd
) -> None:
    sid = cli.ok("create", "-q", "--host", ALIAS).strip()
    transcript = Transcript(host, sid)
    transcript.prompt("seen before the cut")
    follower = cli.start("logs", sid, "--follow")
    eventually(lambda: "user: seen before the cut" in follower.stdout, 30)
    eventually(lambda: len(on_the_host(host)) == 1, 30)  # the host's follow, and nothing else
    master = Ssh(Settings.from_env(), ALIAS).master_pid()
    assert master is not None
    os.kill(master, signal.SIGKILL)
    ended = follower.finish(30)
    assert ended.returncode == 1, ended
    assert ended.stderr.count("\n") == 1 and "Traceback" not in ended.stderr, ended.stderr
    assert f"{ALIAS}: no ssh connection (" in ended.stderr
    assert f"follow again with `dev-sessions logs --follow {sid} --since 2026-12-01T10:00:01.000Z`" in (
        ended.stderr
    )
    eventually(lambda: on_the_host(host) == [], 30)  # the follow there saw its reader go, and went
    # Going on from there: what was said since, nothing lost; the session is still there.
    transcript.prompt("said while cut off")
    again = cli.start("logs", sid, "--follow", "--since", "2026-12-01T10:00:01.000Z")
    eventually(lambda: "user: said while cut off" in again.stdout, 30)
    cli.ok("kill", sid)
    assert again.finish(30).stdout.splitlines()[:2] == [
        "[10:00:01] user: seen before the cut",
        "[10:00:02] user: said while cut off",
    ]


def test_ctrl_c_of_a_remote_follow_stops_it_on_the_host(cli: DevSessions, host: Sshd) -> None:
    sid = cli.ok("create", "-q", "--host", ALIAS).strip()
    Transcript(host, sid).prompt("hello")
    follower = cli.start("logs", sid, "--follow")
    eventually(lambda: "user: hello" in follower.stdout, 30)
    eventually(lambda: len(on_the_host(host)) == 1, 30)
    follower.process.send_signal(signal.SIGINT)
    stopped = follower.finish(30)
    assert stopped.returncode == 130 and "Traceback" not in stopped.stderr, stopped
    eventually(lambda: on_the_host(host) == [], 30)  # not left following until the next event there
    cli.ok("kill", sid)
