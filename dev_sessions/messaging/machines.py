"""Several machines sharing one message store: which sessions each has, and names across them.

Each machine has a name (``DEV_SESSIONS_MACHINE``, else its host name: ``Settings.machine``). On a
store shared by several machines (PostgreSQL), each machine says which of its own sessions exist
(``machine_sessions``: name, cli, parent, last status), when one is created and from its deliverer,
so that another machine can write to them. A session is named by its id when that id is one
session's, and as ``id@machine`` always; a message to a session of another machine is stored with
that machine on its receipt, and only that machine's deliverer puts it into the session.

No delivery here, and nothing for a store of one machine (SQLite) but reading ``name@machine``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from dev_sessions.errors import DevSessionsError, UsageError
from dev_sessions.store import Session

if TYPE_CHECKING:
    from dev_sessions.config import Settings
    from dev_sessions.messaging.store import MessageStore
    from dev_sessions.sessions import SessionManager

log = logging.getLogger(__name__)


def shared(settings: Settings) -> bool:
    """Whether ``settings`` name a store other machines may share (a server, not the local file)."""
    url = settings.messages_url
    return bool(url) and not str(url).startswith("sqlite:")


def local_sessions(sessions: Mapping[str, Session]) -> dict[str, Session]:
    """The sessions that run on this machine (not on an ssh host)."""
    return {sid: s for sid, s in sessions.items() if not s.host}


def publish(
    store: MessageStore, machine: str, manager: SessionManager, sessions: Mapping[str, Session]
) -> None:
    """Say on the shared store which sessions this machine has, with their live status."""
    rows = []
    for session in local_sessions(sessions).values():
        state: str = "unknown"  # a session whose status cannot be read is still there to write to
        with contextlib.suppress(DevSessionsError):
            state = manager.backend(session.cli).status(session).state
        rows.append((session.id, session.cli, session.parent, state))
    store.publish_sessions(machine, rows)


def announce(settings: Settings, manager: SessionManager) -> None:
    """After a session is created on a shared store: say so there at once (another machine may write
    to it as soon as ``create`` returns), and start this machine's deliverer, which delivers what other
    machines send to it. A server that does not answer costs the session nothing: one warning, and the
    deliverer says it later."""
    if not shared(settings):
        return
    from dev_sessions.messaging.deliver import ensure_deliverer
    from dev_sessions.messaging.store import store_for

    try:
        store = store_for(settings)
        try:
            publish(store, settings.machine_name(), manager, {s.id: s for s in manager.store.sessions()})
        finally:
            store.close()
    except DevSessionsError as err:
        log.warning("the messages server does not know of this session yet: %s", err)
    ensure_deliverer(settings, settings.environ)


def split(name: str) -> tuple[str, str | None]:
    """``name@machine`` as (name, machine); a name without ``@`` as (name, None)."""
    base, at, machine = name.rpartition("@")
    return (base, machine) if at and base and machine else (name, None)


def elsewhere(store: MessageStore, target: str, machine: str) -> tuple[str, str] | None:
    """The session of another machine that ``target`` names, as (name, machine): ``name@machine``,
    or a name that exactly one other machine has a session of (several: a one-line UsageError naming
    them); None when no other machine has one."""
    name, there = split(target)
    if there is not None:
        rows = [row for row in store.machine_sessions(name) if row[1] == there and there != machine]
        if rows:
            return name, there
        # Else an agent or space may still have that whole name ("ci@box" registered as one).
        rows = [row for row in store.machine_sessions(target) if row[1] != machine]
    else:
        rows = [row for row in store.machine_sessions(name) if row[1] != machine]
    if len(rows) > 1:
        choices = ", ".join(f"{row[0]}@{row[1]}" for row in rows)
        raise UsageError(f"{target}: sessions of that name run on {len(rows)} machines; name one: {choices}")
    return (rows[0][0], rows[0][1]) if rows else None
