"""The deliverer: the one background process that puts queued messages into live sessions.

A message to a session waits in the store as ``queued`` until the session is idle: then it is pasted
into a Claude session's input box (or started as a Codex turn; an ``urgent`` one is steered into a
running Codex turn) and marked ``delivered``. Nobody has to run another command for that to happen:
the deliverer sleeps on file-system events (the message database, Claude's status files) and wakes at
each idle point.

* Started on demand by the commands that queue work (``ensure_deliverer``), never two at once: it
  holds ``deliverer.lock`` for its whole life, and a second one exits at once.
* Gone when nothing is left to deliver (after a short linger, ``DEV_SESSIONS_DELIVERER_LINGER``).
* Its state is the store's: after a crash, the next command that queues or looks at a message starts
  a new one, which carries on from the receipts.
* A failed delivery keeps its reason and is retried with back-off (5 s, 15 s, 1 min, 5 min, 15 min);
  a session that is gone fails for good.
* With webhooks in ``config.json``, it also tells their endpoints of the messages they want
  (:mod:`dev_sessions.messaging.webhooks`): each round hands new messages to one thread per endpoint,
  so that a slow or failing endpoint never holds up a delivery into a session; it stays while an
  endpoint's message is being sent or retried.
"""

from __future__ import annotations

import fcntl
import logging
import logging.handlers
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from dev_sessions import files
from dev_sessions.config import Settings
from dev_sessions.errors import DevSessionsError, MessagesUnavailable, SessionExited
from dev_sessions.files import private_dir
from dev_sessions.messaging.machines import local_sessions, publish
from dev_sessions.messaging.notice import frame
from dev_sessions.messaging.records import Message, Receipt
from dev_sessions.messaging.relay import PULL_EVERY_S, hosts_of, retry_at
from dev_sessions.messaging.store import now_ms, store_for
from dev_sessions.store import Session, SessionStore

if TYPE_CHECKING:
    from dev_sessions.messaging.webhooks import Sender
    from dev_sessions.watch import Watcher

log = logging.getLogger("dev_sessions.messaging.deliver")

CODEX_POLL_S = 0.5
CLAIMED_ELSEWHERE_S = 1.0
WEBHOOKS_BUSY_S = 0.2
"""How often a deliverer looks whether its webhooks' threads are done (they wake nothing)."""
LOST_ROUND_S = 0.5
"""How soon a deliverer whose messages server went away looks again."""
PUBLISH_EVERY_S = 60.0


def _lock_path(settings: Settings) -> Path:
    return settings.home / "deliverer.lock"


