"""What the messaging commands of issue 16 return: reactions, pins, conversations, what a prune did, an
agent's context and the store's counts.

Loaded only by the commands that return them: a dataclass costs about a millisecond to make, and the
quick commands (``msg send``, ``msg read``) need none of these (see :mod:`dev_sessions.results`).
Plain data, no SQL and no I/O; ``to_json`` is the shape of ``--json`` output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dev_sessions.api import JsonObject
from dev_sessions.messaging.records import Message, reaction_json


@dataclass(frozen=True)
class Reaction:
    """One emoji on a message, and the agents who reacted with it (in the order they did)."""

    emoji: str
    agents: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.agents)

    def to_json(self) -> JsonObject:
        return reaction_json(self.emoji, self.agents)


@dataclass(frozen=True)
class Pin:
    """A pinned message, who pinned it and when."""

    message: Message
    pinned_by: str
    pinned_at: str

    def to_json(self) -> dict[str, Any]:
        return {**self.message.to_json(), "pinnedBy": self.pinned_by, "pinnedAt": self.pinned_at}


@dataclass(frozen=True)
class Conversation:
    """The messages an agent sent or received in one place: a space (``kind`` ``space``, ``name`` the
    space's), or between the same agents outside a space (``direct``, ``name`` the others, joined by
    commas; the agent alone: notes to itself)."""

    kind: str
    name: str
    participants: tuple[str, ...]
    messages: int
    unread: int
    last: Message

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "participants": list(self.participants),
            "messages": self.messages,
            "unread": self.unread,
            "last": self.last.to_json(),
        }


@dataclass(frozen=True)
class Pruned:
    """What ``msg prune`` did, or would do (``dry_run``): messages created before ``before``."""

    before: str
    pruned: int
    kept_pinned: int
    """Old messages kept because they are pinned."""
    detached: int
    """Replies kept whose parent was pruned (their ``replyTo`` is null now; their thread stays)."""
    dry_run: bool = False

    def to_json(self) -> JsonObject:
        return {
            "before": self.before,
            "pruned": self.pruned,
            "keptPinned": self.kept_pinned,
            "detached": self.detached,
            "dryRun": self.dry_run,
        }


@dataclass(frozen=True)
class Context:
    """What an agent needs to know when it starts work (``dev-sessions context``)."""

    name: str
    kind: str
    """``session`` (a session of this machine's store) or ``agent`` (an outside agent)."""
    machine: str
    parent: str | None
    """Who created it (a session: its recorded parent, else ``user``); None for an outside agent."""
    cli: str | None
    description: str | None
    holder: str | None
    """An outside agent: the agent session holding its name; this process's own, when it runs in one."""
    unread: int
    latest_unread: Message | None
    mentions: tuple[Message, ...]
    """The newest messages (up to 5) that name it as ``@name`` in their body, not its own."""
    spaces: tuple[str, ...]
    sessions: tuple[str, ...]
    """The sessions of this machine it created (their parent is its name)."""
    leases: tuple[JsonObject, ...] = ()
    """The live leases it holds (``lease list --mine``)."""
    focus: str | None = None
    """The project its reads are scoped to (None: every project)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "machine": self.machine,
            "parent": self.parent,
            "cli": self.cli,
            "description": self.description,
            "holder": self.holder,
            "unread": self.unread,
            "latestUnread": None if self.latest_unread is None else self.latest_unread.to_json(),
            "mentions": [m.to_json() for m in self.mentions],
            "spaces": list(self.spaces),
            "sessions": list(self.sessions),
            "leases": list(self.leases),
            "focus": self.focus,
        }


@dataclass(frozen=True)
class Stats:
    """How much there is: sessions (this machine's), outside agents, messages, unread receipts, spaces,
    pins; and the message store's engine, where it is (a URL without its password) and its schema."""

    sessions: int
    agents: int
    messages: int
    unread: int
    spaces: int
    pinned: int
    engine: str
    store: str
    schema: int
    projects: int | None = None
    """How many projects (None: left out of the JSON)."""
    leases: int | None = None
    """How many live leases (None: left out of the JSON)."""

    def to_json(self) -> JsonObject:
        data: JsonObject = {
            "sessions": self.sessions,
            "agents": self.agents,
            "messages": self.messages,
            "unread": self.unread,
            "spaces": self.spaces,
            "pinned": self.pinned,
        }
        if self.projects is not None:
            data["projects"] = self.projects
        if self.leases is not None:
            data["leases"] = self.leases
        data.update(engine=self.engine, store=self.store, schema=self.schema)
        return data
