"""Driving the TUI with Textual's pilot: wait for what it shows, open a session, read what it says."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.pilot import Pilot
from textual.widgets import DataTable, RichLog

from dev_sessions.tui.app import Conversation, DevSessionsApp
from tests.conftest import SLOW


async def until(pilot: Pilot[None], predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Let the app run until ``predicate`` holds (fail after ``timeout`` seconds, times SLOW)."""
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"not met within {timeout * SLOW:.1f} s: {predicate}")


async def looked(pilot: Pilot[None], after: int = 0) -> None:
    """Until the app has shown a look taken after ``after`` looks (and the screen is drawn)."""
    app = pilot.app
    assert isinstance(app, DevSessionsApp)
    await until(pilot, lambda: app.looks > after)
    await pilot.pause()


def conversation(app: DevSessionsApp) -> Conversation:
    assert isinstance(app.screen, Conversation)
    return app.screen


def shown_text(app: DevSessionsApp) -> str:
    return "\n".join(line.text for line in conversation(app).query_one(RichLog).lines)


def notes(app: DevSessionsApp) -> list[str]:
    return [n.message for n in app._notifications]


async def open_session(pilot: Pilot[None], sid: str) -> DevSessionsApp:
    app = pilot.app
    assert isinstance(app, DevSessionsApp)
    await until(pilot, lambda: app.last is not None and any(s.id == sid for s, _ in app.last.rows))
    table = app.query_one("#sessions-table", DataTable)
    table.move_cursor(row=[k.value for k in table.rows].index(sid))
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, Conversation) and app.screen.session_id == sid)
    return app
