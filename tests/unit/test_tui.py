"""The TUI against the library in process (scripted fake backends, a real store and message database):
snapshots of its main screens with fixed data and a fixed clock, and Textual pilot tests of what its
keys do. The same app against the real agents: ``tests/e2e/test_tui.py``."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, RichLog

from dev_sessions.backend import Dialog, Option
from dev_sessions.config import Settings
from dev_sessions.messaging.messenger import Messenger
from dev_sessions.sessions import SessionManager
from dev_sessions.store import Session
from dev_sessions.tui.app import Conversation, DevSessionsApp, MessagesTable, attach_argv
from dev_sessions.tui.modals import Answer, Confirm
from dev_sessions.tui.views import Clock
from tests.fakes.backend import FakeBackend, Turn
from tests.fakes.tui import conversation, looked, notes, open_session, shown_text, until

NOW = datetime(2026, 11, 29, 10, 5, 0, tzinfo=timezone.utc)
CLOCK = Clock(now=lambda: NOW, zone=timezone.utc)
SIZE = (130, 32)
QUESTION = Dialog(
    "Which colour?",
    options=(
        Option(1, "Red", "The colour red"),
        Option(2, "Blue", "The colour blue"),
        Option(3, "Type something."),
    ),
    text_option=Option(3, "Type something."),
)


class World:
    """A store with sessions on fake backends, a message database, and the app on them."""

    def __init__(self) -> None:
        self.settings = Settings.from_env()
        self.claude = FakeBackend("claude")
        self.codex = FakeBackend("codex")
        self.sessions = SessionManager(self.settings, backends={"claude": self.claude, "codex": self.codex})
        self.messages = Messenger(self.settings)

    def create(self, sid: str, cli: str = "claude", *, minutes_ago: int = 0, **fixed: Any) -> Session:
        """A session with this id, its times ``minutes_ago`` before NOW and fixed fields (the path)."""
        workdir = Path(os.environ["HOME"])
        self.sessions.create(
            cli=cli, path=str(workdir), session_id=sid, description=fixed.pop("description", "")
        )
        stamp = datetime.fromtimestamp(NOW.timestamp() - 60 * minutes_ago, timezone.utc)
        iso = stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self.sessions.store.transaction() as doc:
            session = doc.get(sid).evolve(created_at=iso, last_used=iso, **fixed)
            doc.put(session)
        return session

    def touch(self, sid: str, minutes_ago: int) -> None:
        stamp = datetime.fromtimestamp(NOW.timestamp() - 60 * minutes_ago, timezone.utc)
        with self.sessions.store.transaction() as doc:
            doc.put(doc.get(sid).evolve(last_used=stamp.isoformat().replace("+00:00", "Z")))

    def fix_message_times(self) -> None:
        """Every message at a fixed time (a second apart), so that the screens do not change."""
        db = sqlite3.connect(self.settings.home / "messages.db")
        with db:
            for (mid,) in db.execute("SELECT id FROM messages").fetchall():
                db.execute(
                    "UPDATE messages SET created_at = ? WHERE id = ?",
                    (f"2026-11-29T09:{mid:02d}:00.000Z", mid),
                )
        db.close()

    def app(self, *, live: bool = False, me: str | None = None) -> DevSessionsApp:
        return DevSessionsApp(self.sessions, self.messages, me=me, clock=CLOCK, live=live)


@pytest.fixture
def world(isolated: Path) -> Iterator[World]:
    made = World()
    yield made
    made.messages.close()


def fleet(world: World) -> None:
    """Three sessions: one idle after a turn, one working, one waiting on a question."""
    world.create("fizz-top", description="fix the flaky test", minutes_ago=42, path="/home/dev/app")
    world.claude.enqueue("All 214 tests pass now.")
    world.sessions.send("fizz-top", "Run the test suite and fix what fails.")
    world.touch("fizz-top", 3)
    world.create(
        "ahri-mid",
        "codex",
        description="port the parser",
        minutes_ago=130,
        path="/home/dev/.worktrees/ahri-mid",
        worktree="/home/dev/.worktrees/ahri-mid",
        branch="dev-sessions/ahri-mid",
    )
    world.codex.enqueue(Turn(outcome="running"))
    world.sessions.send("ahri-mid", "Port the parser to Rust.")
    world.touch("ahri-mid", 1)
    world.create("lux-sup", description="pick a colour", minutes_ago=5, path="/home/dev/site")
    world.claude.enqueue(Turn(outcome="waiting_for_input", dialog=QUESTION))
    world.sessions.send("lux-sup", "Which colour should the button be?")
    world.touch("lux-sup", 0)


def run_before(*steps: Callable[[Pilot[None]], Awaitable[None]]) -> Callable[[Pilot[None]], Awaitable[None]]:
    async def run(pilot: Pilot[None]) -> None:
        await looked(pilot)
        for step in steps:
            await step(pilot)

    return run


async def open_first_waiting(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, DevSessionsApp)
    table = app.query_one("#sessions-table", DataTable)
    table.move_cursor(row=[k.value for k in table.rows].index("lux-sup"))
    seen = app.looks
    await pilot.press("enter")
    await looked(pilot, seen)
    await until(pilot, lambda: "Which colour should" in shown_text(app))


# -- snapshots ---------------------------------------------------------------------------------------


def test_snapshot_sessions(world: World, snap_compare: Any) -> None:
    fleet(world)
    assert snap_compare(world.app(), terminal_size=SIZE, run_before=run_before())


def test_snapshot_no_sessions(world: World, snap_compare: Any) -> None:
    assert snap_compare(world.app(), terminal_size=(80, 12), run_before=run_before())


def test_snapshot_conversation_with_a_question(world: World, snap_compare: Any) -> None:
    fleet(world)
    assert snap_compare(world.app(), terminal_size=SIZE, run_before=run_before(open_first_waiting))


def test_snapshot_answering_a_question(world: World, snap_compare: Any) -> None:
    fleet(world)

    async def answer(pilot: Pilot[None]) -> None:
        await pilot.press("a")
        await until(pilot, lambda: isinstance(pilot.app.screen, Answer))

    assert snap_compare(world.app(), terminal_size=SIZE, run_before=run_before(open_first_waiting, answer))


def test_snapshot_messages(world: World, snap_compare: Any) -> None:
    fleet(world)
    world.messages.register("boss")
    world.messages.create_space("reviewers", description="code review", creator="boss")
    world.messages.join("reviewers", "boss")
    world.messages.join("reviewers", "user")
    first = world.messages.send("user", "Check the CI logs and report back.", sender="boss")
    world.messages.reply(first.id, "CI is green again: a flaky test, fixed.", sender="user")
    world.messages.send("user", "Merge when ready.", sender="boss", reply_to=first.id, priority="high")
    world.messages.space_send("reviewers", "Freeze: no merges until 5pm.", sender="boss", priority="urgent")
    world.fix_message_times()

    async def messages(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, DevSessionsApp)
        seen = app.looks
        await pilot.press("2")
        await looked(pilot, seen)
        await until(pilot, lambda: app.query_one("#messages-table", DataTable).row_count == 3)
        seen = app.looks
        await pilot.press("up")  # the first message of the thread: its thread below
        await looked(pilot, seen)

    assert snap_compare(world.app(), terminal_size=SIZE, run_before=run_before(messages))


class OneTable(App[None]):
    def compose(self) -> ComposeResult:
        yield MessagesTable()


async def test_a_table_drawn_before_it_measured_its_rows_is_drawn_again_at_full_width(world: World) -> None:
    """A table widens its columns to new rows only once it is idle, and lines it drew before that were
    kept, cut to the old widths, until something else changed (Textual #3533): on a busy machine the
    screen's refresh can come between the two. Drawn again right after it measured, it is whole."""
    world.messages.send("user", "Check the CI logs and report back.", sender="boss")
    world.fix_message_times()
    app = OneTable()
    async with app.run_test(size=(100, 5)):
        table = app.query_one(MessagesTable)
        table.show(world.messages.read("user"), CLOCK)
        assert "Check the CI" not in table.render_line(1).text  # drawn at the labels' widths
        await table._on_idle(events.Idle())  # what the table does when it is next idle: it measures
        assert "09:01:00  boss  direct  Check the CI logs and report back." in table.render_line(1).text


# -- keys, against the scripted backends ---------------------------------------------------------------


async def test_a_prompt_typed_in_the_conversation_is_sent_and_the_reply_shows(world: World) -> None:
    world.create("fizz-top")
    world.claude.enqueue("the reply to it")
    app = world.app(live=True)
    async with app.run_test(size=SIZE) as pilot:
        await open_session(pilot, "fizz-top")
        await pilot.press("s")
        assert isinstance(app.focused, Input) and app.focused.id == "prompt"
        await pilot.press(*"hello there", "enter")
        await until(pilot, lambda: "the reply to it" in shown_text(app))
        assert "hello there" in shown_text(app)
        assert ("send", "fizz-top", "hello there", False, None) in world.claude.calls
        assert "fizz-top: sent" in notes(app)
        await pilot.press("escape")  # leaves the prompt line, then the conversation
        assert isinstance(app.screen, Conversation)
        await pilot.press("escape")
        assert not isinstance(app.screen, Conversation)


async def test_a_prompt_from_the_sessions_list(world: World) -> None:
    world.create("fizz-top")
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await looked(pilot)
        await pilot.press("s", *"from the list", "enter")
        await until(pilot, lambda: ("send", "fizz-top", "from the list", False, None) in world.claude.calls)


@pytest.mark.parametrize(
    ("keys", "answered"),
    [(["2"], "Blue"), (["down", "enter"], "Blue"), (["down", "down", "tab", *"teal", "enter"], "teal")],
)
async def test_a_question_is_shown_and_answered(world: World, keys: list[str], answered: str) -> None:
    world.create("lux-sup")
    world.claude.enqueue(Turn(outcome="waiting_for_input", dialog=QUESTION))
    world.sessions.send("lux-sup", "Which colour?")
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await open_session(pilot, "lux-sup")
        dialog = conversation(app).query_one("#dialog")
        await until(pilot, lambda: dialog.display)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, Answer))
        await pilot.press(*keys)
        await until(pilot, lambda: world.sessions.status("lux-sup").state == "idle")
        await until(pilot, lambda: not dialog.display)
        said = [n for n in notes(app) if n.startswith("lux-sup: answered")]
        assert said and answered in said[0]


