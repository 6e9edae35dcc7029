"""How long messages are kept: ``msg prune --older-than AGE``, and the automatic retention of
``DEV_SESSIONS_MESSAGES_RETENTION`` (the variable, or the same key in ``$DEV_SESSIONS_HOME/config.json``).

What a prune does is the store's (:meth:`~dev_sessions.messaging.store.MessageStore.prune`): the
messages created before the cut go, with their receipts, reactions and links, and the search index
follows (FTS5's trigger on SQLite, the row's own search column on PostgreSQL); a pinned message
stays, and a reply that stays keeps its thread, without its ``replyTo`` when its parent went.

The automatic retention runs at most once an hour per machine: :func:`apply_retention` looks at one
stamp file (``$DEV_SESSIONS_HOME/retention.stamp``, its time the last run), touches it before
pruning so that other processes of the machine do not prune at the same moment, and prunes. It is
called by the deliverer as it starts, and by the commands that read mail (``msg read``, ``msg wait``,
``msg conversations``, ``context``), never by ``msg send``.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone

from dev_sessions.config import BROKEN_CONFIG, Settings
from dev_sessions.durations import parse_duration
from dev_sessions.errors import UsageError
from dev_sessions.files import open_private, private_dir
from dev_sessions.messaging.results import Pruned
from dev_sessions.messaging.store import MessageStore

log = logging.getLogger(__name__)

EVERY_S = 3600.0
"""The automatic retention prunes at most this often per machine."""
STAMP = "retention.stamp"


def older_than(text: str, what: str = "--older-than") -> float:
    """Seconds in an age like ``30d``, more than none, or a one-line ``UsageError`` naming ``what``."""
    try:
        seconds = parse_duration(text)
    except UsageError as err:
        raise UsageError(f"{what}: {err}") from None
    if seconds <= 0:
        raise UsageError(f"{what}: {text!r} is no age; give one like 30d or 12h")
    return seconds


def prune(store: MessageStore, seconds: float, *, dry_run: bool = False, now: float | None = None) -> Pruned:
    """Prune the messages older than ``seconds`` (see the module's docstring)."""
    cut = (time.time() if now is None else now) - seconds
    before = datetime.fromtimestamp(cut, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    pruned, kept, detached = store.prune(int(cut * 1000), dry_run=dry_run)
    return Pruned(before, pruned, kept, detached, dry_run)


def retention(settings: Settings) -> float | None:
    """The configured retention in seconds (None: messages are kept for ever)."""
    text = settings.messages_retention
    if text is None:
        return None
    if text.startswith(BROKEN_CONFIG):
        path = text[len(BROKEN_CONFIG) :]
        raise UsageError(
            f"{path}: not a JSON object of strings (DEV_SESSIONS_MESSAGES_RETENTION); fix it or remove it"
        )
    return older_than(text, "DEV_SESSIONS_MESSAGES_RETENTION")


def apply_retention(settings: Settings, store: MessageStore, *, now: float | None = None) -> Pruned | None:
    """Prune by the configured retention if it is set and the last run here is an hour old or more;
    what was pruned, or None when nothing ran."""
    seconds = retention(settings)
    if seconds is None:
        return None
    moment = time.time() if now is None else now
    stamp = settings.home / STAMP
    try:
        if moment - stamp.stat().st_mtime < EVERY_S:
            return None
    except FileNotFoundError:
        pass
    private_dir(settings.home)
    fd = open_private(stamp, os.O_WRONLY | os.O_CREAT)
    try:
        os.utime(fd, (moment, moment))  # first: the machine's other processes leave it to this one
    finally:
        os.close(fd)
    done = prune(store, seconds, now=moment)
    if done.pruned:
        log.info("retention %s: pruned %d message(s) from before %s", settings.messages_retention,
                 done.pruned, done.before)  # fmt: skip
    return done
