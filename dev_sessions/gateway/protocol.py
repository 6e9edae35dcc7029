"""What goes over the gateway's wire: which library calls it serves, and how their values travel.

A call is ``POST /v1/call`` with ``{"api": "sessions" | "messages", "method": ..., "args": {...}}``.
Only the methods in ``CALLS`` are served, with only the arguments listed there, so the HTTP API can
never reach more of the library than the command line can. The answer is a stream of JSON lines:
``{"keepalive": true}`` while a long call (``wait``, ``ask``, ``msg wait``) runs, then one
``{"result": ...}`` or ``{"error": {"message", "exit", "kind"}}``.

Values are the library's own: dataclasses travel as ``{"$": name, **fields}``, tuples as
``{"$tuple": [...]}``, and come back as the same objects, so that the command line prints exactly what
it prints locally.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any


@dataclass(frozen=True)
class Call:
    """One served call: the arguments a client may give, and what the gateway's policy looks at.

    ``paths``: arguments that name a directory on the host (checked against the served roots; left
    out, the gateway's own working directory is what the library would use, and is checked instead).
    ``identity``: the argument that says who acts. ``owns``: the argument holding the session id(s)
    acted on. ``scope``: arguments only the gateway sets, to the scoped token's name (a filter).
    """

    args: frozenset[str]
    long: bool = False
    paths: frozenset[str] = field(default_factory=frozenset)
    identity: str | None = None
    owns: str | None = None
    scope: frozenset[str] = field(default_factory=frozenset)


def _call(
    *args: str,
    long: bool = False,
    paths: tuple[str, ...] = (),
    identity: str | None = None,
    owns: str | None = None,
    scope: tuple[str, ...] = (),
) -> Call:
    return Call(frozenset(args), long, frozenset(paths), identity, owns, frozenset(scope))


CALLS: dict[str, dict[str, Call]] = {
    "sessions": {
        "create": _call(
            "cli",
            "path",
            "description",
            "mode",
            "approvals",
            "model",
            "parent",
            "plan",
            paths=("path",),
            identity="parent",
        ),
        "get": _call("session_id", owns="session_id"),
        "send": _call("session_id", "text", "steer", "plan", owns="session_id"),
        "wait": _call("session_ids", "timeout", "goal", long=True, owns="session_ids"),
        "ask": _call("session_id", "text", "timeout", long=True, owns="session_id"),
        "last_messages": _call("session_id", "count", owns="session_id"),
        "status": _call("session_id", owns="session_id"),
        "interrupt": _call("session_id", owns="session_id"),
        "respond": _call("session_id", "answer", owns="session_id"),
        "goal": _call("session_id", "action", "objective", "budget", owns="session_id"),
        "logs": _call("session_id", owns="session_id"),
        "screen": _call("session_id", owns="session_id"),
        "inspect": _call("session_id", owns="session_id"),
        "list_sessions": _call(scope=("parent",)),
        "kill": _call("session_ids", owns="session_ids"),
        "kill_all": _call(scope=("parent",)),
        "kill_older_than": _call("seconds", scope=("parent",)),
    },
    "messages": {
        "send": _call("to", "body", "sender", "priority", "reply_to", "metadata", identity="sender"),
        "reply": _call("message_id", "body", "sender", "priority", identity="sender"),
        "read": _call("reader", "unread", "mark_read", "sender", "since", "limit", identity="reader"),
        "wait": _call("reader", "timeout", "mark_read", long=True, identity="reader"),
        "thread": _call("message_id", scope=("viewer",)),
        "mark_read": _call("message_ids", "reader", identity="reader"),
        "status": _call("message_id", scope=("viewer",)),
        "search": _call("query", "limit", scope=("viewer",)),
        "feed": _call("since", "limit", scope=("viewer",)),
        "create_space": _call("name", "parent", "description", "creator", identity="creator"),
        "spaces": _call(),
        "join": _call("space", "agent", identity="agent"),
        "leave": _call("space", "agent", identity="agent"),
        "members": _call("space"),
        "space_send": _call("space", "body", "sender", "priority", "metadata", "reply_to", identity="sender"),
        "space_read": _call("space", "reader", "since", "limit", "unread", identity="reader"),
        "register": _call("name"),
        "heartbeat": _call("agent", "status", identity="agent"),
        "agents": _call("online"),
    },
}

# Long calls are answered by their async twin, so that a waiting call holds no thread.
ASYNC_TWINS = {
    ("sessions", "wait"): "wait_async",
    ("sessions", "ask"): "ask_async",
    ("messages", "wait"): "wait_async",
}

# The types that may travel, and where they live: imported only when one arrives, so that a command
# in a container loads no more of the library than its answer needs.
_TYPES: dict[str, str] = {
    "Session": "dev_sessions.store",
    "Status": "dev_sessions.backend",
    "Dialog": "dev_sessions.backend",
    "Option": "dev_sessions.backend",
    "WaitResult": "dev_sessions.backend",
    "LogItem": "dev_sessions.backend",
    "Started": "dev_sessions.backend",
    "Created": "dev_sessions.sessions",
    "Message": "dev_sessions.messaging.store",
    "Receipt": "dev_sessions.messaging.store",
    "Space": "dev_sessions.messaging.store",
    "Agent": "dev_sessions.messaging.store",
}


def _type(name: str) -> type:
    module = _TYPES.get(name)
    if module is None:
        raise ValueError(f"unknown type on the wire: {name!r}")
    import importlib

    cls: type = getattr(importlib.import_module(module), name)
    return cls


def encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"$": type(value).__name__, **data}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, PurePath):
        return str(value)
    return value


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if "$tuple" in value and len(value) == 1:
            return tuple(decode(v) for v in value["$tuple"])
        if "$" in value:
            cls = _type(str(value["$"]))
            return cls(**{k: decode(v) for k, v in value.items() if k != "$"})
        return {k: decode(v) for k, v in value.items()}
    return value