async def test_answer_says_when_there_is_no_question(world: World) -> None:
    world.create("fizz-top")
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await looked(pilot)
        await pilot.press("a")
        await until(pilot, lambda: "fizz-top is idle: no question to answer" in notes(app))
        assert not isinstance(app.screen, Answer)


async def test_kill_asks_first_and_then_the_session_goes(world: World) -> None:
    world.create("fizz-top")
    world.create("lux-sup")
    app = world.app(live=True)
    async with app.run_test(size=SIZE) as pilot:
        await open_session(pilot, "fizz-top")
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, Conversation))
        assert ("kill", "fizz-top") not in world.claude.calls
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("y")
        await until(pilot, lambda: app.last is not None and [s.id for s, _ in app.last.rows] == ["lux-sup"])
        assert ("kill", "fizz-top") in world.claude.calls
        assert not isinstance(app.screen, Conversation)  # back on the list, without it
        assert [k.value for k in app.query_one("#sessions-table", DataTable).rows] == ["lux-sup"]


async def test_interrupt_stops_a_running_turn(world: World) -> None:
    world.create("fizz-top")
    world.claude.enqueue(Turn(outcome="running"))
    world.sessions.send("fizz-top", "a long job")
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await looked(pilot)
        await pilot.press("i")
        await until(pilot, lambda: "fizz-top: interrupted" in notes(app))
        assert world.sessions.status("fizz-top").state == "idle"


