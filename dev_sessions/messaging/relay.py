"""Messages to and from sessions on remote hosts (``create --host``).

A session on a host lives in that host's stores, and only the host's deliverer can put a message into
it. So a message here to such a session is **relayed**: its receipt is ``via`` ``host``, and
:func:`relay` hands it to the host's own messages API (``send`` over ssh, the same call the CLI makes
there), keeping which message it became there (the store's ``relays``). The sender keeps its name
(the host records an outside agent of that name, whose mailbox takes the answers), a reply names the
host's copy of what it answers, and a space message goes as a message to the member with the space in
its metadata. Relaying is what the sending command does at once; when the host does not answer, the
receipt fails with a retry, and the deliverer tries again with its back-off, so nothing is lost. (A
connection lost in the middle of a relay may leave the message there already: such a message can
arrive twice, never not at all.)

Answers come back by **pulling** (a host cannot reach this machine): :func:`pull` reads a name's
unread mail on every host this store has sessions on, copies what one of *our* sessions there sent
(nothing else: the host's own people keep their mail) into this store, once (the copy's ``relays``
row), with ``{"host", "remoteId"}`` in its metadata, and marks it read there. ``msg read`` and ``msg
wait`` pull for their reader; the deliverer pulls for the local sessions that talk to a host (the
parents of its sessions, and the senders of what was relayed there), so that a reply reaches a
session's conversation like any message.

Hosts answer within a short time or are passed over (``msg read`` never hangs on one); the ssh
transport is :mod:`dev_sessions.remote.host`'s, imported only when a host is involved.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING

from dev_sessions import files
from dev_sessions.config import Settings
from dev_sessions.errors import DevSessionsError, HostUnreachable, RemoteFailed, RemoteMissing
from dev_sessions.messaging.records import Message, Receipt
from dev_sessions.store import Session

if TYPE_CHECKING:
    from collections.abc import Iterator

    from dev_sessions.messaging.store import MessageStore
    from dev_sessions.remote.host import SshTransport

log = logging.getLogger(__name__)

PULL_EVERY_S = 3.0
"""How often a waiting reader and the deliverer look for answers on the hosts."""

RETRY_DELAYS_S = (5, 15, 60, 300, 900)
"""The back-off of a delivery (into a session here, or to a host) that failed for now."""


def retry_at(attempts: int, now_ms: int) -> int | None:
    """When a delivery that failed ``attempts`` times before is tried again (None: never)."""
    if attempts >= len(RETRY_DELAYS_S):
        return None
    return now_ms + RETRY_DELAYS_S[attempts] * 1000


TRANSIENT = (HostUnreachable, RemoteMissing, RemoteFailed)
"""A host that does not answer (or whose dev-sessions is missing or broken for now): tried again.
Anything else (the host has no such session, refuses the message) is the message's answer, for good."""


def _quick(settings: Settings) -> float:
    return settings.ssh_connect_timeout + 5


def _transport(settings: Settings, host: str) -> SshTransport:
    from dev_sessions.remote.host import SshTransport

    return SshTransport(settings, host)


def _call(
    settings: Settings, host: str, method: str, timeout: float, /, *args: object, **kwargs: object
) -> object:
    """One call of the host's messages API, its arguments bound to the library's own signature."""
    from dev_sessions.remote.calls import Remote

    transport = _transport(settings, host)
    remote = Remote("messages", settings, transport)
    sent = remote.arguments(remote.calls[method], args, kwargs)
    return transport.call("messages", method, sent, timeout=timeout)


def hosts_of(sessions: Mapping[str, Session]) -> dict[str, set[str]]:
    """{host: ids of our sessions there}."""
    found: dict[str, set[str]] = {}
    for session in sessions.values():
        if session.host:
            found.setdefault(session.host, set()).add(session.id)
    return found


