"""Keeping a face current: a wake-up whenever what it shows may have changed.

The dashboard and the TUI show the sessions, a session's conversation and the messages, and redraw
them as they change. They are woken by the signals that end a ``wait``, never by polling a screen:

* file-system events in the state directory (the session store ``sessions.json``, the message
  database ``messages.db`` and its journal), in its ``events/`` directory (the hook events each Claude
  session writes at every prompt, tool call and turn end), in each local Claude session's state
  directory and in its transcript's directory (a reply landing);
* with the messages on a PostgreSQL server (``DEV_SESSIONS_MESSAGES_URL``), where nothing on this
  machine's disk changes when mail comes: the server's push, a
  :class:`~dev_sessions.messaging.postgres.Listener` of anyone's mail (LISTEN on the channel every
  message is announced on), on a connection of its own, made again with back-off when it is lost (the
  first wake-up after it is a look, which catches up). The server's client (libpq) is loaded only then;
* the one fallback: a Codex thread's state lives in its app-server, reached through the bridge, so
  while a Codex session is busy the face looks again every ``CODEX_EVERY_S``; and no event crosses
  ssh, so while there are sessions on remote hosts it looks again every ``REMOTE_EVERY_S``.

An idle fleet costs nothing: with every session idle and local, a face sleeps until a file changes
(or the messages server says a message came).
A wake-up only means "look again" (as for :class:`~dev_sessions.watch.Watcher`): the face re-reads
what it shows, and a burst of writes is one wake-up (``SETTLE_S``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

from dev_sessions.backend import Status
from dev_sessions.config import Settings
from dev_sessions.errors import DevSessionsError
from dev_sessions.store import Session
from dev_sessions.watch import Watcher

log = logging.getLogger(__name__)

CODEX_EVERY_S = 0.5
REMOTE_EVERY_S = 5.0
SETTLE_S = 0.02
"""After a wake-up, how long more writes are gathered into it (a turn end writes several files)."""


class Changes:
    """What a live face sleeps on. ``follow`` the sessions shown after each look, then ``wait``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._watcher = Watcher()
        self._pending: set[Path] = set()
        self._every: float | None = None
        self._codex_busy: set[str] = set()
        for directory in (settings.home, settings.home / "events"):
            self._watch(directory)
        self._listen()

    def _listen(self) -> None:
        """On a PostgreSQL store, wake on its push too (anyone's mail: a face shows everyone's)."""
        url = self.settings.messages_url
        if not url or not url.startswith(("postgresql://", "postgres://")):
            return  # this machine's messages.db: its directory is watched already
        try:
            from dev_sessions.messaging.postgres import Listener
        except DevSessionsError as err:  # no psycopg: the messages pages say so when they read
            log.warning("new messages will not wake this view: %s", err)
            return
        self._watcher.watch_source(Listener(url, None, patient=True))

    def _watch(self, directory: Path) -> None:
        if not self._watcher.watch_dir(directory):
            self._pending.add(directory)  # not there yet: its nearest parent is, until it is
        else:
            self._pending.discard(directory)

    def follow(self, sessions: Iterable[tuple[Session, Status]]) -> None:
        """Watch what these sessions write (their state and transcripts), and set how soon the next
        ``wait`` must look again by hand (busy Codex threads, remote hosts)."""
        from dev_sessions.claude.facts import Facts

        for directory in list(self._pending):
            self._watch(directory)
        every: float | None = None
        facts = Facts(self.settings)
        busy: set[str] = set()
        for session, status in sessions:
            if session.host:
                every = min(every or REMOTE_EVERY_S, REMOTE_EVERY_S)
            elif session.cli == "codex":
                if status.state not in ("idle", "exited"):
                    every = CODEX_EVERY_S
                    busy.add(session.id)
                elif session.id in self._codex_busy:
                    # Just ended: one more look, as what was read with its status (its log) may have
                    # been read a moment before the turn's end.
                    every = CODEX_EVERY_S
            elif status.state != "exited":
                self._watch(facts.config_dir(session) / "sessions")
                self._watch(facts.transcript(session).parent)
        self._every = every
        self._codex_busy = busy

    @property
    def every(self) -> float | None:
        """How soon a ``wait`` looks again without an event (None: only on events)."""
        return self._every

    def wait(self, timeout: float) -> None:
        """Sleep until something followed may have changed, or ``timeout`` seconds pass."""
        self._watcher.wait(self._bound(timeout))
        self._settle()

    async def wait_async(self, timeout: float) -> None:
        """``wait`` for an asyncio loop (the dashboard): the loop watches the descriptors."""
        import asyncio

        await self._watcher.wait_async(self._bound(timeout))
        await asyncio.sleep(SETTLE_S)
        self._watcher.drain()

    def _bound(self, timeout: float) -> float:
        return timeout if self._every is None else min(timeout, self._every)

    def _settle(self) -> None:
        time.sleep(SETTLE_S)
        self._watcher.drain()

    def close(self) -> None:
        self._watcher.close()

    def __enter__(self) -> Changes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