async def test_a_session_made_elsewhere_appears_without_a_key(world: World) -> None:
    app = world.app(live=True)
    async with app.run_test(size=SIZE) as pilot:
        await looked(pilot)  # no session yet: the table is hidden behind a line that says so
        world.create("fizz-top")  # another process would do the same: the store changes on disk
        world.create("lux-sup")
        table = app.query_one("#sessions-table", DataTable)
        await until(pilot, lambda: [k.value for k in table.rows] == ["fizz-top", "lux-sup"])
        await pilot.press("enter")  # the table has the keys again
        await until(pilot, lambda: isinstance(app.screen, Conversation))


async def test_a_library_error_is_one_line(world: World) -> None:
    world.create("fizz-top")
    world.claude.agents["fizz-top"].alive = False  # the agent has exited: send refuses
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await looked(pilot)
        await pilot.press("s", *"anyone?", "enter")
        gone = "fizz-top: the fake agent is gone; remove it with `dev-sessions kill fizz-top`"
        await until(pilot, lambda: gone in notes(app))
        assert all("\n" not in n and "Traceback" not in n for n in notes(app))
        assert app.is_running


def test_attach_runs_tmux_on_the_sessions_own_server() -> None:
    session = Session(id="fizz-top", internal_id="x", cli="claude", path="/tmp", tmux_socket="ds-42")
    assert attach_argv(session) == ["tmux", "-L", "ds-42", "attach-session", "-t", "=dev-fizz-top:"]


async def test_attach_without_a_terminal_says_how(world: World) -> None:
    world.create("fizz-top")
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:  # headless: the app cannot give the terminal away
        await looked(pilot)
        await pilot.press("t")
        argv = " ".join(attach_argv(world.sessions.get("fizz-top")))
        await until(pilot, lambda: f"attach from a terminal: {argv}" in notes(app))


