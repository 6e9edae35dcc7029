"""Waiting for Claude turns to end: many sessions at once, woken by file-system events, not polling.

A turn's end is in the transcript (a :class:`.transcript.TurnTracker` fed from where the transcript
stood at the last send); the ``StopFailure`` hook announces a failed turn; Claude's own state file
says when the turn waits on a question, or when an agent went idle without ending the turn (an
interrupt before any reply writes nothing); a pidfd says when Claude exits. :func:`turn_ends` is
written once, as rounds (:data:`dev_sessions.watch.Steps`), for the blocking ``wait`` and the gateway's
asynchronous one. It only reads: nothing here types into a pane.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

from dev_sessions.backend import WaitResult
from dev_sessions.claude import events as ev
from dev_sessions.claude import transcript as tx
from dev_sessions.claude import wiring
from dev_sessions.claude.facts import Facts
from dev_sessions.claude.status import exit_detail
from dev_sessions.store import LastSend, Session, now_iso, parse_iso
from dev_sessions.watch import Tail, Watcher, line_aligned_size

log = logging.getLogger(__name__)

_ABANDON_GRACE = 0.5


def turn_ends(
    facts: Facts, sessions: Sequence[Session], timeout: float | None
) -> Generator[tuple[Watcher, float], None, list[WaitResult]]:
    """The waiting, as rounds: each round looks at every session and yields how long to sleep;
    the caller sleeps (blocking or asynchronously) and resumes it."""
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    results: dict[str, WaitResult] = {}
    with Watcher() as watcher:
        waiters: dict[str, TurnWaiter] = {}
        for session in sessions:
            waiter = TurnWaiter(facts, session, watcher, started)
            result = waiter.begin()
            if result is None:
                waiters[session.id] = waiter
            else:
                results[session.id] = result
        announced = False
        try:
            while waiters:
                for sid, waiter in list(waiters.items()):
                    result = waiter.check()
                    if result is not None:
                        results[sid] = result
                        del waiters[sid]
                if not waiters:
                    break
                remaining = 2.0 if deadline is None else deadline - time.monotonic()
                soon = [w.recheck_in for w in waiters.values() if w.recheck_in is not None]
                if remaining <= 0:
                    elapsed = time.monotonic() - started
                    for sid in waiters:
                        results[sid] = WaitResult(sid, "timeout", elapsed)
                    break
                if not announced:
                    # Said once, as the wait starts to block: tests wait for it before they act.
                    for sid in waiters:
                        log.debug("%s: waiting for the turn to end", sid)
                    announced = True
                yield watcher, min([remaining, 2.0, *soon])
        finally:
            for waiter in waiters.values():
                waiter.close()
    return [results[s.id] for s in sessions]


class TurnWaiter:
    """Follows one session until the turn of its last send ends, it needs an answer, or it dies."""

    def __init__(self, facts: Facts, session: Session, watcher: Watcher, started: float) -> None:
        self.facts = facts
        self.session = session
        self.watcher = watcher
        self.started = started
        self.pid = 0
        self.tail: Tail | None = None
        self.tracker: tx.TurnTracker | None = None
        self.state_path: Path | None = None
        self.state_mtime: float | None = None
        self.sent_ms = 0.0
        self.idle_since: float | None = None
        self.events_offset: int | None = None

    def _result(self, outcome: Any, **extra: Any) -> WaitResult:
        return WaitResult(self.session.id, outcome, time.monotonic() - self.started, **extra)

    def begin(self) -> WaitResult | None:
        facts, session = self.facts, self.session
        live = facts.live(session)
        if live.pane is None or live.pane.dead:
            return self._result("exited", error=exit_detail(live.pane))
        self.pid = live.pane.pid
        self.watcher.watch_pid(self.pid)
        path = facts.transcript(session)
        mark = session.last_send
        if mark is None:
            # Nothing sent through us: follow a turn someone started by hand, if one runs.
            status = facts.status(session, live)
            if status.state == "waiting_for_input":
                return self._result("waiting_for_input", dialog=status.dialog, error=status.detail or None)
            if status.state != "working":
                return self._result("idle")
            mark = LastSend(offset=line_aligned_size(path), queued=False, ahead=0, at=now_iso())
        sent = parse_iso(mark.get("at", ""))
        self.sent_ms = sent.timestamp() * 1000 if sent else 0.0
        self.tail = Tail(path, int(mark.get("offset", 0)))
        self.tracker = tx.TurnTracker(queued=bool(mark.get("queued")), ahead=int(mark.get("ahead", 0)))
        self.watcher.watch_dir(path.parent)
        if session.delivery:
            self.events_offset = int(mark.get("events", facts.events_since(session, 0)[1]))
            self.watcher.watch_dir(wiring.events_path(facts.settings.home, session.id).parent)
        sessions_dir = facts.config_dir(session) / "sessions"
        self.watcher.watch_dir(sessions_dir)
        self.state_path = sessions_dir / f"{self.pid}.json"
        return None

    @property
    def recheck_in(self) -> float | None:
        """How soon to look again without any event (while an idle agent is given its grace)."""
        return None if self.idle_since is None else _ABANDON_GRACE / 2

    def check(self) -> WaitResult | None:
        assert self.tail is not None and self.tracker is not None
        if not self.tail.path.exists():
            # Claude creates the transcript (and maybe its directory) at the first prompt.
            self.tail.path = self.facts.transcript(self.session)
            self.watcher.watch_dir(self.tail.path.parent)
        result = self.tracker.feed(tx.parse_lines(self.tail.read_lines()))
        if result is not None:
            return self._result(result.outcome, error=result.error)
        announced = self._check_events()
        if announced is not None:
            return announced
        if self.watcher.exited(self.pid):
            result = self.tracker.feed(tx.parse_lines(self.tail.read_lines()))
            if result is not None:
                return self._result(result.outcome, error=result.error)
            live = self.facts.live(self.session)
            return self._result("exited", error=exit_detail(live.pane))
        return self._check_state()

    def _check_events(self) -> WaitResult | None:
        """A failed turn, as the ``StopFailure`` hook announces it. (A dialog the hooks announce is
        taken up once Claude's state file says it waits: an answered one must not count again.)"""
        if self.events_offset is None:
            return None
        found, self.events_offset = self.facts.events_since(self.session, self.events_offset)
        failure = ev.fold(found).failure if found else None
        if failure is not None:
            return self._result("failed", error=failure)
        return None

    def _check_state(self) -> WaitResult | None:
        """What Claude's own status file adds: a question the turn waits on, or a turn that was dropped.

        An interrupt before any reply arrived writes nothing to the transcript (Claude puts the prompt
        back into its input box), so an agent that went idle after our send, and stays idle with no turn
        end for a moment, has dropped the turn.
        """
        assert self.state_path is not None
        try:
            mtime = self.state_path.stat().st_mtime
        except FileNotFoundError:
            return None
        if mtime != self.state_mtime:
            self.state_mtime = mtime
            state = self.facts.claude_state(self.session, self.pid) or {}
            own = state.get("status")
            if own == "waiting":
                status = self.facts.status(self.session)
                if status.state == "waiting_for_input":
                    return self._result(
                        "waiting_for_input", dialog=status.dialog, error=status.detail or None
                    )
            changed = float(state.get("statusUpdatedAt") or state.get("updatedAt") or 0)
            if own == "idle" and changed >= self.sent_ms:
                self.idle_since = self.idle_since or time.monotonic()
            else:
                self.idle_since = None
        if self.idle_since is not None and time.monotonic() - self.idle_since >= _ABANDON_GRACE:
            return self._result(
                "interrupted", error="stopped before any reply; the prompt went back to the input box"
            )
        return None

    def close(self) -> None:
        if self.tail is not None:
            self.tail.close()
