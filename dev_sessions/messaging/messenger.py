"""The messaging library: who is who, and every ``msg``, ``space`` and ``agents`` command as a method
(and ``context`` and ``stats``).

Identities: every session is an agent named by its id; anything else (the orchestrating agent, a
person) is an outside agent with a name, registered once (``user`` always exists). Who sends or reads
is ``--from``/``--as``, else ``DEV_SESSIONS_AGENT``, else ``DEV_SESSIONS_ID`` (set inside every
session we start), else ``user``. ``parent`` names the agent that created the sending session.

A message to a session goes into its conversation (through the deliverer process); a message to an
outside agent goes into its mailbox, read with ``msg read`` or ``msg wait``.

An outside agent's name is held by the agent session that registered it (``Settings.holder``):
registering it (or a heartbeat) from another session while the holder was seen within
:data:`ONLINE_WINDOW_S` is refused with who holds it, unless ``takeover``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Generator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, cast

from dev_sessions.api import USER, JsonObject, call, check_name
from dev_sessions.config import Settings
from dev_sessions.durations import parse_duration
from dev_sessions.errors import (
    MessageNotFound,
    MessagesUnavailable,
    NoMessage,
    RecipientNotFound,
    SpaceNotFound,
    UsageError,
)
from dev_sessions.messaging.coordination import Coordination
from dev_sessions.messaging.machines import elsewhere, split
from dev_sessions.messaging.records import Agent, AgentInfo, Message, Receipt, Space
from dev_sessions.messaging.relay import PULL_EVERY_S, hosts_of
from dev_sessions.messaging.store import PRIORITIES, MessageStore, store_for
from dev_sessions.store import Session, SessionStore, parse_iso
from dev_sessions.watch import Watcher, run_steps, run_steps_async

if TYPE_CHECKING:  # loaded by the commands that return them (see dev_sessions.messaging.results)
    from dev_sessions.messaging.results import Context, Conversation, Pin, Pruned, Reaction, Stats

log = logging.getLogger(__name__)

PARENT = "parent"
RESERVED = {PARENT, "all", "everyone"}
MAX_BODY = 1024 * 1024
ONLINE_WINDOW_S = 300
"""An agent seen this recently is live (``agents --online``; a name it holds is not taken silently)."""
MENTIONS = 5
"""How many of the newest mentions ``context`` shows."""
LOOK_EVERY_S = 2.0
"""A waiter looks at its inbox this often even when nothing told it of mail (a writer of an older
dev-sessions that does not announce its messages on a server is seen that late, not never)."""
LOST_LOOK_S = 0.5
"""How often a waiter whose server went away tries its look again."""
_MESSAGE_ID = re.compile(r"(?:m|#)?([0-9]{1,18})")


def parse_message_id(text: str | int) -> int:
    match = _MESSAGE_ID.fullmatch(str(text).strip())
    if match is None:
        raise UsageError(f"{text!r} is not a message id (like 42)")
    return int(match.group(1))


def parse_since(text: str | None) -> int | None:
    """Milliseconds since the epoch for ``--since``: an age (30m, 2h) or an ISO time."""
    if text is None:
        return None
    moment = parse_iso(text) if any(c in text for c in "-:T") else None
    if moment is not None:
        return int(moment.timestamp() * 1000)
    return int((time.time() - parse_duration(text)) * 1000)


class Messenger(Coordination):
    """The ``messages`` API (projects, focus, leases and webhooks are :class:`Coordination`'s part)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.environ = dict(self.settings.environ)
        self.sessions = SessionStore(self.settings.store_path)
        self._store: MessageStore | None = None

    @property
    def store(self) -> MessageStore:
        if self._store is None:
            self._store = store_for(self.settings)
        return self._store

    @property
    def db_path(self) -> Path:
        return self.settings.home / "messages.db"

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- identities ----------------------------------------------------------------------------------

    def me(self, explicit: str | None = None) -> str:
        return self.settings.me(explicit)

    def _sessions(self) -> dict[str, Session]:
        return {s.id: s for s in self.sessions.sessions()}

    def _via(self, name: str, sessions: Mapping[str, Session]) -> str:
        session = sessions.get(name)
        if session is None:
            return "mailbox"
        return "host" if session.host else "conversation"

    @property
    def machine(self) -> str:
        return self.settings.machine_name()

    def _local(self, target: str, sessions: Mapping[str, Session]) -> str:
        """``name@this-machine`` as ``name`` when this machine has that session; else ``target``."""
        name, machine = split(target)
        if machine is not None and target not in sessions and name in sessions and machine == self.machine:
            return name
        return target

    def _addressed(
        self, names: list[str], sessions: Mapping[str, Session], elsewhere_ok: bool = True
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Receipts for ``names`` (sessions, agents): ({name: via}, {name: machine} of each session)."""
        recipients: dict[str, str] = {}
        machines: dict[str, str] = {}
        others: dict[str, list[str]] = {}
        if elsewhere_ok and self.store.shared and any(name not in sessions for name in names):
            for row in self.store.machine_sessions():
                if row[1] != self.machine:
                    others.setdefault(row[0], []).append(row[1])
        for name in names:
            via = self._via(name, sessions)
            recipients[name] = via
            if via == "conversation":
                machines[name] = self.machine
            elif via == "mailbox" and len(others.get(name, ())) == 1:
                recipients[name] = "conversation"  # a session of one other machine: its deliverer's
                machines[name] = others[name][0]
        return recipients, machines

    def known(self, name: str, sessions: Mapping[str, Session] | None = None) -> str | None:
        """What a name is: ``session``, ``agent`` or ``space``; None when it is none of them."""
        sessions = self._sessions() if sessions is None else sessions
        if name in sessions:
            return "session"
        if name == USER or self.store.agent(name) is not None:
            return "agent"
        if self.store.space(name) is not None:
            return "space"
        return None

    def parent_of(self, sender: str, sessions: Mapping[str, Session]) -> str:
        session = sessions.get(sender)
        if session is None:
            raise RecipientNotFound(name="parent", detail=f"{sender} is not a session, so it has no parent")
        return session.parent or USER

    @call(
        tool="register_agent",
        about="Register an outside agent name (not a session); takeover takes it from another live session.",
    )
    def register(self, name: str, takeover: bool = False, session: str | None = None) -> Agent:
        """Register ``name`` for the agent session ``session`` (default: the one this process runs
        in, ``Settings.holder``); another live session holding it is :class:`NameInUse` unless
        ``takeover``."""
        check_name(name, "agent name")
        if name in RESERVED:
            raise UsageError(f"{name}: a reserved name")
        kind = self.known(name)
        if kind == "session":
            raise UsageError(f"{name}: a session has that name; sessions are agents already")
        if kind == "space":
            raise UsageError(f"{name}: a space has that name")
        return self.store.hold(
            name,
            session or self.settings.holder,
            live_s=ONLINE_WINDOW_S,
            takeover=takeover,
            machine=self.machine if self.store.shared else None,
        )

    # -- messages ------------------------------------------------------------------------------------

    @call(
        identity="sender",
        tool="send_message",
        about="Send a message to a session, an agent, a space, or 'parent' (who created you); returns it.",
    )
    def send(
        self,
        to: str,
        body: str,
        *,
        sender: str | None = None,
        priority: str = "normal",
        reply_to: int | None = None,
        metadata: JsonObject | None = None,
    ) -> Message:
        me = self.me(sender)
        self._check_body(body)
        sessions = self._sessions()
        target = self.parent_of(me, sessions) if to == PARENT else self._local(to, sessions)
        kind = self.known(target, sessions)
        there: tuple[str, str] | None = None
        if kind is None and self.store.shared:
            there = elsewhere(self.store, target, self.machine)  # a session of another machine
            if there is not None:
                kind = "session"
        if kind is None and to == PARENT:
            kind = "agent"  # a parent on another machine (its session came with --host): a mailbox here
        if kind is None:
            raise RecipientNotFound(
                name=target,
                detail="no session, agent or space has that name "
                f"(an outside agent registers with `dev-sessions agents register {target}`)",
            )
        if kind == "space":
            return self.space_send(
                target, body, sender=me, priority=priority, metadata=metadata, reply_to=reply_to
            )
        if there is not None:
            recipients, machines = {there[0]: "conversation"}, {there[0]: there[1]}
        else:
            recipients, machines = self._addressed([target], sessions, elsewhere_ok=False)
        message = self.store.send(
            me, recipients, body, priority=priority, reply_to=reply_to, metadata=metadata,
            machine=self.machine, machines=machines,
        )  # fmt: skip
        return self._after_send(message, recipients, sessions, machines)

    @call(identity="sender", about="Answer a message (goes to its sender; marks it read).")
    def reply(
        self, message_id: int, body: str, *, sender: str | None = None, priority: str = "normal"
    ) -> Message:
        original = self.store.message(message_id)
        me = self.me(sender)
        self._check_body(body)
        sessions = self._sessions()
        # Answer whoever sent it, even an agent or session that is gone since (its mailbox keeps it),
        # on the machine it wrote from.
        origin = self.store.origin_machine(message_id) if self.store.shared else None
        if origin is None or origin == self.machine:
            recipients, machines = self._addressed([original.sender], sessions, elsewhere_ok=False)
        elif any(row[1] == origin for row in self.store.machine_sessions(original.sender)):
            recipients, machines = {original.sender: "conversation"}, {original.sender: origin}
        else:
            recipients, machines = {original.sender: "mailbox"}, {}
        message = self.store.send(
            me, recipients, body, priority=priority, reply_to=message_id, machine=self.machine,
            machines=machines,
        )  # fmt: skip
        return self._after_send(message, recipients, sessions, machines)

    def _check_body(self, body: str) -> None:
        if not body.strip():
            raise UsageError("the message is empty")
        if len(body.encode("utf-8")) > MAX_BODY:
            raise UsageError(f"the message is over {MAX_BODY // 1024} KB; send a file path instead")

    def _after_send(
        self,
        message: Message,
        recipients: Mapping[str, str],
        sessions: Mapping[str, Session],
        machines: Mapping[str, str],
    ) -> Message:
        """Start what delivers it; the message, with its one recipient's receipt when that is a session
        on another host (relayed now, or failed with the reason), for the sender to see. A session of
        another machine is that machine's deliverer's."""
        if message.sender not in sessions:
            # An outside agent that writes is alive.
            self.store.heartbeat(message.sender, None, self.machine if self.store.shared else None)
        deliver = any(
            via == "conversation" and machines.get(name, self.machine) == self.machine
            for name, via in recipients.items()
        )
        remote = [name for name, via in recipients.items() if via == "host"]
        if remote:
            from dev_sessions.messaging.relay import relay_due

            outcomes = relay_due(self.settings, self.store, [(message, name) for name in remote], sessions)
            # The deliverer retries what a host did not take, and pulls the answers of a session here.
            deliver = deliver or "failed" in outcomes.values() or message.sender in sessions
        if not deliver and self.settings.webhooks:
            from dev_sessions.messaging.webhooks import wanted

            # The deliverer tells the endpoints (in threads of its own): this command waits for none.
            deliver = wanted(self.settings.webhooks, message, list(recipients))
        if deliver:
            from dev_sessions.messaging.deliver import ensure_deliverer

            ensure_deliverer(self.settings, self.environ)
        if len(recipients) == 1 and remote:
            from dataclasses import replace

            return replace(message, receipt=self.store.receipt(message.id, remote[0]))
        return message

    @call(
        identity="reader",
        tool="read_messages",
        about="Your messages (or `reader`'s), oldest first (with a focus: direct ones and its project's).",
    )
    def read(
        self,
        reader: str | None = None,
        *,
        unread: bool = False,
        mark_read: bool = False,
        sender: str | None = None,
        since: str | None = None,
        limit: int | None = None,
        all_projects: bool = False,
    ) -> list[Message]:
        me = self.me(reader)
        if limit is not None and limit < 1:
            raise UsageError("--limit must be at least 1")
        self._retain()
        self._pull(me)
        messages = self.store.inbox(
            me, unread=unread, sender=sender, since_ms=parse_since(since), limit=limit,
            project=self.focused_on(me, all_projects),
        )  # fmt: skip
        if mark_read and messages:
            self.store.mark_read(me, [m.id for m in messages])
        return self.store.with_reactions(messages)

    @call(
        long=True,
        identity="reader",
        tool="wait_for_message",
        about="Wait until a message for you is unread and return it (marked read unless mark_read is false).",
    )
    def wait(
        self, reader: str | None = None, timeout: float | None = None, *, mark_read: bool = True
    ) -> list[Message]:
        """The unread messages to ``reader``, as soon as there is one (NoMessage after ``timeout``)."""
        return run_steps(self._wait_steps(reader, timeout, mark_read))

    async def wait_async(
        self, reader: str | None = None, timeout: float | None = None, *, mark_read: bool = True
    ) -> list[Message]:
        return await run_steps_async(self._wait_steps(reader, timeout, mark_read))

    def _wait_steps(
        self, reader: str | None, timeout: float | None, mark_read: bool
    ) -> Generator[tuple[Watcher, float], None, list[Message]]:
        """Rounds of looking at the inbox; each yields how long to sleep (until the store says mail may
        have come: the database file changing, or the server's notification)."""
        me = self.me(reader)
        self._retain()
        deadline = None if timeout is None else time.monotonic() + timeout
        announced = False
        pulled_at: float | None = None
        remote = False
        looked_at: float | None = None
        lost = False
        with Watcher() as watcher:
            # Told of mail before the first look, so that nothing committed in between goes unseen.
            news = self.store.watch_mail(watcher, {me})
            while True:
                if pulled_at is None or time.monotonic() - pulled_at >= PULL_EVERY_S:
                    remote = self._pull(me)
                    pulled_at = time.monotonic()
                remaining = None if deadline is None else deadline - time.monotonic()
                expired = remaining is not None and remaining <= 0
                if (
                    news.heard()
                    or lost
                    or expired
                    or looked_at is None
                    or time.monotonic() - looked_at >= LOOK_EVERY_S
                ):
                    try:
                        found = self.store.inbox(me, unread=True)
                        lost = False
                    except MessagesUnavailable as err:
                        if looked_at is None or expired:
                            raise
                        # The server went away mid-wait: the next look, when it is back, catches up.
                        log.debug("%s: %s", me, err)
                        found, lost = [], True
                    looked_at = time.monotonic()
                    if found:
                        if mark_read:
                            self.store.mark_read(me, [m.id for m in found])
                        return found
                if expired:
                    raise NoMessage(reader=me, timeout=timeout or 0)
                if not announced:
                    log.debug("%s: waiting for a message", me)  # once, as the wait starts to block
                    announced = True
                nap = LOOK_EVERY_S if remaining is None else min(remaining, LOOK_EVERY_S)
                if lost:
                    nap = min(nap, LOST_LOOK_S)
                if remote:  # answers on a host are looked for there, nothing here announces them
                    nap = min(nap, max(0.05, pulled_at + PULL_EVERY_S - time.monotonic()))
                yield watcher, nap

    def _pull(self, reader: str) -> bool:
        """Bring ``reader``'s answers from our sessions on other hosts into this store; False when this
        store has no session on another host (then nothing is ever looked for)."""
        sessions = self._sessions()
        hosts = hosts_of(sessions)
        if not hosts:
            return False
        from dev_sessions.messaging.relay import pull

        copies = pull(self.settings, self.store, {host: {reader} for host in hosts}, sessions)
        if copies and reader in sessions and not sessions[reader].host:
            from dev_sessions.messaging.deliver import ensure_deliverer

            ensure_deliverer(self.settings, self.environ)  # a copy for a session here goes into it
        return True

    @call(scope=("viewer",), about="A message's whole thread, with full bodies.")
    def thread(self, message_id: int, viewer: str | None = None) -> list[Message]:
        """The whole thread of a message; with ``viewer``, only what that agent sent or received."""
        if viewer is not None:
            self._visible(message_id, viewer)
        return self.store.with_reactions(self.store.thread(message_id, viewer))

    def _visible(self, message_id: int, viewer: str) -> Message:
        message = self.store.message(message_id)
        if message.sender != viewer and all(r.recipient != viewer for r in self.store.receipts(message_id)):
            raise MessageNotFound(message_id=message_id)
        return message

    @call(identity="reader", about="Mark messages read (all of yours when message_ids is null).")
    def mark_read(self, message_ids: list[int] | None, reader: str | None = None) -> int:
        me = self.me(reader)
        if message_ids is not None:
            for message_id in message_ids:
                self.store.message(message_id)
        return self.store.mark_read(me, message_ids)

    @call(
        scope=("viewer",),
        tool="message_status",
        about="A message's delivery state for each recipient: queued, delivered, read or failed.",
    )
    def status(self, message_id: int, viewer: str | None = None) -> tuple[Message, list[Receipt]]:
        message = self.store.message(message_id) if viewer is None else self._visible(message_id, viewer)
        receipts = self.store.receipts(message_id)
        if any(r.state in ("queued", "failed") and r.via != "mailbox" for r in receipts):
            from dev_sessions.messaging.deliver import ensure_deliverer

            ensure_deliverer(self.settings, self.environ)  # in case the deliverer died with work left
        if any(r.via == "host" for r in receipts):
            receipts = self._as_hosts_have_them(message_id, receipts)
        return message, receipts

    def _as_hosts_have_them(self, message_id: int, receipts: list[Receipt]) -> list[Receipt]:
        """Each relayed receipt as its host has it now (one call per host, at once)."""
        from concurrent.futures import ThreadPoolExecutor

        from dev_sessions.messaging.relay import remote_receipt

        sessions = self._sessions()

        def one(receipt: Receipt) -> Receipt:
            session = sessions.get(receipt.recipient)
            if receipt.via != "host" or session is None or not session.host:
                return receipt
            return remote_receipt(self.settings, self.store, message_id, receipt, session.host)

        with ThreadPoolExecutor(min(len(receipts), 16), thread_name_prefix="status") as pool:
            return list(pool.map(one, receipts))

    @call(
        scope=("viewer",),
        tool="search_messages",
        about="Full-text search of the messages (SQLite FTS5 syntax).",
    )
    def search(self, query: str, limit: int = 50, viewer: str | None = None) -> list[Message]:
        if not query.strip():
            raise UsageError("search: the query is empty")
        return self.store.with_reactions(self.store.search(query, limit, viewer))

    @call(
        scope=("viewer",),
        identity="reader",
        about="The latest messages of everyone (since an age like 2h, or an ISO time; a focus: its project).",
    )
    def feed(
        self,
        since: str | None = None,
        limit: int | None = None,
        viewer: str | None = None,
        reader: str | None = None,
        *,
        all_projects: bool = False,
    ) -> list[Message]:
        project = self.focused_on(self.me(reader), all_projects)
        return self.store.with_reactions(self.store.feed(parse_since(since), limit, viewer, project))

    # -- spaces --------------------------------------------------------------------------------------

    @call(
        identity="creator", about="Create a space (a channel; nests up to 3 levels; may belong to a project)."
    )
    def create_space(
        self,
        name: str,
        parent: str | None = None,
        description: str = "",
        creator: str | None = None,
        project: str | None = None,
    ) -> Space:
        check_name(name, "space name")
        if name in RESERVED or name == USER:
            raise UsageError(f"{name}: a reserved name")
        kind = self.known(name)
        if kind in ("session", "agent"):
            raise UsageError(f"{name}: a {kind} has that name; spaces and agents share one namespace")
        return self.store.create_space(name, parent, description, self.me(creator), project)

    @call(identity="agent", about="Every space, with its member count (with a focus: its project's).")
    def spaces(self, agent: str | None = None, *, all_projects: bool = False) -> list[Space]:
        return self.store.spaces(self.focused_on(self.me(agent), all_projects))

    @call(identity="agent", tool="join_space", about="Join a space (you, or `agent`).")
    def join(self, space: str, agent: str | None = None) -> bool:
        return self.store.join(space, self.me(agent))

    @call(identity="agent", tool="leave_space", about="Leave a space.")
    def leave(self, space: str, agent: str | None = None) -> bool:
        return self.store.leave(space, self.me(agent))

    @call(tool="space_members", about="The members of a space, with when each joined.")
    def members(self, space: str) -> list[tuple[str, str]]:
        return self.store.members(space)

    @call(identity="sender", about="Send a message to every member of a space.")
    def space_send(
        self,
        space: str,
        body: str,
        *,
        sender: str | None = None,
        priority: str = "normal",
        metadata: JsonObject | None = None,
        reply_to: int | None = None,
    ) -> Message:
        me = self.me(sender)
        self._check_body(body)
        members = [name for name, _ in self.store.members(space) if name != me]
        sessions = self._sessions()
        recipients, machines = self._addressed(members, sessions)
        message = self.store.send(
            me, recipients, body, priority=priority, metadata=metadata, space=space, reply_to=reply_to,
            machine=self.machine, machines=machines,
        )  # fmt: skip
        return self._after_send(message, recipients, sessions, machines)

    @call(identity="reader", about="A space's messages, oldest first.")
    def space_read(
        self,
        space: str,
        reader: str | None = None,
        *,
        since: str | None = None,
        limit: int | None = None,
        unread: bool = False,
    ) -> list[Message]:
        if self.store.space(space) is None:
            raise SpaceNotFound(name=space)
        if unread:
            found = self.store.inbox(
                self.me(reader), unread=True, since_ms=parse_since(since), limit=limit, space=space
            )
        else:
            found = self.store.space_messages(space, parse_since(since), limit)
        return self.store.with_reactions(found)

    # -- agents --------------------------------------------------------------------------------------

    @call(identity="agent", about="Say that an outside agent is alive, with an optional short status.")
    def heartbeat(
        self,
        agent: str | None = None,
        status: str | None = None,
        *,
        takeover: bool = False,
        session: str | None = None,
    ) -> str:
        """Say ``agent`` is alive, from the agent session ``session`` (default: this process's); a
        name another live session holds is :class:`NameInUse` unless ``takeover``, as for register."""
        me = self.me(agent)
        self.store.hold(
            me,
            session or self.settings.holder,
            live_s=ONLINE_WINDOW_S,
            takeover=takeover,
            status=status,
            machine=self.machine if self.store.shared else None,
        )
        return me

    @call(about="Every session with its live status, and every outside agent with when it was last seen.")
    def agents(self, online: bool = False) -> list[AgentInfo]:
        """Every session with its live status, and every outside agent with when it was last seen."""
        from dev_sessions.sessions import SessionManager

        rows: list[AgentInfo] = []
        here = self.machine
        manager = SessionManager(self.settings)
        listed = manager.list_sessions()
        for session, status in listed:
            if online and status.state == "exited":
                continue
            rows.append(
                AgentInfo(
                    session.id,
                    "session",
                    status.state,
                    session.last_used or None,
                    session.cli,
                    session.parent,
                    session.host or here,
                )
            )
        now = datetime.now(timezone.utc)
        if self.store.shared:
            mine = [(s.id, s.cli, s.parent, status.state) for s, status in listed if not s.host]
            self.store.publish_sessions(here, mine)  # what this machine has, as seen now
            for name, machine, cli, parent, state, seen_at in self.store.machine_sessions():
                if machine == here:
                    continue
                seen = parse_iso(seen_at)
                recent = seen is not None and (now - seen).total_seconds() < ONLINE_WINDOW_S
                if online and (not recent or state == "exited"):
                    continue
                presence = "online" if recent else "offline"
                rows.append(AgentInfo(name, "session", state, seen_at, cli, parent, machine, presence))
        outside = {a.name: a for a in self.store.agents()}
        outside.setdefault(USER, Agent(USER, "", None, None))
        for agent in outside.values():
            seen = parse_iso(agent.last_seen) if agent.last_seen else None
            recent = seen is not None and (now - seen).total_seconds() < ONLINE_WINDOW_S
            if online and not recent:
                continue
            presence = "online" if recent else "offline"
            state = agent.status or presence
            rows.append(
                AgentInfo(
                    agent.name,
                    "agent",
                    state,
                    agent.last_seen,
                    machine=agent.machine,
                    presence=presence,
                    session=agent.session,
                )
            )
        return rows

    # -- reactions and pins --------------------------------------------------------------------------

    @call(identity="agent", scope=("viewer",), about="React to a message with an emoji (or a :short_name:).")
    def react(self, message_id: int, emoji: str, agent: str | None = None, viewer: str | None = None) -> bool:
        """``agent`` (you) reacts to a message; False when it had reacted so already."""
        from dev_sessions.messaging.emoji import check_emoji  # not loaded by msg send

        me = self.me(agent)
        check_emoji(emoji)
        if viewer is not None:
            self._visible(message_id, viewer)
        return self.store.react(message_id, me, emoji)

    @call(identity="agent", scope=("viewer",), about="Take back your reaction (that emoji) to a message.")
    def unreact(
        self, message_id: int, emoji: str, agent: str | None = None, viewer: str | None = None
    ) -> bool:
        """Take ``agent``'s reaction back; False when it had none with that emoji."""
        from dev_sessions.messaging.emoji import check_emoji

        me = self.me(agent)
        check_emoji(emoji)
        if viewer is not None:
            self._visible(message_id, viewer)
        return self.store.unreact(message_id, me, emoji)

    @call(scope=("viewer",), about="A message's reactions: each emoji, how many, and who.")
    def reactions(self, message_id: int, viewer: str | None = None) -> list[Reaction]:
        if viewer is not None:
            self._visible(message_id, viewer)
        return self.store.reactions(message_id)

    @call(
        identity="agent",
        scope=("viewer",),
        tool="pin_message",
        about="Pin a message in its space or conversation (msg prune keeps it).",
    )
    def pin(self, message_id: int, agent: str | None = None, viewer: str | None = None) -> bool:
        """Pin a message (as ``agent``, you); False when it was pinned already."""
        me = self.me(agent)
        if viewer is not None:
            self._visible(message_id, viewer)
        return self.store.pin(message_id, me)

    @call(scope=("viewer",), tool="unpin_message", about="Unpin a message.")
    def unpin(self, message_id: int, viewer: str | None = None) -> bool:
        """Unpin a message; False when it was not pinned."""
        if viewer is not None:
            self._visible(message_id, viewer)
        return self.store.unpin(message_id)

    @call(
        identity="reader",
        scope=("viewer",),
        tool="pinned_messages",
        about="Pinned messages: of a space, of your direct conversation with peer, or all of yours.",
    )
    def pinned(
        self,
        space: str | None = None,
        peer: str | None = None,
        reader: str | None = None,
        viewer: str | None = None,
    ) -> list[Pin]:
        """The pins of ``space``; of the direct conversation of ``reader`` (you) and ``peer``; or,
        with neither, of every message ``reader`` sent or received; oldest pin first."""
        if space is not None and peer is not None:
            raise UsageError("pinned: a space or a peer, not both")
        if space is not None and self.store.space(space) is None:
            raise SpaceNotFound(name=space)
        return self.store.pins(space=space, reader=self.me(reader), peer=peer, viewer=viewer)

    # -- conversations, retention ------------------------------------------------------------------------

    @call(
        identity="reader",
        about="Your conversations (spaces and direct): participants, messages, unread, the last one.",
    )
    def conversations(self, reader: str | None = None) -> list[Conversation]:
        """The conversations ``reader`` (you) is in, derived from the messages it sent or received
        (see :mod:`dev_sessions.messaging.conversations`); the latest first."""
        from dev_sessions.messaging.conversations import group
        from dev_sessions.messaging.results import Conversation

        me = self.me(reader)
        self._retain()
        gathered = group(me, self.store.conversation_rows(me))
        last = self.store.messages_of([c.last for c in gathered], me)
        return [
            Conversation(
                c.kind, c.name, tuple(sorted(c.participants)), len(c.messages), len(c.unread), last[c.last]
            )
            for c in gathered
            if c.last in last  # pruned since the first look: left out
        ]

    @call(
        tool="prune_messages",
        about="Delete messages older than an age like 30d (pinned ones stay); dry_run only counts them.",
    )
    def prune(self, older_than: str, dry_run: bool = False) -> Pruned:
        """Delete the messages older than ``older_than`` (see :mod:`dev_sessions.messaging.retention`)."""
        from dev_sessions.messaging.retention import older_than as seconds
        from dev_sessions.messaging.retention import prune

        return prune(self.store, seconds(older_than), dry_run=dry_run)

    def _retain(self) -> None:
        """The automatic retention, when one is configured (at most once an hour per machine)."""
        if self.settings.messages_retention is None:
            return
        from dev_sessions.messaging.retention import apply_retention

        apply_retention(self.settings, self.store)

    # -- what an agent starts with, and the counts ------------------------------------------------------

    @call(
        identity="agent",
        scope=("viewer",),
        about="Run it first: who you are, your parent, unread mail, mentions of you, your spaces.",
    )
    def context(self, agent: str | None = None, viewer: str | None = None) -> Context:
        """What ``agent`` (you) needs to know when it starts work."""
        from dev_sessions.messaging.conversations import mentions
        from dev_sessions.messaging.results import Context

        me = self.me(agent)
        self._retain()
        self._pull(me)
        sessions = self._sessions()
        session = sessions.get(me)
        held = self.store.agent(me) if session is None else None
        latest = self.store.inbox(me, unread=True, limit=1)
        named = [m for m in self.store.mentioning(me, viewer) if mentions(m.body, me)]
        return Context(
            name=me,
            kind="session" if session is not None else "agent",
            machine=self.machine,
            parent=(session.parent or USER) if session is not None else None,
            cli=session.cli if session is not None else None,
            description=(session.description or None) if session is not None else None,
            holder=held.session if held is not None else None,
            unread=self.store.unread_count(me),
            latest_unread=latest[-1] if latest else None,
            mentions=tuple(named[:MENTIONS]),
            spaces=tuple(self.store.spaces_of(me)),
            sessions=tuple(sorted(s.id for s in sessions.values() if s.parent == me)),
            leases=tuple(cast(JsonObject, lease.to_json()) for lease in self.store.leases(me)),
            focus=self.store.focus_of(me).project,
        )

    @call(
        about="Counts of sessions, agents, messages, unread, spaces, pins, projects and live leases, "
        "and where messages live."
    )
    def stats(self) -> Stats:
        from dev_sessions.messaging.results import Stats

        counts = self.store.counts()
        return Stats(
            sessions=len(self.sessions.sessions()),
            agents=counts["agents"],
            messages=counts["messages"],
            unread=counts["unread"],
            spaces=counts["spaces"],
            pinned=counts["pinned"],
            projects=counts["projects"],
            leases=counts["leases"],
            engine=self.store.engine,
            store=self.store.where,
            schema=self.store.version,
        )


def priority_choice(value: str) -> str:
    if value not in PRIORITIES:
        raise UsageError(f"--priority {value!r}: choose one of {', '.join(PRIORITIES)}")
    return value