async def test_messages_are_read_written_and_answered(world: World) -> None:
    world.messages.register("boss")
    asked = world.messages.send("user", "Check the CI logs.", sender="boss")
    app = world.app(live=True)
    async with app.run_test(size=SIZE) as pilot:
        await looked(pilot)
        await pilot.press("2")
        table = app.query_one("#messages-table", DataTable)
        await until(pilot, lambda: table.row_count == 1)
        await pilot.press("r")  # a reply goes to the sender
        await pilot.press(*"all green", "enter")
        await until(pilot, lambda: len(world.messages.thread(asked.id, "boss")) == 2)
        (reply,) = world.messages.read("boss")
        assert (reply.sender, reply.body, reply.reply_to) == ("user", "all green", asked.id)
        await pilot.press("n", *"boss", "enter", *"and one more", "enter")
        await until(pilot, lambda: len(world.messages.read("boss")) == 2)
        world.messages.send("user", "Thanks.", sender="boss")  # arrives while it shows the inbox
        await until(pilot, lambda: table.row_count == 2)
        assert "Check the CI logs." in str(app.query_one("#thread").render())


@pytest.mark.parametrize("args", [["status", "fizz-top"], ["list"], ["msg", "read"], ["--help"]])
def test_other_commands_do_not_import_textual(isolated: Path, args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dev_sessions", *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
    assert "dev_sessions.cli" in imported  # it did run the command line
    assert [n for n in imported if n.split(".")[0] == "textual" or n.startswith("dev_sessions.tui")] == []


def test_the_tui_refuses_sandbox_mode(isolated: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dev_sessions", "tui"],
        capture_output=True, text=True, check=False, env={**os.environ, "DEV_SESSIONS_SANDBOX": "1"},
    )  # fmt: skip
    assert proc.returncode == 2
    assert (
        proc.stderr
        == "dev-sessions: tui: run it on the host (in a sandbox, the sessions and their files are not here)\n"
    )


async def test_the_conversation_follows_the_end_only_when_at_the_end(world: World) -> None:
    world.create("fizz-top")
    for n in range(30):
        world.claude.enqueue(f"reply {n}\n" + "more\n" * 3)
        world.sessions.send("fizz-top", f"prompt {n}")
    app = world.app(live=True)
    async with app.run_test(size=(100, 24)) as pilot:
        await open_session(pilot, "fizz-top")
        log = conversation(app).query_one(RichLog)
        await until(pilot, lambda: "reply 29" in shown_text(app) and log.max_scroll_y > 0)
        await until(pilot, lambda: log.is_vertical_scroll_end)  # it opens at the end
        world.claude.enqueue("reply 30")
        world.sessions.send("fizz-top", "prompt 30")
        await until(pilot, lambda: "reply 30" in shown_text(app))
        await until(pilot, lambda: log.is_vertical_scroll_end)  # and follows it
        log.scroll_home(animate=False)
        await pilot.pause()
        world.claude.enqueue("reply 31")
        world.sessions.send("fizz-top", "prompt 31")
        await until(pilot, lambda: "reply 31" in shown_text(app))
        await pilot.pause()
        assert log.scroll_y == 0  # scrolled up to read: it stays there


async def test_markup_and_control_characters_from_an_agent_are_only_text(world: World) -> None:
    world.create("fizz-top", description="[bold]desc[/bold]")
    world.claude.enqueue("[red]not red[/red] \x1b]0;title\x07 \x1b[31mplain")
    world.sessions.send("fizz-top", "[link=http://x]y[/link]")
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await open_session(pilot, "fizz-top")
        await until(pilot, lambda: "not red" in shown_text(app))
        shown = shown_text(app)
        assert "[red]not red[/red] ␛]0;title␇ ␛[31mplain" in shown
        assert "[link=http://x]y[/link]" in shown
        assert "\x1b" not in shown and "\x07" not in shown
        header = conversation(app).query_one("#session-header").render()
        assert "[bold]desc[/bold]" in str(header)


async def test_a_codex_session_has_no_pane_to_attach_to(world: World) -> None:
    world.create("ahri-mid", "codex")
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await looked(pilot)
        await pilot.press("t")
        await until(
            pilot, lambda: "ahri-mid: a codex session has no terminal; its conversation is here" in notes(app)
        )


def test_a_threads_reactions_are_shown_in_the_tui_and_on_the_dashboard(world: World) -> None:
    from dev_sessions.dashboard.pages import _message
    from dev_sessions.tui import views

    first = world.messages.send("user", "Ship it?", sender="boss")
    world.messages.react(first.id, "👍", agent="boss")  # (in one millisecond, by name: the same order)
    world.messages.react(first.id, "👍", agent="user")
    world.messages.react(first.id, ":tada:", agent="user")
    (message,) = world.messages.thread(first.id)
    assert message.reactions == (("👍", ("boss", "user")), (":tada:", ("user",)))
    assert views.thread([message], CLOCK).plain.endswith("Ship it?\n👍 2 (boss, user)  :tada: 1 (user)")
    html = _message(message, "user")
    assert '<span class=reaction title="boss, user">👍 2</span>' in html
    assert '<span class=reaction title="user">:tada: 1</span>' in html
