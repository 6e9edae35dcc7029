"""A Claude session's events as they land (:mod:`dev_sessions.follow`), read, never typed.

What is read: the transcript, from where the stream starts on, only its new complete lines at each
wake-up (``watch.Tail``), turned into events by ``transcript.EventReader`` and counted by
``usage.Tally`` for the tokens; Claude's own state file (``busy`` / ``idle`` / ``waiting``) for the
status, and on ``waiting`` the dialog as ``status`` finds it; the agent's pid for its exit. It sleeps
on inotify (the transcript's and the state file's directories) and a pidfd, so a quiet session costs
nothing but one look a second (``TICK_S``: a transcript that appears late, Claude's ``/clear``).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from dev_sessions.claude import transcript as tx
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
    with Watcher() as watcher:
        watcher.watch_pid(pid)
        watcher.watch_dir(path.parent)
        watcher.watch_dir(state_dir)
        seen_state: str | None = None
        state_mtime: float | None = None
        tokens: int | None = None
        try:
            while True:
                lines = tail.read_lines()
                found: list[Event] = []
                if lines:
                    tally.feed(lines)
                    found = since_filter(reader.feed(tx.parse_lines(lines)), since)
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
                    last = tail.read_lines()
                    if last:
                        yield since_filter(reader.feed(tx.parse_lines(last)), since)
                    yield [Event("status", sid, now_iso(), state="exited")]
                    return
                if not tail.path.exists():  # written at the first prompt, its directory maybe too
                    watcher.watch_dir(path.parent)
                yield WatchPause(watcher, TICK_S)
        finally:
            tail.close()


def _dialog(facts: Facts, session: Session) -> Generator[Event, None, None]:
    status = facts.status(session)
    if status.dialog is not None:
        yield Event("dialog", session.id, now_iso(), text=status.dialog.question)
