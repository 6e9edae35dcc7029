"""What a Claude session shows right now, read from where Claude records or announces it.

* tmux: the pane (alive or not, exit status, pid) and its screen, parsed by :mod:`.screen`;
* Claude's own state file, ``<config>/sessions/<pid>.json`` (idle, busy or waiting);
* the hooks' events file, ``$DEV_SESSIONS_HOME/events/<id>.jsonl`` (:mod:`.events`);
* where the transcript is (``<config>/projects/<cwd slug>/<uuid>.jsonl``), and its last messages.

:class:`Facts` only reads, and decides nothing itself: a status is :func:`.status.status_from` of what
it read. It holds the tmux adapter of each socket, which :mod:`.delivery` uses to type.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dev_sessions import files, ids
from dev_sessions.backend import Dialog, Status
from dev_sessions.claude import events as ev
from dev_sessions.claude import screen as screens
from dev_sessions.claude import transcript as tx
from dev_sessions.claude import wiring
from dev_sessions.claude.status import status_from
from dev_sessions.config import Settings
from dev_sessions.poll import poll_until
from dev_sessions.store import Session
from dev_sessions.tmux import Pane, Tmux

# How often a screen is looked at again: while waiting for Claude to come up or for its input box,
# and, more often, while text is going in.
SCREEN_POLL = 0.05
INPUT_POLL = 0.005
_RENDER_GRACE = 1.0
_SLUG = re.compile(r"[^a-zA-Z0-9]")
_SLUG_LIMIT = 200


def project_slug(cwd: str) -> str:
    return _SLUG.sub("-", cwd)


def transcript_path(config_dir: Path, cwd: str, uuid: str) -> Path:
    """Where Claude writes the transcript of session ``uuid`` started in ``cwd``.

    Claude cuts slugs over 200 characters and adds a hash of its own; for those we look the file up
    by its (unique) uuid, and fall back to the cut slug while it does not exist yet.
    """
    slug = project_slug(cwd)
    projects = config_dir / "projects"
    expected = projects / slug[:_SLUG_LIMIT] / f"{uuid}.jsonl"
    if expected.exists():
        return expected
    # Cut slugs get a hash suffix, and Claude in a container sees another cwd: the uuid is unique.
    for found in projects.glob(f"*/{uuid}.jsonl"):
        return found
    return expected


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class Live:
    """A session as seen right now: its pane and what the screen says."""

    pane: Pane | None
    screen: screens.Screen


class Facts:
    """Reads what Claude sessions show, for the backend and the modules it delegates to."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tmux: dict[str | None, Tmux] = {}

    def tmux(self, session: Session) -> Tmux:
        socket = session.tmux_socket
        if socket not in self._tmux:
            self._tmux[socket] = Tmux(socket)
        return self._tmux[socket]

    # -- paths and files -----------------------------------------------------------------------------

    def config_dir(self, session: Session) -> Path:
        if session.claude_config_dir:
            return Path(session.claude_config_dir)
        return self.settings.claude_config_dir

    def transcript(self, session: Session) -> Path:
        return transcript_path(self.config_dir(session), session.path, session.internal_id)

    def claude_state(self, session: Session, pid: int) -> dict[str, Any] | None:
        """Claude's own status file for the process, if this Claude version writes one."""
        state = _read_json(self.config_dir(session) / "sessions" / f"{pid}.json")
        if state is None or state.get("sessionId") not in (None, session.internal_id):
            return None
        return state

    def events_since(self, session: Session, offset: int = 0) -> tuple[list[ev.Event], int]:
        """The hook events of a session from ``offset`` on, and the offset after them."""
        path = wiring.events_path(self.settings.home, session.id)
        try:
            fd = files.open_private(path, os.O_RDONLY)
        except FileNotFoundError:
            return [], offset
        try:
            size = os.fstat(fd).st_size
            data = os.pread(fd, max(0, size - offset), offset) if size > offset else b""
        finally:
            os.close(fd)
        return list(ev.parse(data)), offset + len(data)

    # -- the pane and the status ---------------------------------------------------------------------

    def live(self, session: Session) -> Live:
        snap = self.tmux(session).snapshot(ids.tmux_name(session.id))
        if snap is None:
            return Live(None, screens.Screen("starting"))
        pane, text = snap
        return Live(pane, screens.classify(text))

    def dialog_shown(self, session: Session) -> Dialog | None:
        """The dialog on the screen, given a moment to draw: Claude says it waits a little before the
        dialog shows. None when the screen shows none that can be read (a layout never seen)."""
        return poll_until(
            lambda: self.live(session).screen.dialog, _RENDER_GRACE, SCREEN_POLL / 2, wait_first=True
        )

    def status(self, session: Session, live: Live | None = None) -> Status:
        """Read what :func:`.status.status_from` needs, and no more: the hooks only while Claude's
        state file says it waits, the screen again only for a dialog the hooks announce but the
        screen did not show yet. ``live``: the pane and screen, when the caller has just read them."""
        if live is None:
            live = self.live(session)
        pane, screen = live.pane, live.screen
        state = announced = shown = None
        if pane is not None and not pane.dead:
            state = self.claude_state(session, pane.pid)
            if state and state.get("status") == "waiting":
                mark = session.last_send or {}
                announced = ev.fold(self.events_since(session, int(mark.get("events", 0)))[0])
                if announced.dialog is None and screen.dialog is None:
                    # Claude says it waits a moment before its hook has run and its dialog is drawn
                    # (a warm `wait` read it within 20 ms): give them that moment to say what is asked.
                    told = self._told(session, int(mark.get("events", 0)))
                    if told is not None:
                        announced, live = told
                        pane, screen = live.pane, live.screen
                if announced.dialog is not None and screen.dialog is None:
                    shown = self.dialog_shown(session)
        return status_from(pane, state, screen, announced, shown)

    def _told(self, session: Session, events: int) -> tuple[ev.Announced, Live] | None:
        """What the hooks announce and the screen shows, once either tells a dialog; None when
        neither does within the render grace (the state file's ``waitingFor`` is all there is)."""

        def look() -> tuple[ev.Announced, Live] | None:
            announced = ev.fold(self.events_since(session, events)[0])
            live = self.live(session)
            if announced.dialog is None and live.screen.dialog is None:
                return None
            return announced, live

        return poll_until(look, _RENDER_GRACE, SCREEN_POLL / 2, wait_first=True)

    def statuses(self, sessions: Sequence[Session]) -> dict[str, Status]:
        """Status of many sessions from one tmux call, plus a screen capture only where Claude's own
        status file does not tell (first-run screens, other Claude versions)."""
        found: dict[str, Status] = {}
        by_socket: dict[str | None, dict[str, Pane]] = {}
        for session in sessions:
            socket = session.tmux_socket
            if socket not in by_socket:
                by_socket[socket] = self.tmux(session).panes()
            pane = by_socket[socket].get(ids.tmux_name(session.id))
            state = self.claude_state(session, pane.pid) if pane is not None and not pane.dead else None
            quick = status_from(pane, state, screen=None)
            # list has never said which signal decided (status does): kept so.
            found[session.id] = replace(quick, source="") if quick else self.status(session)
        return found


def tail_messages(path: Path, count: int) -> list[tx.AssistantMessage]:
    """The last ``count`` assistant messages, reading the transcript from its end as far as needed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    try:
        size = os.fstat(fd).st_size
        window = 1 << 18
        while True:
            start = max(0, size - window)
            data = os.pread(fd, size - start, start)
            lines = data.split(b"\n")
            if start > 0:
                lines = lines[1:]  # the first line may be cut
            messages = tx.assistant_messages(tx.parse_lines(lines))
            # One more message than asked for proves the earliest wanted one is complete.
            if start == 0 or len(messages) > count:
                return messages
            window *= 4
    finally:
        os.close(fd)