def running(settings: Settings) -> bool:
    path = _lock_path(settings)
    if not path.exists():
        return False
    fd = files.open_private(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def ensure_deliverer(settings: Settings, environ: Mapping[str, str]) -> bool:
    """Start the deliverer unless it runs; True if one was started. Never blocks on it."""
    if running(settings):
        return False
    private_dir(settings.home)
    with os.fdopen(files.open_log(settings.home / "deliverer.out"), "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "dev_sessions.messaging.deliver"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=settings.home,
            env=dict(environ),
            start_new_session=True,
            close_fds=True,
        )
    return True


class Deliverer:
    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        from dev_sessions.sessions import SessionManager

        self.settings = settings
        self.environ = dict(environ)
        self.manager = SessionManager(settings)
        self.sessions = SessionStore(settings.store_path)
        self.store = store_for(settings)
        self.linger = settings.deliverer_linger
        self.machine = settings.machine_name()
        self.published: tuple[frozenset[str], float] | None = None
        self.webhooks: Sender | None = None
        if settings.webhooks:
            from dev_sessions.messaging.webhooks import Sender

            self.webhooks = Sender(settings, self.store)

    def close(self) -> None:
        if self.webhooks is not None:
            self.webhooks.close()

    def attempt(self, message: Message, receipt: Receipt, sessions: Mapping[str, Session]) -> str:
        """Try one delivery: ``delivered``, ``failed`` or ``waiting`` (the session is busy)."""
        session = sessions.get(receipt.recipient)
        if session is None:
            self.store.failed(
                message.id, receipt.recipient, f"no session named {receipt.recipient} any more", None
            )
            return "failed"
        if receipt.via == "host" or session.host:
            from dev_sessions.messaging.relay import relay

            outcome = relay(self.settings, self.store, message, receipt.recipient, session.host or "")
            return "relayed" if outcome == "delivered" else outcome
        backend = self.manager.backend(session.cli)
        text = frame(message, receipt.recipient)
        try:
            done = backend.deliver(session, text, urgent=message.priority == "urgent")
        except SessionExited as err:
            self.store.failed(message.id, receipt.recipient, str(err), None)
            return "failed"
        except DevSessionsError as err:
            retry = self._retry_at(receipt.attempts)
            self.store.failed(message.id, receipt.recipient, str(err), retry)
            log.warning("message %d to %s failed: %s", message.id, receipt.recipient, err)
            return "failed"
        if not done:
            return "waiting"
        self.store.delivered(message.id, receipt.recipient)
        log.info("message %d delivered to %s", message.id, receipt.recipient)
        return "delivered"

    def talking(self, sessions: Mapping[str, Session]) -> dict[str, set[str]]:
        """{host: the live sessions here whose answers may wait there}: the parents of its sessions, and
        whoever relayed a message there."""
        local = {sid: s for sid, s in sessions.items() if not s.host}
        hosts = hosts_of(sessions)
        pairs = {(s.host, s.parent) for s in sessions.values() if s.host and s.parent in local}
        relayed = self.store.relay_senders()
        pairs |= {(host, sender) for sender, host in relayed if sender in local and host in hosts}
        live: dict[str, bool] = {}
        found: dict[str, set[str]] = {}
        for host, name in pairs:
            if name not in live:
                session = local[name]
                try:
                    live[name] = self.manager.backend(session.cli).status(session).state != "exited"
                except DevSessionsError:
                    live[name] = False
            if live[name]:
                found.setdefault(str(host), set()).add(str(name))
        return found

    def due(self, sessions: Mapping[str, Session]) -> list[tuple[Message, Receipt]]:
        """What is due for delivery by this deliverer. On a store shared with other machines, only
        what goes to a session of this machine: one unknown here is another machine's to deliver."""
        due = self.store.due()
        if self.store.shared:
            due = [
                (m, r) for m, r in due
                if r.recipient in sessions and r.machine in (None, self.machine)
            ]  # fmt: skip
        return due

    def publish(self, sessions: Mapping[str, Session]) -> None:
        """On a shared store, say which sessions this machine has when that changed, and every
        ``PUBLISH_EVERY_S`` (their status, and that this machine is still there)."""
        if not self.store.shared:
            return
        names = frozenset(local_sessions(sessions))
        if self.published and self.published[0] == names and time.monotonic() < self.published[1]:
            return
        publish(self.store, self.machine, self.manager, sessions)
        self.published = (names, time.monotonic() + PUBLISH_EVERY_S)

    def stays(self, sessions: Mapping[str, Session]) -> bool:
        """On a shared store, the deliverer stays while this machine has sessions: other machines
        may write to them at any moment, and nobody here would start it."""
        return self.store.shared and bool(local_sessions(sessions))

    def next_retry_ms(self, sessions: Mapping[str, Session]) -> int | None:
        """When a failed delivery of this deliverer's is due again (see ``due``)."""
        return self.store.next_retry_ms(sorted(sessions) if self.store.shared else None)

    def has_work(self) -> bool:
        """Something to deliver or retry now or later, or answers to pull for a live session here."""
        sessions = {s.id: s for s in self.sessions.sessions()}
        if self.due(sessions) or self.next_retry_ms(sessions) is not None or self.stays(sessions):
            return True
        if self.webhooks is not None and self.webhooks.has_work(self.store):
            return True
        return bool(self.talking(sessions))

    @staticmethod
    def _retry_at(attempts: int) -> int | None:
        return retry_at(attempts, now_ms())

    def run(self) -> None:
        from dev_sessions.watch import Watcher

        self._idle_since: float | None = None
        self._pull_at = 0.0
        self._talking: dict[str, set[str]] = {}
        with Watcher() as watcher:
            watcher.watch_dir(self.settings.home)
            self.store.watch_mail(watcher)  # on a server, its notifications (the files above on SQLite)
            while True:
                try:
                    timeout = self._round(watcher)
                except MessagesUnavailable as err:
                    # The server went away: the listener connects again with back-off, and a later round
                    # catches up from the receipts (a claim held died with the connection).
                    log.warning("%s; trying again", err)
                    timeout = LOST_ROUND_S
                if timeout is None:
                    return
                watcher.wait(timeout)

    def _round(self, watcher: Watcher) -> float | None:
        """One look at what is due and one delivery attempt per session; how long to sleep then (None:
        nothing was left for the linger, time to go)."""
        sessions = {s.id: s for s in self.sessions.sessions()}
        self.publish(sessions)
        if self.webhooks is not None:
            self.webhooks.look(self.store)  # handed to their threads: nothing here waits for them
        waiting_codex = False
        claimed_elsewhere = False
        blocked: set[str] = set()
        # Urgent messages first: they may be steered into a running turn.
        due = sorted(self.due(sessions), key=lambda item: (item[0].priority != "urgent", item[0].id))
        if time.monotonic() >= self._pull_at:
            self._talking = self.talking(sessions)
            if self._talking:
                from dev_sessions.messaging.relay import pull

                for copy in pull(self.settings, self.store, self._talking, sessions):
                    log.info("message %d pulled from %s", copy.id, (copy.metadata or {}).get("host"))
            self._pull_at = time.monotonic() + PULL_EVERY_S
        for message, receipt in due:
            if receipt.recipient in blocked:
                continue  # one at a time per session, in order
            with self.store.claim(message.id, receipt.recipient) as mine:
                if not mine:
                    # Another machine's deliverer holds it, or has just delivered it: not this one's.
                    log.debug("message %d to %s: claimed elsewhere", message.id, receipt.recipient)
                    blocked.add(receipt.recipient)
                    claimed_elsewhere = True
                    continue
                outcome = self.attempt(message, receipt, sessions)
            if outcome in ("waiting", "delivered"):
                # The next message to this session waits for its next idle point (a delivered one has
                # just started a turn there).
                blocked.add(receipt.recipient)
                session = sessions[receipt.recipient]
                signals = self.manager.backend(session.cli).idle_signals(session)
                for directory in signals:
                    watcher.watch_dir(directory)
                waiting_codex = waiting_codex or not signals
        next_retry = self.next_retry_ms(sessions)
        hooks_busy = self.webhooks is not None and self.webhooks.busy()
        if (
            not blocked
            and next_retry is None
            and not self._talking
            and not self.stays(sessions)
            and not hooks_busy
        ):
            self._idle_since = self._idle_since or time.monotonic()
            if time.monotonic() - self._idle_since >= self.linger:
                return None
        else:
            self._idle_since = None
        timeout = 30.0
        if next_retry is not None:
            timeout = min(timeout, max(0.0, (next_retry - now_ms()) / 1000))
        if waiting_codex:
            timeout = min(timeout, CODEX_POLL_S)
        if claimed_elsewhere:  # look again soon, in case that deliverer let it go undelivered
            timeout = min(timeout, CLAIMED_ELSEWHERE_S)
        if hooks_busy:
            timeout = min(timeout, WEBHOOKS_BUSY_S)
        if self._talking:
            timeout = min(timeout, max(0.0, self._pull_at - time.monotonic()))
        if self._idle_since is not None:
            timeout = min(timeout, self.linger)
        return timeout


def main() -> None:
    environ = dict(os.environ)
    settings = Settings.from_env(environ)
    private_dir(settings.home)
    fd = files.open_private(_lock_path(settings), os.O_RDWR | os.O_CREAT)
    if not _hold(fd):
        return  # another deliverer runs: never two at once
    files.check_not_link(settings.home / "deliverer.log")
    handler = logging.handlers.RotatingFileHandler(
        settings.home / "deliverer.log", maxBytes=1 << 20, backupCount=2
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    root = logging.getLogger("dev_sessions")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if settings.debug else logging.INFO)
    try:
        deliverer = Deliverer(settings, environ)
        try:
            while True:
                deliverer.run()
                # Nothing was left. Let go of the lock first, then look once more: work queued after the
                # last look but while the lock was still held found "a deliverer runs" and started none.
                # Either that look sees it here, or its writer sees the lock free and starts a deliverer.
                fcntl.flock(fd, fcntl.LOCK_UN)
                if not deliverer.has_work() or not _hold(fd):
                    break
                log.info("work came in while stopping; going on")
        finally:
            deliverer.close()
    except Exception:
        log.exception("deliverer stopped by an error")
        sys.exit(1)
    log.info("nothing left to deliver; exiting")


def _hold(fd: int) -> bool:
    """Take the deliverer's lock (never waiting) and write this pid into it; False if it is held."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return True


if __name__ == "__main__":
    main()
