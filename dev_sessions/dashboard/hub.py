"""The one task per dashboard that keeps every open page current.

It sleeps on :class:`dev_sessions.live.Changes` (the file-system events that end a ``wait``: the
stores, the hook events, the Claude sessions' state and transcripts; a PostgreSQL message server's
push; a look by hand only for busy Codex threads and remote hosts). After each wake-up it re-reads, in
a worker thread, the session list, the conversations that some page shows and the usage, renders what
it shows, and hands each connected stream only what changed for it: the overview's rows when they
differ, a conversation's new items (each stream knows how many it has), its status panel and token
count when they differ, and "changed" to the messages pages when the messages moved (``messages.db``'s
size and time; on a server, where no file here changes, the store's
:meth:`~dev_sessions.messaging.store.MessageStore.stamp`). However many pages are open, there is one
watcher and one look per wake-up. With no page open it does nothing at all; with pages open and
nothing happening it sleeps on inotify and the server's push (and looks once every ``IDLE_LOOK_S`` in
case a change came without an event).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from dev_sessions.backend import LogItem, Status
from dev_sessions.config import Settings
from dev_sessions.dashboard import pages
from dev_sessions.errors import DevSessionsError
from dev_sessions.messaging.machines import shared
from dev_sessions.messaging.store import MessageStore, store_for
from dev_sessions.sessions import SessionManager
from dev_sessions.store import Session
from dev_sessions.usage import SessionUsage

log = logging.getLogger(__name__)

IDLE_LOOK_S = 60.0
QUEUE_SIZE = 256
"""Events a stream may fall behind by before it is closed (its page reconnects and starts afresh)."""


@dataclass(eq=False)
class Stream:
    """One connected page's event stream: what it follows and what it has been sent."""

    kind: str  # "sessions", "conversation" or "messages"
    csrf: str
    session_id: str = ""
    sent: int = 0  # conversation: items the page has
    status_html: str = ""
    rows_html: str = ""
    tokens_html: str = ""
    shown: list[LogItem] | None = None  # conversation: the items sent (None: not known yet)
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )

    def push(self, event: str, data: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait((event, data))
        except asyncio.QueueFull:
            # A page that does not read: end its stream (the browser reconnects and starts afresh).
            self.end()

    def end(self) -> None:
        """End the stream: nothing queued is sent any more, the response ends."""
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                self.queue.get_nowait()
        self.queue.put_nowait(None)


@dataclass
class Conversation:
    items: list[LogItem] = field(default_factory=list)
    session: Session | None = None
    status: Status | None = None
    error: str = ""


@dataclass
class Look:
    """What one look found."""

    rows: list[tuple[Session, Status]]
    usage: dict[str, SessionUsage | str]
    conversations: dict[str, Conversation]
    messages_stamp: tuple[int, ...]


class Hub:
    def __init__(self, settings: Settings, sessions: Callable[[], SessionManager] | None = None) -> None:
        self.settings = settings
        self.sessions = sessions or (lambda: SessionManager(settings))
        self.streams: set[Stream] = set()
        self.last: Look | None = None
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._store: MessageStore | None = None  # a server's, for the messages' stamp
        self._store_lock = threading.Lock()  # looks run in worker threads, a join's beside the loop's
        self._store_error = ""

    # -- streams ------------------------------------------------------------------------------------

    async def join(self, stream: Stream) -> None:
        """Add a stream and send it what it shows now (read at once if no look has it yet)."""
        look = self.last
        want_conversation = stream.kind == "conversation"
        if look is None or (want_conversation and stream.session_id not in look.conversations):
            watched = {s.session_id for s in self.streams if s.kind == "conversation"}
            if want_conversation:
                watched.add(stream.session_id)
            look = await asyncio.to_thread(self._look, watched, self.last)
            self.last = look
        self.streams.add(stream)
        self._send(stream, look)
        self.poke()

    def leave(self, stream: Stream) -> None:
        self.streams.discard(stream)

    def end_visit(self, csrf: str) -> None:
        """End the streams of a visit that ended (logged out, or logged in again): a page left open
        in another tab gets nothing more."""
        for stream in list(self.streams):
            if stream.csrf == csrf:
                self.streams.discard(stream)
                stream.end()

    def poke(self) -> None:
        """Look again now (a page joined, or the dashboard itself changed something)."""
        self._poke.set()

    # -- the loop -----------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for stream in list(self.streams):
            stream.end()
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    async def run(self) -> None:
        from dev_sessions.live import Changes

        # Made in a thread: on a PostgreSQL store it connects to the server (and imports psycopg).
        with await asyncio.to_thread(Changes, self.settings) as changes:
            while True:
                if not self.streams:
                    await self._poke.wait()  # nobody looks: no watching, no reading
                self._poke.clear()
                watched = {s.session_id for s in self.streams if s.kind == "conversation"}
                try:
                    # A reply first: the conversations shown (one transcript read each) go out
                    # before the list and the usage of every session are read.
                    logs = await asyncio.to_thread(self._logs, watched, self.last)
                    if self.last is not None and logs:
                        early = replace(self.last, conversations={**self.last.conversations, **logs})
                        for stream in list(self.streams):
                            if stream.kind == "conversation":
                                self._send(stream, early)
                    look = await asyncio.to_thread(self._look, watched, self.last, logs)
                except Exception:
                    # The one broad catch of the loop: a failure of one look (a bug, a vanished file)
                    # must not end every page's updates; it is logged and the next wake-up tries again.
                    log.exception("the dashboard's look failed")
                    await asyncio.sleep(1.0)
                    continue
                self.last = look
                for stream in list(self.streams):
                    self._send(stream, look)
                changes.follow(look.rows)
                sleeper = asyncio.ensure_future(changes.wait_async(IDLE_LOOK_S))
                poked = asyncio.ensure_future(self._poke.wait())
                try:
                    await asyncio.wait({sleeper, poked}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (sleeper, poked):
                        task.cancel()
                    # gather, not `await task` under suppress(CancelledError): a stop that lands
                    # while the two are being reaped must end this loop, not be swallowed with
                    # theirs (it was: the dashboard then outlived SIGTERM until it was killed).
                    await asyncio.gather(sleeper, poked, return_exceptions=True)

    # -- reading (in a worker thread) ---------------------------------------------------------------

    def _logs(self, watched: set[str], before: Look | None) -> dict[str, Conversation]:
        """The conversations shown, read again (with the session and status of the last look)."""
        if before is None:
            return {}
        manager = self.sessions()
        found: dict[str, Conversation] = {}
        for sid in sorted(watched):
            had = before.conversations.get(sid)
            if had is None or had.session is None:
                continue
            try:
                found[sid] = replace(had, items=manager.logs(sid), error="")
            except DevSessionsError as err:
                found[sid] = replace(had, error=str(err))
        return found

    def _look(
        self, watched: set[str], before: Look | None, logs: dict[str, Conversation] | None = None
    ) -> Look:
        manager = self.sessions()
        try:
            rows = manager.list_sessions()
        except DevSessionsError as err:
            log.warning("the session list failed: %s", err)
            rows = before.rows if before else []
        known = {s.id: (s, st) for s, st in rows}
        conversations: dict[str, Conversation] = {}
        for sid in sorted(watched):
            found = Conversation()
            if sid in known:
                found.session, found.status = known[sid]
                # A Claude session's early read stands: a later change of its transcript is a file
                # event, which wakes the next look. A Codex thread's writes are no file event, and
                # the early read came before its status: a turn that ended between the two (the
                # fake model's take ~0.1 s) left "turn inProgress" on an idle session's page, with
                # nothing to look again. So its log is read after its status.
                early = logs.get(sid) if logs else None
                if early is not None and not early.error and found.session.cli != "codex":
                    found.items = early.items
                    conversations[sid] = found
                    continue
                try:
                    found.items = manager.logs(sid)
                except DevSessionsError as err:
                    found.error = str(err)
                    if before and sid in before.conversations:
                        found.items = before.conversations[sid].items
            conversations[sid] = found
        usage: dict[str, SessionUsage | str] = {}
        if rows:
            try:
                for row in manager.usage().sessions:
                    usage[row.id] = row
            except DevSessionsError as err:
                usage = {s.id: str(err) for s, _ in rows}
        return Look(rows, usage, conversations, self._messages_stamp(before))

    def _messages_stamp(self, before: Look | None) -> tuple[int, ...]:
        """What tells the messages pages that the messages changed: ``messages.db``'s size and time,
        or on a server (where nothing here changes) :meth:`MessageStore.stamp`, one query."""
        if shared(self.settings):
            with self._store_lock:
                try:
                    if self._store is None:
                        self._store = store_for(self.settings)
                    found = self._store.stamp()
                except DevSessionsError as err:  # the page says so when it reads; keep what was seen
                    if str(err) != self._store_error:  # once, not at every look while it lasts
                        log.warning("the messages could not be looked at: %s", err)
                    self._store_error = str(err)
                    return before.messages_stamp if before else ()
                self._store_error = ""
                return found
        stamp: list[int] = []
        for name in ("messages.db", "messages.db-wal"):
            try:
                info = os.stat(self.settings.home / name)
            except OSError:
                stamp += [0, 0]
                continue
            stamp += [info.st_size, info.st_mtime_ns]
        return tuple(stamp)

    # -- what each stream is sent -------------------------------------------------------------------

    def _send(self, stream: Stream, look: Look) -> None:
        if stream.kind == "sessions":
            rows_html = pages.session_rows(look.rows, look.usage)
            if rows_html != stream.rows_html:
                stream.rows_html = rows_html
                stream.push("sessions", {"html": rows_html, "total": total_line(look)})
        elif stream.kind == "conversation":
            conversation = look.conversations.get(stream.session_id)
            if conversation is None:
                return
            items = conversation.items
            # What the page has: the items sent, or (first look after a (re)connect) as many as it
            # says it has. A log is not only appended to: Codex's changes in place while a turn
            # runs, and /clear starts a new one. The page drops its items from the first that
            # differs (``from``) and takes the rest.
            had = stream.shown if stream.shown is not None else items[: stream.sent]
            same = 0
            for old, new in zip(had, items, strict=False):
                if old != new:
                    break
                same += 1
            if same < len(had) or len(items) > len(had):
                stream.push(
                    "items",
                    {"html": pages.log_items(items[same:], same), "count": len(items), "from": same},
                )
            stream.sent, stream.shown = len(items), items
            status_html = pages.status_panel(conversation.session, conversation.status, stream.csrf)
            if status_html != stream.status_html:
                stream.status_html = status_html
                stream.push("status", {"html": status_html})
            if stream.session_id in look.usage:  # the early look (a reply first) has no usage
                tokens_html = pages.tokens_cell(look.usage[stream.session_id])
                if tokens_html != stream.tokens_html:
                    stream.tokens_html = tokens_html
                    stream.push("tokens", {"html": tokens_html})
        elif stream.kind == "messages":
            stamp = "-".join(map(str, look.messages_stamp))
            if stamp != stream.rows_html:
                first = not stream.rows_html
                stream.rows_html = stamp
                if not first:
                    stream.push("changed", {})


def total_line(look: Look) -> str:
    counted = [u for u in look.usage.values() if isinstance(u, SessionUsage) and u.error is None]
    tokens = sum(u.usage.tokens for u in counted)
    busy = sum(1 for _, status in look.rows if status.state == "working")
    return f"{len(look.rows)} session(s), {busy} working · {pages.number(tokens)} tokens"
