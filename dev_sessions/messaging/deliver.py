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
* Each notice reaches its session once, even when a deliverer is killed at any moment. Right before
  typing a notice, once the session can take it, the deliverer says so on the receipt (``pasting_at``,
  :meth:`~dev_sessions.messaging.store.MessageStore.pasting`); marking it delivered clears that. A
  deliverer that finds the mark (its predecessor was killed between the two, or its own typing
  failed) does not type blindly: it looks for the notice's first line among the prompts of the
  session's own record of its conversation (Claude's transcript, the Codex thread's items) and marks
  the receipt delivered if it is there. If it is not, it types the notice only once ``SETTLE_S`` has
  passed since it first saw that mark, for an agent records a prompt a moment after taking it (Claude
  0.1-0.3 s after the Enter); the one that typed it can no longer be typing then (it held the claim,
  or the deliverer's lock, and is gone). A notice left in Claude's input box without its Enter is not
  in the transcript: the next delivery types it again through the editor key, whose text replaces the
  box's, so it is sent once.
* It applies the automatic retention (``DEV_SESSIONS_MESSAGES_RETENTION``) while it runs, at most once
  an hour (:mod:`dev_sessions.messaging.retention`).
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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from dev_sessions import files
from dev_sessions.config import Settings
from dev_sessions.errors import DevSessionsError, MessagesUnavailable, SessionExited
from dev_sessions.files import private_dir
from dev_sessions.messaging.machines import local_sessions, publish
from dev_sessions.messaging.notice import frame, head, shown
from dev_sessions.messaging.records import Message, Receipt
from dev_sessions.messaging.relay import PULL_EVERY_S, hosts_of, retry_at
from dev_sessions.messaging.store import now_ms, store_for
from dev_sessions.store import Session, SessionStore

if TYPE_CHECKING:
    from dev_sessions.backend import LogItem, Verdict
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
LIVE_EVERY_S = 5.0
"""How often a deliverer on a shared store looks whether its machine still has a live session."""
LOST_MAX_S = 5.0
"""The longest pause between rounds while the messages server does not answer."""
SETTLE_S = 10.0
"""How long after the last keystroke of a deliverer that may have typed a notice its session's record
shows the notice, if the agent took it (Claude: 0.1-0.3 s, seconds on a loaded machine)."""


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
        self._live: tuple[frozenset[str], bool, float] | None = None
        self.gone = False
        """The state dir is gone, or the server with no live session here: not looking again."""
        self.me = f"{self.machine} pid {os.getpid()}"
        self.marks: dict[tuple[int, str], tuple[tuple[str | None, str | None], float]] = {}
        """Receipts found marked as being typed: (message, recipient) -> (the mark, when first seen)."""
        self.settle_at: float | None = None
        """When the first of those marks has settled (a round then looks again)."""
        self.webhooks: Sender | None = None
        if settings.webhooks:
            from dev_sessions.messaging.webhooks import Sender

            self.webhooks = Sender(settings, self.store)

    def close(self) -> None:
        if self.webhooks is not None:
            self.webhooks.close()

    def attempt(self, message: Message, receipt: Receipt, sessions: Mapping[str, Session]) -> str:
        """Try one delivery: ``delivered``, ``failed``, ``waiting`` (the session is busy) or
        ``settling`` (it may have been typed already; looked for again at ``settle_at``)."""
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
        check = _BeforeTyping(self, message, receipt.recipient, lambda: backend.log(session))
        try:
            done = backend.deliver(session, text, urgent=message.priority == "urgent", check=check)
        except SessionExited as err:
            self.store.failed(message.id, receipt.recipient, str(err), None)
            self.marks.pop((message.id, receipt.recipient), None)
            return "failed"
        except DevSessionsError as err:
            retry = self._retry_at(receipt.attempts)
            self.store.failed(message.id, receipt.recipient, str(err), retry)
            if check.verdict == "type":
                # What was typed may yet land: the retry looks first, SETTLE_S from now.
                check.typed_and_stopped()
            log.warning("message %d to %s failed: %s", message.id, receipt.recipient, err)
            return "failed"
        if not done:
            return "settling" if check.verdict == "later" else "waiting"
        self.store.delivered(message.id, receipt.recipient)
        self.marks.pop((message.id, receipt.recipient), None)
        if check.verdict == "there":
            log.info(
                "message %d to %s: in its conversation already; not typed again",
                message.id,
                receipt.recipient,
            )
        else:
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
        """On a shared store, the deliverer stays while this machine has a session that is not
        exited: other machines may write to it at any moment, and nobody here would start it. A
        record whose session is gone (its tmux server killed, Claude quit) keeps nobody: a
        deliverer stayed for ever for those, and went on trying a server that had gone away."""
        return self.store.shared and self.live_here(sessions)

    def live_here(self, sessions: Mapping[str, Session]) -> bool:
        """Whether a session of this machine is not exited (looked at every ``LIVE_EVERY_S`` at most,
        and whenever the sessions change; one whose status cannot be read counts as live)."""
        here = local_sessions(sessions)
        key, now = frozenset(here), time.monotonic()
        if self._live is not None and self._live[0] == key and now < self._live[2]:
            return self._live[1]
        live = False
        for session in here.values():
            try:
                live = self.manager.backend(session.cli).status(session).state != "exited"
            except DevSessionsError:
                live = True
            if live:
                break
        self._live = (key, live, now + LIVE_EVERY_S)
        return live

    def next_retry_ms(self, sessions: Mapping[str, Session]) -> int | None:
        """When a failed delivery of this deliverer's is due again (see ``due``)."""
        return self.store.next_retry_ms(sorted(sessions) if self.store.shared else None)

    def retain(self) -> None:
        """The automatic retention (at most once an hour per machine); a bad setting is logged, and
        delivery goes on."""
        from dev_sessions.messaging.retention import apply_retention

        try:
            apply_retention(self.settings, self.store)
        except DevSessionsError as err:
            if isinstance(err, MessagesUnavailable):
                raise
            log.warning("retention: %s", err)

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
            self.store.watch_mail(
                watcher, patient=True
            )  # on a server, its notifications (the files above on SQLite)
            lost = 0
            while True:
                if not self.settings.home.is_dir():
                    log.warning("%s is gone; exiting", self.settings.home)
                    self.gone = True
                    return
                try:
                    timeout = self._round(watcher)
                    lost = 0
                except MessagesUnavailable as err:
                    # The server went away: the listener connects again with back-off, and a later round
                    # catches up from the receipts (a claim held died with the connection). Nothing can
                    # be delivered meanwhile: with no live session here, there is nothing to stay for.
                    # A sleep, not the watcher: the line just logged changed deliverer.log in the
                    # watched state directory, which would wake it at once (it spun, a line every ~30 ms).
                    lost += 1
                    sessions = {s.id: s for s in self.sessions.sessions()}
                    if not self.live_here(sessions):
                        log.warning("%s; no live session here, exiting", err)
                        self.gone = True
                        return
                    log.warning("%s; trying again", err)
                    time.sleep(min(LOST_MAX_S, LOST_ROUND_S * 2 ** min(lost - 1, 4)))
                    watcher.drain()
                    continue
                if timeout is None:
                    return
                watcher.wait(timeout)

    def _round(self, watcher: Watcher) -> float | None:
        """One look at what is due and one delivery attempt per session; how long to sleep then (None:
        nothing was left for the linger, time to go)."""
        sessions = {s.id: s for s in self.sessions.sessions()}
        self.publish(sessions)
        if self.settings.messages_retention is not None:
            self.retain()
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
            if outcome == "settling":
                blocked.add(receipt.recipient)  # looked at again once its mark settles (settle_at)
            elif outcome in ("waiting", "delivered"):
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
        if self.settle_at is not None:
            timeout = min(timeout, max(0.0, self.settle_at - time.monotonic()))
            self.settle_at = None
        if self._idle_since is not None:
            timeout = min(timeout, self.linger)
        return timeout


class _BeforeTyping:
    """The deliverer's last word before a backend types a notice (``Backend.deliver``'s ``check``):
    asked once the session can take it, with the receipt claimed and nothing else typing into the
    session. Its ``verdict`` is what it said (None: not asked)."""

    def __init__(
        self, deliverer: Deliverer, message: Message, recipient: str, log_of: Callable[[], list[LogItem]]
    ) -> None:
        self.deliverer = deliverer
        self.message = message
        self.recipient = recipient
        self.log_of = log_of
        self.verdict: Verdict | None = None

    def __call__(self) -> Verdict:
        self.verdict = self._decide()
        return self.verdict

    def _decide(self) -> Verdict:
        deliverer, key = self.deliverer, (self.message.id, self.recipient)
        receipt = deliverer.store.receipt(*key)
        if receipt is not None and receipt.pasting_at is not None:
            first = head(self.message, self.recipient)
            if shown(first, (item.text for item in self.log_of() if item.role == "user")):
                return "there"
            mark = (receipt.pasting_at, receipt.pasting_by)
            seen = deliverer.marks.get(key)
            if seen is None or seen[0] != mark:
                seen = (mark, time.monotonic())
                deliverer.marks[key] = seen
                log.info(
                    "message %d to %s: %s began typing it at %s and did not mark it; not in its "
                    "conversation, looking again in %.0f s",
                    *key, receipt.pasting_by, receipt.pasting_at, SETTLE_S,
                )  # fmt: skip
            settled = seen[1] + SETTLE_S
            if time.monotonic() < settled:
                deliverer.settle_at = min(deliverer.settle_at or settled, settled)
                return "later"
        deliverer.store.pasting(*key, deliverer.me)
        return "type"

    def typed_and_stopped(self) -> None:
        """This deliverer typed (some of) the notice and gave up: it is done typing now."""
        receipt = self.deliverer.store.receipt(self.message.id, self.recipient)
        if receipt is not None and receipt.pasting_at is not None:
            mark = (receipt.pasting_at, receipt.pasting_by)
            self.deliverer.marks[(self.message.id, self.recipient)] = (mark, time.monotonic())


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
                if deliverer.gone or not deliverer.has_work() or not _hold(fd):
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
