"""Conversations and mentions, derived from the messages: pure functions, no SQL and no I/O.

A conversation is where an agent's messages went: a space (every message sent to it that the agent
sent or received), or, outside spaces, the same set of agents (a direct message and its replies are
one conversation between their sender and recipient). The store hands over one row per message and
recipient; :func:`group` makes the conversations. A mention is ``@name`` in a body, with the name
whole (``@bob`` is not in ``@bobby`` nor in ``x@bob``); :func:`mentions` says whether a body has one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

_WORD = r"A-Za-z0-9_"
_MARKS = r".@:+\-"
"""The characters a name has besides letters and digits (see ``api.check_name``)."""


@lru_cache(maxsize=64)
def _mention(name: str) -> re.Pattern[str]:
    # Before: nothing of a name (an e-mail address is no mention). After: the name ends; a mark that
    # ends a sentence or a clause ("@bob." "@bob:") ends it too, one followed by more of a name does not.
    return re.compile(rf"(?<![{_WORD}{_MARKS}])@{re.escape(name)}(?![{_WORD}]|[{_MARKS}][{_WORD}])")


def mentions(body: str, name: str) -> bool:
    """Whether ``body`` names ``name`` as ``@name``."""
    return _mention(name).search(body) is not None


@dataclass
class Gathered:
    """One conversation as it is being gathered (see :func:`group`)."""

    kind: str
    name: str
    participants: set[str] = field(default_factory=set)
    messages: set[int] = field(default_factory=set)
    unread: set[int] = field(default_factory=set)
    last: int = 0


def group(me: str, rows: Iterable[tuple[int, str, str | None, str | None, str | None]]) -> list[Gathered]:
    """The conversations of ``me`` from rows of (message id, sender, space, recipient, recipient's
    state): every row of every message ``me`` sent or received, one per recipient (a message without
    recipients has one row with a null recipient). Newest conversation first."""
    senders: dict[int, tuple[str, str | None]] = {}
    recipients: dict[int, set[str]] = {}
    unread: set[int] = set()
    for message_id, sender, space, recipient, state in rows:
        senders[message_id] = (sender, space)
        found = recipients.setdefault(message_id, set())
        if recipient is not None:
            found.add(recipient)
            if recipient == me and state != "read":
                unread.add(message_id)
    gathered: dict[tuple[str, str], Gathered] = {}
    for message_id, (sender, space) in senders.items():
        people = {sender} | recipients[message_id]
        if space is not None:
            key = ("space", space)
        else:
            others = sorted(people - {me}) or [me]
            key = ("direct", ",".join(others))
        conversation = gathered.get(key)
        if conversation is None:
            conversation = gathered[key] = Gathered(*key)
        conversation.participants |= people
        conversation.messages.add(message_id)
        if message_id in unread:
            conversation.unread.add(message_id)
        conversation.last = max(conversation.last, message_id)
    return sorted(gathered.values(), key=lambda c: c.last, reverse=True)