@contextmanager
def _host_lock(settings: Settings, host: str) -> Iterator[None]:
    """One relay to a host at a time, from any process: the one that takes a receipt relays it, and
    whoever comes next sees it delivered (never two copies from two senders)."""
    name = hashlib.sha256(host.encode()).hexdigest()[:16]
    directory = files.private_dir(settings.home / "relay")
    fd = files.open_private(directory / f"{name}.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _due(receipt: Receipt | None, now: int) -> bool:
    if receipt is None:
        return False
    if receipt.state == "queued":
        return True
    return receipt.state == "failed" and receipt.retry_at_ms is not None and receipt.retry_at_ms <= now


def relay(settings: Settings, store: MessageStore, message: Message, recipient: str, host: str) -> str:
    """Hand ``message`` to ``recipient``'s host: ``delivered`` (there now), ``failed`` (with a retry
    unless the host's answer was final) or ``skipped`` (another process relayed it, or it is not due)."""
    from dev_sessions.messaging.store import now_ms

    with _host_lock(settings, host):
        receipt = store.receipt(message.id, recipient)
        if not _due(receipt, now_ms()):
            return "skipped"
        assert receipt is not None
        metadata: dict[str, object] = dict(message.metadata or {})
        metadata["relayed"] = {"id": message.id, "from": os.uname().nodename}
        if message.space:
            metadata["space"] = message.space
        reply_to = None if message.reply_to is None else store.remote_id(message.reply_to, host, recipient)
        try:
            sent = _call(
                settings, host, "send", settings.ssh_connect_timeout + 30,
                recipient, message.body, sender=message.sender, priority=message.priority,
                reply_to=reply_to, metadata=metadata,
            )  # fmt: skip
        except TRANSIENT as err:
            store.failed(message.id, recipient, str(err), retry_at(receipt.attempts, now_ms()))
            log.warning("message %d to %s on %s: not relayed yet: %s", message.id, recipient, host, err)
            return "failed"
        except DevSessionsError as err:
            store.failed(message.id, recipient, f"{host}: {err}", None)
            log.warning("message %d to %s on %s: %s", message.id, recipient, host, err)
            return "failed"
        assert isinstance(sent, Message)
        store.relayed(message.id, recipient, host, sent.id)
        return "delivered"


def relay_due(
    settings: Settings,
    store: MessageStore,
    items: Iterable[tuple[Message, str]],
    sessions: Mapping[str, Session],
) -> dict[tuple[int, str], str]:
    """Relay each (message, recipient on a host), hosts in parallel, each host's in order."""
    by_host: dict[str, list[tuple[Message, str]]] = {}
    for message, recipient in items:
        session = sessions.get(recipient)
        if session is not None and session.host:
            by_host.setdefault(session.host, []).append((message, recipient))

    def one(host: str) -> dict[tuple[int, str], str]:
        return {(m.id, r): relay(settings, store, m, r, host) for m, r in by_host[host]}

    outcomes: dict[tuple[int, str], str] = {}
    if len(by_host) == 1:
        (host,) = by_host
        return one(host)
    with ThreadPoolExecutor(max(1, min(len(by_host), 16)), thread_name_prefix="relay") as pool:
        for found in pool.map(one, by_host):
            outcomes.update(found)
    return outcomes


def pull(
    settings: Settings,
    store: MessageStore,
    readers: Mapping[str, set[str]],
    sessions: Mapping[str, Session],
) -> list[Message]:
    """Copy into this store the unread mail on each host (``{host: reader names}``) that our sessions
    there sent to those readers, and mark it read there. Returns the new copies; a host that does not
    answer is passed over (its mail stays there for the next pull)."""
    ours = hosts_of(sessions)
    jobs = [(host, reader) for host, names in readers.items() if host in ours for reader in sorted(names)]
    if not jobs:
        return []

    def fetch(job: tuple[str, str]) -> list[Message]:
        host, reader = job
        try:
            found = _call(settings, host, "read", _quick(settings), reader, unread=True)
        except DevSessionsError as err:
            log.info("no answers from %s for %s now: %s", host, reader, err)
            return []
        assert isinstance(found, list)
        return [m for m in found if isinstance(m, Message) and m.sender in ours[host]]

    with ThreadPoolExecutor(min(len(jobs), 16), thread_name_prefix="pull") as pool:
        fetched = list(pool.map(fetch, jobs))
    copies: list[Message] = []
    for (host, reader), found in zip(jobs, fetched, strict=True):
        if not found:
            continue
        for message in found:
            copies.append(copy_in(store, host, message, reader, sessions))
        try:
            _call(settings, host, "mark_read", _quick(settings), [m.id for m in found], reader=reader)
        except DevSessionsError as err:  # copied once already: the next pull finds them and skips them
            log.info("%s: could not mark %d messages read: %s", host, len(found), err)
    return copies


def copy_in(
    store: MessageStore, host: str, message: Message, reader: str, sessions: Mapping[str, Session]
) -> Message:
    """``host``'s ``message`` to ``reader``, stored here (once): from the same session, answering
    the message here that it answers there, into ``reader``'s conversation if ``reader`` is a
    session here, else its mailbox."""
    metadata = dict(message.metadata or {})
    metadata.update(host=host, remoteId=message.id)
    if message.space:
        metadata["remoteSpace"] = message.space
    reply_to = None if message.reply_to is None else store.local_id(host, message.reply_to)
    here = sessions.get(reader)
    via = "conversation" if here is not None and not here.host else "mailbox"
    return store.send(
        message.sender,
        {reader: via},
        message.body,
        priority=message.priority,
        reply_to=reply_to,
        metadata=metadata,
        origin=(host, message.id),
    )


def remote_receipt(
    settings: Settings, store: MessageStore, message_id: int, receipt: Receipt, host: str
) -> Receipt:
    """A relayed receipt as the host has it now (queued there, delivered into the session, read), its
    reason naming the host and the message there; the receipt here when the host does not answer."""
    from dataclasses import replace

    remote_id = store.remote_id(message_id, host, receipt.recipient)
    if receipt.state not in ("delivered", "read") or remote_id is None:
        return receipt
    where = f"on {host} as message {remote_id}"
    try:
        found = _call(settings, host, "status", _quick(settings), remote_id)
    except DevSessionsError as err:
        return replace(receipt, reason=f"{where}; {host} does not answer now ({err})")
    assert isinstance(found, (tuple, list))
    there = next((r for r in found[1] if isinstance(r, Receipt) and r.recipient == receipt.recipient), None)
    if there is None:
        return replace(receipt, reason=where)
    reason = f"{where}: {there.reason}" if there.reason else where
    return replace(there, via="host", reason=reason)
