"""What a Claude session is doing, decided from facts already read: a pure function, no I/O here.

Structured signals first, the screen last, and ``Status.source`` names the one that decided:

* tmux: whether Claude still runs (the pane stays after it exits, with its exit status);
* Claude's own state file (``<config>/sessions/<pid>.json``): ``idle``, ``busy`` or ``waiting``;
* the hooks (:mod:`.events`), folded since the last send: what a waiting session asks;
* the screen (:mod:`.screen`): the option labels of the dialog the hooks announce, first-run dialogs
  (before Claude runs any hook or writes its state file), and any state nothing else names.

Reading those facts (and which of them to read at all) is the backend's job; this module must not read
anything, so that every branch is tested on plain values (tests/unit/test_claude_status.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, overload

from dev_sessions.backend import Dialog, Status
from dev_sessions.claude import events as ev
from dev_sessions.claude.screen import Screen
from dev_sessions.tmux import Pane


def exit_detail(pane: Pane | None) -> str:
    """Why a session counts as exited, from its pane (None: its tmux session is gone)."""
    if pane is None:
        return "its tmux session is gone"
    code = "" if pane.dead_status is None else f" (exit status {pane.dead_status})"
    return f"claude exited{code}"


@overload
def status_from(
    pane: Pane | None,
    state: Mapping[str, Any] | None,
    screen: Screen,
    announced: ev.Announced | None = None,
    shown: Dialog | None = None,
) -> Status: ...


@overload
def status_from(
    pane: Pane | None,
    state: Mapping[str, Any] | None,
    screen: None,
    announced: ev.Announced | None = None,
    shown: Dialog | None = None,
) -> Status | None: ...


def status_from(
    pane: Pane | None,
    state: Mapping[str, Any] | None,
    screen: Screen | None,
    announced: ev.Announced | None = None,
    shown: Dialog | None = None,
) -> Status | None:
    """The session's status from what was read of it.

    ``pane``: tmux's pane of the session (None: the tmux session is gone). ``state``: Claude's state
    file for the pane's process, if it names this session. ``screen``: the screen as captured, or None
    when it was not (``list`` captures one only where it must): then only tmux and a ``busy`` or
    ``idle`` state file decide, and None means it takes the screen to tell. ``announced``: what the
    hooks said since the last send, read while the state file says ``waiting``. ``shown``: the dialog
    that came up on the screen a moment after ``screen`` was captured without one.
    """
    if pane is None or pane.dead:
        return Status("exited", detail=exit_detail(pane), source="tmux")
    own = state.get("status") if state else None
    if own == "waiting":
        if screen is None:
            return None
        if announced is not None and announced.dialog is not None:
            dialog = ev.rendered(announced.dialog, screen.dialog or shown)
            return Status("waiting_for_input", dialog=dialog, source="hooks")
        if screen.dialog is not None:
            return Status("waiting_for_input", dialog=screen.dialog, source="screen")
        detail = str(state.get("waitingFor") or "") if state else ""
        return Status("waiting_for_input", detail=detail, source="claude-state")
    if screen is not None and screen.state == "dialog":
        # A dialog nothing structured names: a first-run screen (before any hook runs), or a new one.
        return Status("waiting_for_input", dialog=screen.dialog, source="screen")
    if own == "busy":
        return Status("working", source="claude-state")
    if own == "idle":
        return Status("idle", source="claude-state")
    if screen is None:
        return None
    if screen.state == "busy":
        return Status("working", source="screen")
    if screen.state == "ready":
        return Status("idle", source="screen")
    return Status("starting", detail=screen.hint, source="screen")
