"""status_from: a Claude session's status from facts already read, one case per branch.

The facts are real where they can be: screens captured from Claude Code 2.1.332 (fixtures/screens/)
and hook payloads it sent (fixtures/hooks/), folded as the backend folds them. The pane and Claude's
state file are plain values.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from dev_sessions.backend import Dialog, Option
from dev_sessions.claude import events as ev
from dev_sessions.claude.screen import Screen, classify
from dev_sessions.claude.status import status_from
from dev_sessions.tmux import Pane

FIXTURES = Path(__file__).parents[1] / "fixtures"
RUNNING = Pane("dev-fizz-top", 4242, dead=False, dead_status=None, command="claude", created=0)


def screen(name: str) -> Screen:
    return classify((FIXTURES / "screens" / "2.1.332" / f"{name}.txt").read_text())


def hooks(scenario: str, until: str | None = None) -> ev.Announced:
    """The fold of recorded hook payloads, up to and including the first ``until`` event."""
    lines = []
    for line in (FIXTURES / "hooks" / "2.1.332" / f"{scenario}.jsonl").read_text().splitlines():
        lines.append(line)
        if until is not None and json.loads(line)["hook_event_name"] == until:
            break
    return ev.fold(list(ev.parse(("\n".join(lines) + "\n").encode())))


def state(status: str, waiting_for: str = "") -> dict[str, Any]:
    return {"pid": RUNNING.pid, "sessionId": "5b35cd2d", "status": status, "waitingFor": waiting_for}


IDLE, BUSY, TRUST, ASK = screen("idle-bypass"), screen("busy"), screen("dialog-trust"), screen("dialog-ask")
ASKED = hooks("ask", until="PermissionRequest")
PERMISSION = hooks("permission", until="PermissionRequest")
NEVER_SEEN = Screen("starting", hint="(press a letter)")
TRUSTED = "Quick safety check: Is this a project you created or one you trust?"


class Case(NamedTuple):
    test_id: str
    pane: Pane | None
    state: dict[str, Any] | None
    screen: Screen
    announced: ev.Announced | None
    expected: tuple[str, str, str]  # state, source, detail
    question: str | None = None  # the dialog's question, when one is expected


CASES = [
    # tmux decides whether Claude runs at all.
    Case("gone", None, None, IDLE, None, ("exited", "tmux", "its tmux session is gone")),
    Case(
        "exited-with-status", replace(RUNNING, dead=True, dead_status=1), state("idle"), IDLE, None,
        ("exited", "tmux", "claude exited (exit status 1)"),
    ),
    Case(
        "exited-status-not-known-yet", replace(RUNNING, dead=True), None, IDLE, None,
        ("exited", "tmux", "claude exited"),
    ),
    # Claude's state file decides busy and idle over what the screen seems to show.
    Case("idle", RUNNING, state("idle"), BUSY, None, ("idle", "claude-state", "")),
    Case("working", RUNNING, state("busy"), IDLE, None, ("working", "claude-state", "")),
    # Waiting: the hooks say what is asked; the screen, when it shows it, how the options read.
    Case(
        "waiting-announced-and-shown", RUNNING, state("waiting", "input needed"), ASK, ASKED,
        ("waiting_for_input", "hooks", ""), "Which colour?",
    ),
    Case(
        "waiting-announced-on-a-screen-never-seen", RUNNING, state("waiting", "input needed"), NEVER_SEEN,
        ASKED, ("waiting_for_input", "hooks", ""), "Which colour?",
    ),
    Case(
        "waiting-permission-announced", RUNNING, state("waiting", "permission prompt"), NEVER_SEEN,
        PERMISSION, ("waiting_for_input", "hooks", ""), "Allow Bash?",
    ),
    Case(
        "waiting-shown-only", RUNNING, state("waiting", "input needed"), ASK, ev.Announced(),
        ("waiting_for_input", "screen", ""), "Which colour?",
    ),
    Case(
        "waiting-nothing-says-what", RUNNING, state("waiting", "permission prompt"), NEVER_SEEN,
        ev.Announced(), ("waiting_for_input", "claude-state", "permission prompt"),
    ),
    # The screen: a dialog nothing structured names (a first-run screen comes before any hook or state
    # file; a dialog on the screen beats a busy or idle state file), then whatever nothing else names.
    Case("first-run-dialog", RUNNING, None, TRUST, None, ("waiting_for_input", "screen", ""), TRUSTED),
    Case(
        "dialog-over-busy", RUNNING, state("busy"), TRUST, None, ("waiting_for_input", "screen", ""), TRUSTED,
    ),
    Case("working-on-screen", RUNNING, None, BUSY, None, ("working", "screen", "")),
    Case("idle-on-screen", RUNNING, None, IDLE, None, ("idle", "screen", "")),
    Case("starting", RUNNING, None, NEVER_SEEN, None, ("starting", "screen", "(press a letter)")),
    # A failed turn (the StopFailure hook) is wait's to report ("failed"); status says what Claude does
    # now, and has no "error" state for Claude sessions.
    Case(
        "failed-turn-is-idle", RUNNING, state("idle"), IDLE, hooks("api-error"), ("idle", "claude-state", ""),
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.test_id for c in CASES])
def test_each_branch_and_the_source_that_decided(case: Case) -> None:
    status = status_from(case.pane, case.state, case.screen, case.announced)
    assert (status.state, status.source, status.detail) == case.expected
    assert (status.dialog.question if status.dialog else None) == case.question


def test_the_screen_renders_the_options_the_hooks_announce() -> None:
    status = status_from(RUNNING, state("waiting", "input needed"), ASK, ASKED)
    assert status.dialog is not None
    assert [o.label for o in status.dialog.options] == ["Red", "Blue", "Type something.", "Chat about this"]
    bare = status_from(RUNNING, state("waiting", "input needed"), NEVER_SEEN, ASKED)
    assert bare.dialog is not None
    assert [o.label for o in bare.dialog.options] == ["Red", "Blue", "Type something."]


def test_a_dialog_shown_a_moment_later_renders_the_announced_one() -> None:
    late = ASK.dialog
    assert late is not None
    status = status_from(RUNNING, state("waiting", "input needed"), NEVER_SEEN, ASKED, shown=late)
    assert status.source == "hooks" and status.dialog is not None
    assert [o.label for o in status.dialog.options] == [o.label for o in late.options]


def test_a_permission_prompt_the_screen_cannot_read_is_answered_by_keys() -> None:
    status = status_from(RUNNING, state("waiting", "permission prompt"), NEVER_SEEN, PERMISSION)
    assert status.dialog is not None
    assert [(o.label, o.keys) for o in status.dialog.options] == [("Yes", ("Enter",)), ("No", ("Escape",))]


def test_a_dialog_on_screen_that_is_not_the_announced_one_keeps_the_hooks_words() -> None:
    other = Dialog("Pick a fruit", options=(Option(1, "Apple"), Option(2, "Pear")))
    status = status_from(RUNNING, state("waiting"), Screen("dialog", other), ASKED)
    assert status.source == "hooks" and status.dialog == ASKED.dialog


class Quick(NamedTuple):
    test_id: str
    pane: Pane | None
    state: dict[str, Any] | None
    expected: tuple[str, str] | None  # state, source; None: only the screen can tell


QUICK = [
    Quick("gone", None, None, ("exited", "tmux")),
    Quick("busy", RUNNING, state("busy"), ("working", "claude-state")),
    Quick("idle", RUNNING, state("idle"), ("idle", "claude-state")),
    Quick("waiting-needs-the-screen", RUNNING, state("waiting"), None),
    Quick("no-state-file-needs-the-screen", RUNNING, None, None),
]


@pytest.mark.parametrize("case", QUICK, ids=[c.test_id for c in QUICK])
def test_without_a_screen_only_tmux_and_a_busy_or_idle_state_file_decide(case: Quick) -> None:
    """What ``list`` decides from one tmux call for all sessions, before it captures any screen."""
    status = status_from(case.pane, case.state, None)
    assert (None if status is None else (status.state, status.source)) == case.expected
