"""Status from structured signals first, the screen last: Claude's hooks and state file against a real pane.

The pane (a real tmux pane on a private server) shows a recorded screen, or one no parser has ever
seen; the events file holds hook payloads recorded from the real Claude Code (tests/fixtures/hooks/);
Claude's own state file says what it does. The backend must decide from the structured signals, use
the screen only to render what it can read, and say which source decided.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from libtmux.server import Server

from dev_sessions.claude import wiring
from dev_sessions.claude.backend import ClaudeBackend
from dev_sessions.config import Settings
from dev_sessions.store import Session
from dev_sessions.tmux import Tmux
from tests.conftest import eventually

FIXTURES = Path(__file__).parents[1] / "fixtures"
UUID = "5b35cd2d-8236-46aa-9c89-677ef59c8d46"
NEVER_SEEN = """
  ╔═══ A dialog drawn as no version of Claude Code ever drew one ═══╗
  ║  Q: Pick something                                               ║
  ║  [ A ]   [ B ]   [ C ]                                           ║
  ╚══════════════════════════════════════════════════════════════════╝
   (press a letter)
"""


def hooks(version: str, scenario: str, until: str | None = None) -> bytes:
    """Recorded hook payloads, up to and including the first ``until`` event."""
    out = []
    for line in (FIXTURES / "hooks" / version / f"{scenario}.jsonl").read_text().splitlines():
        out.append(line)
        if until is not None and json.loads(line)["hook_event_name"] == until:
            break
    return ("\n".join(out) + "\n").encode()


class Rig:
    def __init__(self, server: Server, tmp_path: Path) -> None:
        self.home = tmp_path / "state"
        self.config = tmp_path / "claude-config"
        self.settings = Settings.from_env({**os.environ, "DEV_SESSIONS_HOME": str(self.home)})
        self.backend = ClaudeBackend(self.settings)
        self.session = Session(
            id="fizz-top", internal_id=UUID, cli="claude", path=str(tmp_path), delivery="editor",
            tmux_socket=server.socket_name, claude_config_dir=str(self.config),
        )  # fmt: skip
        self.tmux = Tmux(server.socket_name)
        self.tmp = tmp_path

    def show(self, screen: str) -> int:
        """A pane that shows ``screen``; its pid (the 'Claude' process of the state file)."""
        (self.tmp / "screen.txt").write_text(screen)
        self.tmux.new_session(
            "dev-fizz-top", cwd=str(self.tmp), command=["sh", "-c", "cat screen.txt; exec sleep 60"]
        )
        eventually(lambda: (snap := self.tmux.snapshot("dev-fizz-top")) and snap[1].strip())
        return self.tmux.panes()["dev-fizz-top"].pid

    def state(self, pid: int, status: str, waiting_for: str = "") -> None:
        directory = self.config / "sessions"
        directory.mkdir(parents=True, exist_ok=True)
        state = {"pid": pid, "sessionId": UUID, "status": status, "waitingFor": waiting_for}
        (directory / f"{pid}.json").write_text(json.dumps(state))

    def events(self, data: bytes) -> None:
        path = wiring.events_path(self.home, "fizz-top")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture
def rig(tmux_server: Server, tmp_path: Path) -> Rig:
    return Rig(tmux_server, tmp_path)


@pytest.mark.parametrize("version", ["2.1.197", "2.1.332"])
def test_a_question_on_a_screen_never_seen_is_read_from_the_hooks(rig: Rig, version: str) -> None:
    pid = rig.show(NEVER_SEEN)
    rig.state(pid, "waiting", "input needed")
    rig.events(hooks(version, "ask", until="PermissionRequest"))
    status = rig.backend.status(rig.session)
    assert status.state == "waiting_for_input"
    assert status.source == "hooks"
    assert status.dialog is not None
    assert status.dialog.question == "Which colour?"
    assert [(o.number, o.label, o.description) for o in status.dialog.options] == [
        (1, "Red", "The colour red"), (2, "Blue", "The colour blue"), (3, "Type something.", ""),
    ]  # fmt: skip
    assert status.dialog.text_option is not None and status.dialog.text_option.number == 3


def test_the_screen_renders_the_options_the_hooks_announce(rig: Rig) -> None:
    pid = rig.show((FIXTURES / "screens" / "2.1.332" / "dialog-ask.txt").read_text())
    rig.state(pid, "waiting", "input needed")
    rig.events(hooks("2.1.332", "ask", until="PermissionRequest"))
    status = rig.backend.status(rig.session)
    assert status.source == "hooks" and status.dialog is not None
    assert [o.label for o in status.dialog.options] == ["Red", "Blue", "Type something.", "Chat about this"]


def test_a_question_announced_a_moment_after_claude_says_it_waits_is_told(rig: Rig) -> None:
    # Claude writes "waiting" to its state file before its PermissionRequest hook has run and before
    # the dialog is drawn; a warm `wait` read it within 20 ms and said "waiting for input (input
    # needed)" without the question (selftest, a CI run). Status gives the hook a moment to say it.
    import threading

    pid = rig.show(NEVER_SEEN)
    rig.state(pid, "waiting", "input needed")
    later = threading.Timer(0.3, rig.events, [hooks("2.1.332", "ask", until="PermissionRequest")])
    later.start()
    try:
        status = rig.backend.status(rig.session)
    finally:
        later.join()
    assert (status.state, status.source) == ("waiting_for_input", "hooks")
    assert status.dialog is not None and status.dialog.question == "Which colour?"


def test_a_permission_prompt_on_a_screen_never_seen_is_answered_by_keys(rig: Rig) -> None:
    pid = rig.show(NEVER_SEEN)
    rig.state(pid, "waiting", "permission prompt")
    rig.events(hooks("2.1.332", "permission", until="PermissionRequest"))
    status = rig.backend.status(rig.session)
    assert status.source == "hooks" and status.dialog is not None
    assert status.dialog.question == "Allow Bash?"
    assert status.dialog.context == ("Bash: touch x",)
    # The numbers of a permission prompt differ between versions; Enter and Escape do not.
    assert [(o.label, o.keys) for o in status.dialog.options] == [("Yes", ("Enter",)), ("No", ("Escape",))]


@pytest.mark.parametrize(
    ("claude_says", "expected"), [("busy", "working"), ("idle", "idle")]
)  # fmt: skip
def test_claude_state_decides_over_the_screen(rig: Rig, claude_says: str, expected: str) -> None:
    pid = rig.show(NEVER_SEEN)
    rig.state(pid, claude_says)
    status = rig.backend.status(rig.session)
    assert (status.state, status.source) == (expected, "claude-state")


def test_without_structured_signals_the_screen_decides_and_says_so(rig: Rig) -> None:
    rig.show((FIXTURES / "screens" / "2.1.332" / "dialog-trust.txt").read_text())  # no state file yet
    status = rig.backend.status(rig.session)
    assert (status.state, status.source) == ("waiting_for_input", "screen")
    assert status.dialog is not None and status.dialog.options[1].keys == ("Down", "Enter")


def test_an_old_question_does_not_outlive_the_send_after_it(rig: Rig) -> None:
    pid = rig.show(NEVER_SEEN)
    data = hooks("2.1.332", "ask", until="PermissionRequest")
    rig.events(data)
    sent = rig.session.evolve(last_send={"offset": 0, "events": len(data)})  # sent after that question
    rig.state(pid, "waiting", "permission prompt")
    status = rig.backend.status(sent)
    assert status.state == "waiting_for_input"
    assert status.source == "claude-state" and status.dialog is None  # no stale "Which colour?"


def test_after_clear_the_session_follows_claudes_new_id(rig: Rig) -> None:
    startup = {"session_id": UUID, "transcript_path": "/t", "cwd": "/w", "hook_event_name": "SessionStart",
               "source": "startup", "model": "m"}  # fmt: skip
    rig.events(json.dumps(startup).encode() + b"\n" + hooks("2.1.332", "plain") + hooks("2.1.332", "clear"))
    assert rig.backend.follow(rig.session) is not rig.session
    followed = rig.backend.follow(rig.session)
    new_id = json.loads((FIXTURES / "hooks" / "2.1.332" / "clear.jsonl").read_text().splitlines()[-1])
    assert followed.internal_id == new_id["session_id"] != UUID
    assert followed.previous_ids == (UUID,)
    assert rig.backend.follow(followed) is followed  # once


def transcript_line(session_id: str, second: int, entry: dict[str, object]) -> str:
    stamp = f"2026-12-01T10:00:{second:02d}.000Z"
    return json.dumps({"sessionId": session_id, "isSidechain": False, "timestamp": stamp, **entry}) + "\n"


def a_turn(session_id: str, first_second: int, text: str) -> str:
    """A prompt, its reply and the turn's end, as Claude writes them (the fake's echo)."""
    reply = {"type": "text", "text": text}
    return "".join(
        [
            transcript_line(
                session_id, first_second, {"type": "user", "message": {"role": "user", "content": text}}
            ),
            transcript_line(
                session_id,
                first_second + 1,
                {"type": "assistant", "message": {"role": "assistant", "content": [reply]}},
            ),
            transcript_line(
                session_id,
                first_second + 2,
                {"type": "system", "subtype": "turn_duration", "durationMs": 900},
            ),
        ]
    )


def test_a_follow_goes_on_into_the_new_transcript_after_clear(rig: Rig) -> None:
    """``/clear`` makes Claude write a new transcript under a new id (its ``SessionStart`` hook, recorded
    from the real Claude Code, says which): a follow started before it goes on in the new one."""
    import threading

    from dev_sessions.claude.facts import transcript_path
    from dev_sessions.follow import Event, drive

    rig.show(NEVER_SEEN)
    startup = {"session_id": UUID, "transcript_path": "/t", "cwd": "/w", "hook_event_name": "SessionStart",
               "source": "startup", "model": "m"}  # fmt: skip
    rig.events(json.dumps(startup).encode() + b"\n" + hooks("2.1.332", "plain"))
    before = transcript_path(rig.config, rig.session.path, UUID)
    before.parent.mkdir(parents=True)
    before.write_text(a_turn(UUID, 1, "before the clear"))
    seen: list[Event] = []
    follower = threading.Thread(
        target=lambda: seen.extend(drive(rig.backend.events(rig.session, "all", None)))
    )
    follower.start()
    try:
        eventually(lambda: [e.kind for e in seen if e.kind == "turn"])
        with wiring.events_path(rig.home, "fizz-top").open("ab") as out:
            out.write(hooks("2.1.332", "clear"))
        new_id = json.loads(hooks("2.1.332", "clear").splitlines()[-1])["session_id"]
        transcript_path(rig.config, rig.session.path, new_id).write_text(a_turn(new_id, 4, "after the clear"))
        eventually(lambda: len([e for e in seen if e.kind == "turn"]) == 2)
    finally:
        rig.tmux.kill("dev-fizz-top")
        follower.join(30)
    assert not follower.is_alive()
    talk = [(e.kind, e.text) for e in seen if e.kind in ("prompt", "reply")]
    assert talk == [
        ("prompt", "before the clear"),
        ("reply", "before the clear"),
        ("prompt", "after the clear"),
        ("reply", "after the clear"),
    ]
    assert seen[-1].kind == "status" and seen[-1].state == "exited"


@pytest.mark.parametrize("delay", [0.3, 4.0])
def test_a_prompt_taken_by_a_slow_claude_is_sent_once(rig: Rig, delay: float) -> None:
    # On a loaded machine Claude took the prompt but drew its box emptied only seconds later: the
    # send failed with "the prompt is still in the input box" (a CI run). Its transcript recording
    # the prompt says it was taken; and Enter is never pressed a third time.
    import sys

    from dev_sessions.claude import delivery
    from dev_sessions.claude.facts import Facts

    facts = Facts(rig.settings)
    transcript = facts.transcript(rig.session)
    transcript.parent.mkdir(parents=True)
    transcript.write_text('{"type":"system","subtype":"init"}\n')
    enters = rig.tmp / "enters"
    script = Path(__file__).parents[1] / "fakes" / "slow_box.py"
    rig.tmux.new_session(
        "dev-fizz-top", cwd=str(rig.tmp),
        command=[sys.executable, str(script), str(transcript), str(enters), str(delay)],
    )  # fmt: skip
    eventually(lambda: (live := facts.live(rig.session)).screen.prompt == delivery.EMPTY_BOX and live)
    rig.backend.send(rig.session, "hello there")
    assert transcript.read_text().count("hello there") == 1
    assert int(enters.read_text()) == (1 if delay < 1 else 2)


def test_an_answer_waits_for_the_dialog_to_be_drawn(rig: Rig) -> None:
    # On a loaded machine the hooks and Claude's state file said a question waited, and the screen
    # drew it seconds later: the answer's digit went into the input box and the question stayed
    # unanswered (the dashboard's page in a CI run). The keys wait for the dialog on the screen.
    import sys

    keys, state = rig.tmp / "keys", rig.config / "sessions"
    script = Path(__file__).parents[1] / "fakes" / "late_dialog.py"
    state.mkdir(parents=True)
    rig.tmux.new_session(
        "dev-fizz-top", cwd=str(rig.tmp),
        command=[sys.executable, str(script), str(FIXTURES / "screens" / "2.1.332" / "dialog-ask.txt"),
                 "4", str(keys), str(state)],
    )  # fmt: skip
    pid = rig.tmux.panes()["dev-fizz-top"].pid
    rig.state(pid, "waiting", "input needed")
    rig.events(hooks("2.1.332", "ask", until="PermissionRequest"))
    assert rig.backend.status(rig.session).dialog is not None  # announced, not drawn yet
    assert rig.backend.respond(rig.session, "Blue") == "2. Blue"
    assert keys.read_text().splitlines() == ["dialog:'2'"]
    assert rig.backend.status(rig.session).state == "idle"
