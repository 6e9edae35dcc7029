"""The TUI application: sessions, a session's conversation, and messages, kept current live.

The app calls the library in process (``SessionManager``, ``Messenger``); every call that may block
runs in a thread worker, never on the UI loop. What keeps it current is :class:`dev_sessions.live.Changes`:
one loop sleeps on its file-system events (``wait_async``: the UI loop watches the descriptors), and
on each wake-up takes one *look* in a thread (the sessions and their usage, the open conversation,
the messages shown) and shows it. An action (send, kill, ...) asks for a look at once. With nothing
changing it looks again only every ``LOOK_AT_LEAST_S``, and redraws the ages every ``AGES_EVERY_S``
from what it has.

A library error is one line in a notification, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SuspendNotSupported
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    Input,
    OptionList,
    RichLog,
    Static,
    TabbedContent,
    TabPane,
)
from textual.widgets.data_table import RowKey
from textual.widgets.option_list import Option as ListOption

from dev_sessions import ids
from dev_sessions.backend import LogItem, Status
from dev_sessions.errors import DevSessionsError
from dev_sessions.live import Changes
from dev_sessions.messaging.messenger import Messenger
from dev_sessions.messaging.records import Message, Space
from dev_sessions.sessions import SessionManager
from dev_sessions.store import Session
from dev_sessions.terminal import cell
from dev_sessions.tmux import Tmux, target
from dev_sessions.tui import views
from dev_sessions.tui.modals import Answer, Compose, Confirm, Prompt
from dev_sessions.usage import Usage

log = logging.getLogger(__name__)

LOOK_AT_LEAST_S = 60.0
"""With no event at all, look again after this long (a safety net: what no file tells)."""
AGES_EVERY_S = 30.0
INBOX = "inbox"
FEED = "feed"


def one_line(text: str) -> str:
    """An error as a notification shows it: one line."""
    return " ".join(text.split())


@dataclass(frozen=True)
class Want:
    """What the next look must read besides the sessions (taken on the UI loop, read in a thread)."""

    conversation: str | None = None
    mailbox: str | None = None
    thread: int | None = None


@dataclass(frozen=True)
class Mail:
    spaces: list[Space]
    mailbox: str
    messages: list[Message]
    thread: list[Message]


@dataclass(frozen=True)
class Look:
    """What one look found; ``errors``: the library's one-line errors on the way."""

    rows: list[tuple[Session, Status]]
    usage: dict[str, Usage | str]
    logs: tuple[str, list[LogItem]] | None = None
    mail: Mail | None = None
    errors: list[str] = field(default_factory=list)


def attach_argv(session: Session) -> list[str]:
    """The tmux client that attaches to a Claude session's pane, on the session's own server."""
    return Tmux(session.tmux_socket).argv("attach-session", "-t", target(ids.tmux_name(session.id)))


class Table(DataTable[Text]):
    """A DataTable that draws its rows again as soon as it has measured them. A DataTable widens its
    columns to new or changed cells only when it is next idle, but keeps the lines it drew before that,
    cut to the old widths, until something else changes (Textual issue #3533). On a busy machine the
    screen's refresh can come between the two: the sessions or messages then stayed cut short."""

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        super()._update_dimensions(new_rows)
        self._clear_caches()


