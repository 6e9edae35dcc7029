"""A Claude session's events as they land (:mod:`dev_sessions.follow`), read, never typed.

What is read: the transcript, from where the stream starts on, only its new complete lines at each
wake-up (``watch.Tail``), turned into events by ``transcript.EventReader`` and counted by
``usage.Tally`` for the tokens; Claude's own state file (``busy`` / ``idle`` / ``waiting``) for the
status, and on ``waiting`` the dialog as ``status`` finds it; the agent's pid for its exit. It sleeps
on inotify (the transcript's, the state file's and the hooks' directories) and a pidfd, so a quiet
session costs nothing but one look a second (``TICK_S``: a transcript that appears late).

After ``/clear`` Claude goes on in a new transcript, under a new session id, which its
``SessionStart`` hook announces (the hooks' events file, as ``ClaudeBackend.follow`` reads it): the
stream reads the old transcript to its end and goes on in the new one, from its start. The tokens
are then the new transcript's, as ``usage`` counts them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import Any

from dev_sessions.claude import events as ev
from dev_sessions.claude import transcript as tx
from dev_sessions.claude import wiring
from dev_sessions.claude.facts import Facts
from dev_sessions.follow import Event, Rounds, Start, since_filter
from dev_sessions.store import Session, now_iso
from dev_sessions.usage import Tally
from dev_sessions.watch import Tail, Watcher, line_aligned_size

TICK_S = 1.0
_STATES = {"busy": "working", "idle": "idle", "waiting": "waiting_for_input"}


class WatchPause:
    """Sleep on a watcher (inotify, pidfds) for at most ``seconds``."""

    def __init__(self, watcher: Watcher, seconds: float) -> None:
        self.watcher = watcher
        self.seconds = seconds

    def block(self) -> Any:
        self.watcher.wait(self.seconds)

    async def block_async(self) -> Any:
        await self.watcher.wait_async(self.seconds)


def rounds(facts: Facts, session: Session, start: Start, since: str | None) -> Rounds:
    sid = session.id
    live = facts.live(session)
    path = facts.transcript(session)
    if start == "all":
        offset = 0
    elif start == "turn" and session.last_send is not None:
        offset = int(session.last_send.get("offset", 0))
    else:
        offset = line_aligned_size(path)
    tally = Tally()
    if offset:
        with open(path, "rb") as file:  # the tokens so far count the lines before the start too
            tally.feed(file.read(offset).split(b"\n"))
    reader = tx.EventReader(sid)
    tail = Tail(path, offset)
    if live.pane is None or live.pane.dead:
        yield since_filter(reader.feed(tx.parse_lines(tail.read_lines())), since)
        tail.close()
        yield [Event("status", sid, now_iso(), state="exited")]
        return
    pid = live.pane.pid
    state_dir = facts.config_dir(session) / "sessions"
    hooks = Hooks(facts, session)
    with Watcher() as watcher:
        watcher.watch_pid(pid)
        watcher.watch_dir(path.parent)
        watcher.watch_dir(state_dir)
        if session.delivery:
            watcher.watch_dir(hooks.path.parent)
        seen_state: str | None = None
        state_mtime: float | None = None
        tokens: int | None = None

        def read(lines: list[bytes]) -> list[Event]:
            if not lines:
                return []
            tally.feed(lines)
            return since_filter(reader.feed(tx.parse_lines(lines)), since)

        try:
            while True:
                found: list[Event] = []
                cleared = hooks.cleared(session)
                if cleared is not None:  # /clear: the old transcript to its end, then the new one
                    found += read(tail.read_lines())
                    tail.close()
                    session = cleared
                    tail = Tail(facts.transcript(session), 0)
                    reader, tally, tokens, state_mtime = tx.EventReader(sid), Tally(), None, None
                    watcher.watch_dir(tail.path.parent)
                lines = tail.read_lines()
                found += read(lines)
                state_file = state_dir / f"{pid}.json"
                try:
                    mtime: float | None = state_file.stat().st_mtime
                except FileNotFoundError:
                    mtime = None
                if mtime != state_mtime:
                    state_mtime = mtime
                    own = (facts.claude_state(session, pid) or {}).get("status")
                    word = _STATES.get(str(own))
                    if word is not None and word != seen_state:
                        seen_state = word
                        found.append(Event("status", sid, now_iso(), state=word))
                        if word == "waiting_for_input":
                            found.extend(_dialog(facts, session))
                now = tally.usage().tokens if lines or tokens is None else tokens
                if now != tokens:
                    tokens = now
                    found.append(Event("tokens", sid, now_iso(), tokens=now))
                if found:
                    yield found
                if watcher.exited(pid):
                    last = read(tail.read_lines())
                    if last:
                        yield last
                    yield [Event("status", sid, now_iso(), state="exited")]
                    return
                if not tail.path.exists():  # written at the first prompt, its directory maybe too
                    watcher.watch_dir(tail.path.parent)
                yield WatchPause(watcher, TICK_S)
        finally:
            tail.close()


class Hooks:
    """The session's hook events as they are appended (from where they stood when the stream
    started: ``SessionManager.get`` has followed the session to its transcript of then)."""

    def __init__(self, facts: Facts, session: Session) -> None:
        self.facts = facts
        self.path = wiring.events_path(facts.settings.home, session.id)
        self.offset = 0
        if session.delivery:
            with contextlib.suppress(FileNotFoundError):
                self.offset = self.path.stat().st_size

    def cleared(self, session: Session) -> Session | None:
        """The session as it goes on after a ``/clear`` announced since the last look, or None."""
        if not session.delivery:
            return None
        found, self.offset = self.facts.events_since(session, self.offset)
        return after_clear(session, found)


def after_clear(session: Session, hooked: list[ev.Event]) -> Session | None:
    """The session as it goes on after a ``/clear`` among ``hooked`` (a ``SessionStart`` under a
    session id it has not had: Claude writes a new transcript), keeping its old ids; None when there
    is none. A send before the clear has no turn to follow any more."""
    started = ev.last_start(hooked)
    if started is None or started.session_id in (session.internal_id, *session.previous_ids):
        return None
    return session.evolve(
        internal_id=started.session_id,
        previous_ids=(*session.previous_ids, session.internal_id),
        last_send=None,
    )


def _dialog(facts: Facts, session: Session) -> Generator[Event, None, None]:
    status = facts.status(session)
    if status.dialog is not None:
        yield Event("dialog", session.id, now_iso(), text=status.dialog.question)
