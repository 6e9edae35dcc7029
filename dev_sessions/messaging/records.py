"""What messaging hands out: frozen records of messages, receipts, spaces and agents (and ``AgentInfo``,
one row of `agents`: a session or an outside agent). What only some commands return (reactions, pins,
conversations, a prune, a context, the counts) is :mod:`dev_sessions.messaging.results`'.

Plain data, built by :mod:`dev_sessions.messaging.store` from its rows and sent as they are through
the gateway (whose wire codec names this module). ``to_json`` is the shape of ``--json`` output. No
SQL and no I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dev_sessions.api import JsonObject


@dataclass(frozen=True)
class Receipt:
    """One recipient's delivery state of a message (the states are listed in the store's docstring)."""

    recipient: str
    state: str
    via: str
    delivered_at: str | None = None
    read_at: str | None = None
    failed_at: str | None = None
    reason: str | None = None
    attempts: int = 0
    retry_at_ms: int | None = None
    machine: str | None = None
    """The machine whose deliverer puts it into the recipient's session (None: one machine's store,
    or a mailbox)."""
    pasting_at: str | None = None
    """When a deliverer last began typing the notice into the session and did not see it through (it
    was killed, or the typing failed): it may be in the conversation already. None once delivered."""
    pasting_by: str | None = None
    """Which deliverer that was (``machine pid N``)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "recipient": self.recipient,
            "machine": self.machine,
            "state": self.state,
            "via": self.via,
            "deliveredAt": self.delivered_at,
            "readAt": self.read_at,
            "failedAt": self.failed_at,
            "reason": self.reason,
            "attempts": self.attempts,
            "retrying": self.retry_at_ms is not None and self.state == "failed",
            "pastingAt": self.pasting_at,
            "pastingBy": self.pasting_by,
        }


@dataclass(frozen=True)
class Message:
    id: int
    sender: str
    space: str | None
    priority: str
    body: str
    metadata: dict[str, Any] | None
    reply_to: int | None
    thread: int
    created_at: str
    receipt: Receipt | None = None
    """The reader's own receipt, when the message was read as someone's mail."""
    reactions: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Each emoji on it and who reacted with it, in the order they came (as ``msg read``, ``msg thread``,
    ``feed``, ``search`` and ``space read`` give it; ``msg reactions`` tells the same)."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "from": self.sender,
            "space": self.space,
            "priority": self.priority,
            "body": self.body,
            "metadata": self.metadata,
            "replyTo": self.reply_to,
            "thread": self.thread,
            "createdAt": self.created_at,
        }
        if self.receipt is not None:
            data["state"] = self.receipt.state
        if self.reactions:
            data["reactions"] = [reaction_json(emoji, agents) for emoji, agents in self.reactions]
        return data


def reaction_json(emoji: str, agents: Sequence[str]) -> dict[str, Any]:
    """One emoji on a message as JSON: it, how many reacted with it and who (``msg reactions --json``,
    and each message's ``reactions``)."""
    return {"emoji": emoji, "count": len(agents), "agents": list(agents)}


@dataclass(frozen=True)
class Space:
    name: str
    parent: str | None
    description: str
    created_at: str
    created_by: str
    members: int = 0
    project: str | None = None
    """The project it belongs to (``space create --project``)."""


@dataclass(frozen=True)
class Agent:
    name: str
    registered_at: str
    last_seen: str | None
    status: str | None
    machine: str | None = None
    """The machine it was last seen on (a store shared by several machines)."""
    session: str | None = None
    """The agent session that holds the name (``Settings.holder``), when one registered it."""
    took_over_from: str | None = None
    """In ``register``'s answer only: the session that held the name until it was taken over."""


@dataclass(frozen=True)
class AgentInfo:
    """One agent as ``agents`` lists it: a session (with its cli and parent) or an outside agent."""

    name: str
    kind: str
    status: str
    last_seen: str | None
    cli: str | None = None
    parent: str | None = None
    machine: str | None = None
    """Where it runs (a session) or was last seen (an outside agent); None when nobody said."""
    presence: str | None = None
    """``online`` or ``offline``: for a session of another machine, whether that machine said of it
    lately; for an outside agent, whether it was seen lately; None for a session of this machine."""
    session: str | None = None
    """An outside agent: the agent session that holds its name, when one registered it."""

    def to_json(self) -> JsonObject:
        data: JsonObject = {"name": self.name, "kind": self.kind, "machine": self.machine}
        if self.presence is not None:
            data["presence"] = self.presence
        if self.kind == "session":
            data.update(cli=self.cli, status=self.status, parent=self.parent, lastSeen=self.last_seen)
        else:
            data.update(status=self.status, lastSeen=self.last_seen, session=self.session)
        return data