class SessionsTable(Table):
    """Every session, one row each, keyed by its id; the cursor stays on its session across looks."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for name in views.SESSION_COLUMNS:
            self.add_column(name, key=name)

    @property
    def chosen(self) -> str | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return key.value

    def show(self, rows: list[tuple[str, tuple[Text, ...]]]) -> None:
        chosen = self.chosen
        keys = [sid for sid, _ in rows]
        if keys == [k.value for k in self.rows]:
            for sid, cells in rows:
                for name, value in zip(views.SESSION_COLUMNS, cells, strict=True):
                    self.update_cell(sid, name, value)
            return
        self.clear()
        for sid, cells in rows:
            self.add_row(*cells, key=sid)
        if chosen in keys:
            self.move_cursor(row=keys.index(chosen))


class MessagesTable(Table):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        for name in views.MESSAGE_COLUMNS:
            self.add_column(name, key=name)

    @property
    def chosen(self) -> int | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return None if key is None else int(key)

    def show(self, messages: list[Message], clock: views.Clock) -> None:
        keys = [str(m.id) for m in messages]
        if keys == [k.value for k in self.rows]:
            return
        chosen = self.chosen
        self.clear()
        for message in messages:
            self.add_row(*views.message_row(message, clock), key=str(message.id))
        if chosen is not None and str(chosen) in keys:
            self.move_cursor(row=keys.index(str(chosen)))
        elif keys:
            self.move_cursor(row=len(keys) - 1)  # the newest, at the bottom


class Conversation(Screen[None]):
    """One session: who it is, its dialog if it waits on one, its conversation as it grows, and a
    prompt line."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("s", "focus_prompt", "Send"),
        Binding("a", "app.answer", "Answer"),
        Binding("i", "app.interrupt", "Interrupt"),
        Binding("k", "app.kill", "Kill"),
        Binding("t", "app.attach", "Attach"),
        Binding("end", "follow", "Follow", show=False),
    ]

    def __init__(self, session_id: str) -> None:
        super().__init__()
        self.session_id = session_id
        self.shown: list[LogItem] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text(self.session_id, style="bold"), id="session-header")
        yield Static(id="dialog")
        yield RichLog(wrap=True, id="log")
        yield Input(placeholder="Send a prompt: Enter sends, Esc leaves the line", id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(RichLog).focus()
        app = self.app
        if isinstance(app, DevSessionsApp):
            app.redraw()  # what the last look knows, at once; the conversation comes with the next
            app.poke()

    def show(self, session: Session | None, status: Status | None, used: Usage | str | None) -> None:
        header = self.query_one("#session-header", Static)
        dialog = self.query_one("#dialog", Static)
        if session is None or status is None:
            header.update(Text(f"{self.session_id}: gone (killed, or no longer in the store)", style="red"))
            dialog.display = False
            return
        header.update(views.session_header(session, status, used))
        if status.state == "waiting_for_input" and status.dialog is not None:
            dialog.update(views.dialog(status.dialog))
            dialog.display = True
        else:
            dialog.display = False

    def show_log(self, items: list[LogItem], clock: views.Clock) -> None:
        richlog = self.query_one(RichLog)
        if items[: len(self.shown)] != self.shown:  # not the same conversation any more (/clear)
            richlog.clear()
            self.shown = []
        opening = not self.shown
        following = opening or richlog.is_vertical_scroll_end
        for item in items[len(self.shown) :]:
            if self.shown:
                richlog.write(Text(""), scroll_end=following)
            richlog.write(views.log_item(item, clock), scroll_end=following)
            self.shown.append(item)
        if opening and self.shown:
            # Once more after the next refresh: the lines written as the conversation opens may come
            # before the log has its size, and are laid out only then (their own scroll came too early).
            self.call_after_refresh(richlog.scroll_end, animate=False)

    def action_back(self) -> None:
        prompt = self.query_one("#prompt", Input)
        if prompt.has_focus:
            self.query_one(RichLog).focus()
        else:
            self.dismiss()

    def action_focus_prompt(self) -> None:
        self.query_one("#prompt", Input).focus()

    def action_follow(self) -> None:
        self.query_one(RichLog).scroll_end(animate=False)

    @on(Input.Submitted, "#prompt")
    def submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            return
        text = event.value
        event.input.value = ""
        app = self.app
        assert isinstance(app, DevSessionsApp)
        app.send_prompt(self.session_id, text)


class DevSessionsApp(App[None]):
    """``dev-sessions tui``."""

    TITLE = "dev-sessions"
    CSS_PATH = "tui.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("1", "tab('sessions')", "Sessions"),
        Binding("2", "tab('messages')", "Messages"),
        Binding("s", "send", "Send"),
        Binding("a", "answer", "Answer"),
        Binding("i", "interrupt", "Interrupt"),
        Binding("k", "kill", "Kill"),
        Binding("t", "attach", "Attach"),
        Binding("n", "new_message", "New message"),
        Binding("r", "reply", "Reply"),
    ]

    def __init__(
        self,
        sessions: SessionManager,
        messages: Messenger,
        *,
        me: str | None = None,
        clock: views.Clock | None = None,
        live: bool = True,
    ) -> None:
        """``me``: who sends and reads messages (default: as the command line decides, ``user``);
        ``live``: follow changes (False: one look at start-up and after each action, for tests)."""
        super().__init__()
        self.sessions = sessions
        self.messages = messages
        self.me = sessions.settings.me(me)
        self.clock = clock or views.Clock()
        self.live = live
        self.looks = 0
        """How many looks were shown (tests wait on it)."""
        self.last: Look | None = None
        self.mailbox = INBOX
        self._poked = asyncio.Event()
        self._errors: list[str] = []

    # -- layout --------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial="sessions"):
            with TabPane("Sessions", id="sessions"):
                yield SessionsTable(id="sessions-table")
                yield Static(
                    Text("No sessions. Start one with: dev-sessions create", style="dim"), id="no-sessions"
                )
            with TabPane("Messages", id="messages"), Horizontal():
                yield OptionList(id="mailboxes")
                with Vertical(id="mail"):
                    yield MessagesTable(id="messages-table")
                    with VerticalScroll(id="thread-box"):
                        yield Static(id="thread")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"as {self.me}"
        self.query_one("#no-sessions").display = False
        self.query_one(SessionsTable).focus()
        self.follow_changes()
        self.set_interval(AGES_EVERY_S, self.redraw)

    # -- looking ---------------------------------------------------------------------------------------

    def want(self) -> Want:
        conversation = next(
            (s.session_id for s in reversed(self.screen_stack) if isinstance(s, Conversation)), None
        )
        tabs = self.query_one(TabbedContent)
        if tabs.active != "messages":
            return Want(conversation)
        return Want(conversation, self.mailbox, self.query_one(MessagesTable).chosen)

    def take_look(self, want: Want, changes: Changes | None) -> Look:
        """Read what is shown (in a thread: every call here may block)."""
        errors: list[str] = []
        rows: list[tuple[Session, Status]] = []
        usage: dict[str, Usage | str] = {}
        try:
            rows = self.sessions.list_sessions()
            if rows:
                usage = {u.id: (u.error or u.usage) for u in self.sessions.usage().sessions}
        except DevSessionsError as err:
            errors.append(str(err))
        if changes is not None:
            changes.follow(rows)
        logs = None
        if want.conversation is not None and any(s.id == want.conversation for s, _ in rows):
            try:
                logs = (want.conversation, self.sessions.logs(want.conversation))
            except DevSessionsError as err:
                errors.append(str(err))
        mail = None
        if want.mailbox is not None:
            try:
                mail = self.read_mail(want)
            except DevSessionsError as err:
                errors.append(str(err))
        return Look(rows, usage, logs, mail, errors)

    def read_mail(self, want: Want) -> Mail:
        spaces = self.messages.spaces()
        mailbox = want.mailbox or INBOX
        if mailbox == INBOX:
            found = self.messages.read(self.me)
        elif mailbox == FEED:
            found = self.messages.feed(limit=200, viewer=self.me)
        else:
            found = self.messages.space_read(mailbox, self.me, limit=200)
        thread = []
        if want.thread is not None and any(m.id == want.thread for m in found):
            thread = self.messages.thread(want.thread, self.me)
        return Mail(spaces, mailbox, found, thread)

    @work(exclusive=True, group="live")
    async def follow_changes(self) -> None:
        """The one loop that keeps the screens current: look, show, sleep until something changes
        (or an action asks), again."""
        # Made in a thread: on a PostgreSQL store it connects to the server (and imports psycopg).
        changes = await asyncio.to_thread(Changes, self.sessions.settings) if self.live else None
        try:
            while True:
                self._poked.clear()
                try:
                    want = self.want()
                except NoMatches:  # the app is closing: its widgets are gone
                    return
                try:
                    look = await asyncio.to_thread(self.take_look, want, changes)
                except Exception as err:  # a long-running loop: a bug here must not stop the updates
                    log.debug("look failed", exc_info=True)
                    look = Look([], {}, errors=[f"could not read the sessions: {err}"])
                try:
                    self.show(look)
                except NoMatches:
                    return
                waits: set[asyncio.Future[object]] = {asyncio.ensure_future(self._poked.wait())}
                if changes is not None:
                    waits.add(asyncio.ensure_future(changes.wait_async(LOOK_AT_LEAST_S)))
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in waits:
                        task.cancel()
                    await asyncio.gather(*waits, return_exceptions=True)
        finally:
            if changes is not None:
                changes.close()

    def poke(self) -> None:
        """Look again now (after an action, or when what is shown changes)."""
        self._poked.set()

    def show(self, look: Look) -> None:
        self.last = look
        errors = [one_line(e) for e in look.errors]
        for error in errors:
            if error not in self._errors:  # the same failure at every look is said once
                self.notify(error, severity="error", markup=False)
        self._errors = errors
        self.redraw()
        self.looks += 1

    def redraw(self) -> None:
        look = self.last
        if look is None:
            return
        table = self.query_one(SessionsTable)
        table.show(
            [(s.id, views.session_row(s, st, look.usage.get(s.id), self.clock)) for s, st in look.rows]
        )
        if look.rows and not table.display:
            table.display = True
            if self.focused is None:  # it lost the focus when it was hidden: it has it back
                table.focus()
        table.display = bool(look.rows)
        self.query_one("#no-sessions").display = not look.rows
        waiting = sum(1 for _, st in look.rows if st.state == "waiting_for_input")
        spent = sum(u.tokens for u in look.usage.values() if isinstance(u, Usage))
        parts = [f"as {self.me}", f"{len(look.rows)} session{'s' if len(look.rows) != 1 else ''}"]
        if waiting:
            parts.append(f"{waiting} waiting for input")
        parts.append(f"{views.tokens(spent)} tokens")
        self.sub_title = " · ".join(parts)
        by_id = {s.id: (s, st) for s, st in look.rows}
        for screen in self.screen_stack:
            if isinstance(screen, Conversation) and screen.is_mounted:
                session, status = by_id.get(screen.session_id, (None, None))
                screen.show(session, status, look.usage.get(screen.session_id))
                if look.logs is not None and look.logs[0] == screen.session_id:
                    screen.show_log(look.logs[1], self.clock)
        if look.mail is not None:
            self.show_mail(look.mail)

    def show_mail(self, mail: Mail) -> None:
        boxes = self.query_one("#mailboxes", OptionList)
        wanted = [INBOX, FEED, *(s.name for s in mail.spaces)]
        if [boxes.get_option_at_index(i).id for i in range(boxes.option_count)] != wanted:
            boxes.clear_options()
            boxes.add_options(
                [
                    ListOption(Text(f"Inbox ({cell(self.me)})"), id=INBOX),
                    ListOption(Text("Everything"), id=FEED),
                    *(ListOption(views.space_label(s), id=s.name) for s in mail.spaces),
                ]
            )
            if mail.mailbox in wanted:
                boxes.highlighted = wanted.index(mail.mailbox)
        if mail.mailbox == self.mailbox:
            self.query_one(MessagesTable).show(mail.messages, self.clock)
            self.query_one("#thread", Static).update(
                views.thread(mail.thread, self.clock)
                if mail.thread
                else Text("Pick a message to read its thread.", style="dim")
            )

    # -- choosing -------------------------------------------------------------------------------------

    def chosen_session(self) -> tuple[Session, Status] | None:
        """The session an action is for: the open conversation's, else the one under the cursor."""
        if isinstance(self.screen, Conversation):
            wanted: str | None = self.screen.session_id
        elif self.query_one(TabbedContent).active == "sessions":
            wanted = self.query_one(SessionsTable).chosen
        else:
            wanted = None
        if wanted is None or self.last is None:
            return None
        return next(((s, st) for s, st in self.last.rows if s.id == wanted), None)

    def action_tab(self, tab: str) -> None:
        if not isinstance(self.screen, Conversation) and len(self.screen_stack) == 1:
            self.query_one(TabbedContent).active = tab

    @on(TabbedContent.TabActivated)
    def tab_changed(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "messages":
            self.query_one(MessagesTable).focus()
        else:
            self.query_one(SessionsTable).focus()
        self.poke()

    @on(DataTable.RowSelected, "#sessions-table")
    def open_conversation(self, event: DataTable.RowSelected) -> None:
        sid = event.row_key.value
        if sid is not None:
            self.push_screen(Conversation(sid))  # which asks for a look once it is there

    @on(OptionList.OptionHighlighted, "#mailboxes")
    def mailbox_changed(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id is not None and event.option.id != self.mailbox:
            self.mailbox = event.option.id
            self.poke()

    @on(DataTable.RowHighlighted, "#messages-table")
    def message_highlighted(self) -> None:
        self.poke()

    # -- acting ---------------------------------------------------------------------------------------

    def act(self, what: Callable[[], str | None]) -> None:
        """Run a library call in a thread; its one line (or error) as a notification, then look again."""

        def run() -> None:
            try:
                said = what()
            except DevSessionsError as err:
                self.call_from_thread(self.notify, one_line(str(err)), severity="error", markup=False)
            except Exception as err:  # a face: one line for anything, as the command line does
                log.debug("action failed", exc_info=True)
                self.call_from_thread(self.notify, one_line(f"failed: {err}"), severity="error", markup=False)
            else:
                if said:
                    self.call_from_thread(self.notify, one_line(said), markup=False)
            self.call_from_thread(self.poke)

        self.run_worker(run, thread=True, group="actions", exit_on_error=False)

    def send_prompt(self, session_id: str, text: str) -> None:
        def send() -> str:
            self.sessions.send(session_id, text)
            return f"{session_id}: sent"

        self.act(send)

    def action_send(self) -> None:
        chosen = self.chosen_session()
        if chosen is None:
            return
        if isinstance(self.screen, Conversation):
            self.screen.action_focus_prompt()
            return
        sid = chosen[0].id

        def typed(text: str | None) -> None:
            if text:
                self.send_prompt(sid, text)

        self.push_screen(Prompt(f"Send to {sid}", "a prompt; Enter sends, Esc cancels"), typed)

    def action_answer(self) -> None:
        chosen = self.chosen_session()
        if chosen is None:
            return
        session, status = chosen
        if status.state != "waiting_for_input" or status.dialog is None:
            self.notify(f"{session.id} is {status.state}: no question to answer", markup=False)
            return

        def answered(answer: str | None) -> None:
            if answer is not None:
                self.act(lambda: f"{session.id}: answered {self.sessions.respond(session.id, answer)}")

        self.push_screen(Answer(session.id, status.dialog), answered)

    def action_interrupt(self) -> None:
        chosen = self.chosen_session()
        if chosen is None:
            return
        sid = chosen[0].id
        self.act(
            lambda: f"{sid}: interrupted" if self.sessions.interrupt(sid) else f"{sid}: no turn was running"
        )

    def action_kill(self) -> None:
        chosen = self.chosen_session()
        if chosen is None:
            return
        session = chosen[0]

        def kill() -> str:
            (killed,) = self.sessions.kill([session.id])
            return f"{session.id}: killed" + (f"; {killed.note}" if killed.note else "")

        def confirmed(yes: bool | None) -> None:
            if not yes:
                return
            if isinstance(self.screen, Conversation) and self.screen.session_id == session.id:
                self.screen.dismiss()
            self.act(kill)

        what = f"Kill {session.id}? Its agent is stopped and the session forgotten"
        what += f" ({session.description})." if session.description else "."
        self.push_screen(Confirm(what, "Kill"), confirmed)

    def action_attach(self) -> None:
        chosen = self.chosen_session()
        if chosen is None:
            return
        session = chosen[0]
        if session.cli != "claude":
            self.notify(f"{session.id}: a {session.cli} session has no terminal; its conversation is here")
            return
        if session.host:
            self.notify(f"{session.id} runs on {session.host}: attach there", markup=False)
            return
        argv = attach_argv(session)
        environ = dict(self.sessions.settings.environ)
        environ.pop("TMUX", None)  # from inside tmux: attach to the session's own server all the same
        try:
            with self.suspend():
                done = subprocess.run(argv, env=environ, check=False)
        except SuspendNotSupported:
            self.notify(f"attach from a terminal: {' '.join(argv)}", markup=False)
            return
        except OSError as err:
            self.notify(one_line(f"{session.id}: could not run tmux: {err}"), severity="error", markup=False)
            return
        if done.returncode != 0:
            self.notify(f"{session.id}: tmux attach exited with {done.returncode}", severity="error")
        self.poke()

    def send_message(self, to: str, body: str, reply_to: int | None = None) -> str:
        sent = self.messages.send(to, body, sender=self.me, reply_to=reply_to)
        return f"sent #{sent.id} to {to}"

    def action_new_message(self) -> None:
        def written(message: tuple[str, str] | None) -> None:
            if message is not None:
                to, body = message
                self.act(lambda: self.send_message(to, body))

        to = "" if self.mailbox in (INBOX, FEED) else self.mailbox
        self.push_screen(Compose(f"A message from {self.me}", to), written)

    def action_reply(self) -> None:
        chosen = self.query_one(MessagesTable).chosen
        if chosen is None:
            return
        look = self.last
        original = None
        if look is not None and look.mail is not None:
            original = next((m for m in look.mail.messages if m.id == chosen), None)
        if original is None:
            return

        def written(message: tuple[str, str] | None) -> None:
            if message is None:
                return
            to, body = message
            if to == original.sender:
                self.act(lambda: f"replied #{self.messages.reply(chosen, body, sender=self.me).id}")
            else:
                self.act(
                    lambda: (
                        f"sent #{self.messages.send(to, body, sender=self.me, reply_to=chosen).id} to {to}"
                    )
                )

        to = original.space or original.sender
        self.push_screen(Compose(f"Reply to #{chosen} from {self.me}", to), written)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show each key where it applies: session keys on sessions, message keys on messages."""
        on_messages = self.query_one(TabbedContent).active == "messages"
        if action == "tab":
            return len(self.screen_stack) == 1
        if action in ("new_message", "reply"):
            return on_messages and len(self.screen_stack) == 1
        if action in ("send", "answer", "interrupt", "kill", "attach") and not isinstance(
            self.screen, Conversation
        ):
            return not on_messages
        return True


def run(sessions: SessionManager, messages: Messenger, me: str | None = None) -> int:
    app = DevSessionsApp(sessions, messages, me=me)
    with contextlib.suppress(KeyboardInterrupt):
        app.run()
    return 0
