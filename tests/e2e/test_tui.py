"""End to end: the TUI (Textual's pilot, in this process) driving the real Claude Code in tmux, offline
against the fake Anthropic server, once per pinned agent set. Nothing is refreshed by hand: what the
app shows comes from its own live loop."""

from __future__ import annotations

import asyncio
import json

import pytest
from textual.widgets import DataTable, Input

from dev_sessions.messaging.messenger import Messenger
from dev_sessions.selftest.fakes.anthropic import FakeAnthropic
from dev_sessions.selftest.fakes.openai_responses import FakeResponses
from dev_sessions.sessions import SessionManager
from dev_sessions.tui.app import DevSessionsApp
from dev_sessions.tui.modals import Answer, Confirm
from tests.conftest import DevSessions
from tests.fakes.tui import conversation, looked, open_session, shown_text, until

pytestmark = pytest.mark.e2e

SIZE = (140, 40)


def status_of(app: DevSessionsApp, sid: str) -> str | None:
    rows = app.last.rows if app.last else []
    return next((st.state for s, st in rows if s.id == sid), None)


async def test_the_tui_drives_a_real_claude(cli: DevSessions, claude: FakeAnthropic) -> None:
    messages = Messenger()
    app = DevSessionsApp(SessionManager(), messages)
    async with app.run_test(size=SIZE) as pilot:
        await looked(pilot)
        assert app.last is not None and app.last.rows == []

        # A session made while it runs appears with its live status.
        sid = (await asyncio.to_thread(cli.ok, "create", "-q", "--description", "tui e2e")).strip()
        await until(pilot, lambda: status_of(app, sid) == "idle", 60)
        table = app.query_one("#sessions-table", DataTable)
        assert sid in [k.value for k in table.rows]

        # Enter opens its conversation; a prompt typed there reaches Claude and the reply shows.
        await open_session(pilot, sid)
        await pilot.press("s")
        prompt = conversation(app).query_one("#prompt", Input)
        assert prompt.has_focus
        prompt.value = "hello from the tui ✓"
        await pilot.press("enter")
        await until(pilot, lambda: shown_text(app).count("hello from the tui ✓") == 2, 60)  # prompt, echo
        assert claude.prompts()[-1] == "hello from the tui ✓"
        await until(pilot, lambda: status_of(app, sid) == "idle", 60)

        # A question: shown in the conversation, answered from the TUI.
        prompt.value = "choose <<ask>>"
        await pilot.press("enter")
        dialog = conversation(app).query_one("#dialog")
        await until(pilot, lambda: dialog.display and status_of(app, sid) == "waiting_for_input", 60)
        await pilot.press("escape")  # off the prompt line, so that the keys are the screen's
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, Answer))
        await pilot.press("2")
        await until(pilot, lambda: '"Which colour?"="Blue"' in shown_text(app), 60)
        await until(pilot, lambda: not dialog.display, 60)

        # Kill, after saying yes: the session goes from the list and from tmux.
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("y")
        await until(pilot, lambda: status_of(app, sid) is None and app.last is not None, 60)
        assert [k.value for k in table.rows] == []
    messages.close()
    assert json.loads(cli.ok("list", "--json")) == []


async def test_the_tui_drives_a_real_codex(cli: DevSessions, codex: FakeResponses) -> None:
    messages = Messenger()
    app = DevSessionsApp(SessionManager(), messages)
    async with app.run_test(size=SIZE) as pilot:
        await looked(pilot)
        sid = (await asyncio.to_thread(cli.ok, "create", "--cli", "codex", "-q")).strip()
        await until(pilot, lambda: status_of(app, sid) == "idle", 60)

        await open_session(pilot, sid)
        await pilot.press("s")
        prompt = conversation(app).query_one("#prompt", Input)
        prompt.value = "hello codex from the tui ✓"
        await pilot.press("enter")
        await until(pilot, lambda: shown_text(app).count("hello codex from the tui ✓") == 2, 60)
        assert codex.prompts()[-1] == "hello codex from the tui ✓"
        await until(pilot, lambda: status_of(app, sid) == "idle", 60)
    messages.close()
