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
    args: frozenset[str]
    long: bool = False
    paths: frozenset[str] = field(default_factory=frozenset)


def _call(*args: str, long: bool = False, paths: tuple[str, ...] = ()) -> Call:
    return Call(frozenset(args), long, frozenset(paths))


CALLS: dict[str, dict[str, Call]] = {
    "sessions": {
        "create": _call(
            "cli", "path", "description", "mode", "approvals", "model", "parent", paths=("path",)
        ),
        "get": _call("session_id"),
        "send": _call("session_id", "text", "steer"),
        "wait": _call("session_ids", "timeout", "goal", long=True),
        "ask": _call("session_id", "text", "timeout", long=True),
        "last_messages": _call("session_id", "count"),
        "status": _call("session_id"),
        "interrupt": _call("session_id"),
        "respond": _call("session_id", "answer"),
        "goal": _call("session_id", "action", "objective", "budget"),
        "logs": _call("session_id"),
        "screen": _call("session_id"),
        "inspect": _call("session_id"),
        "list_sessions": _call(),
        "kill": _call("session_ids"),
        "kill_all": _call(),
        "kill_older_than": _call("seconds"),
    },
    "messages": {
        "send": _call("to", "body", "sender", "priority", "reply_to", "metadata"),
        "reply": _call("message_id", "body", "sender", "priority"),
        "read": _call("reader", "unread", "mark_read", "sender", "since", "limit"),
        "wait": _call("reader", "timeout", "mark_read", long=True),
        "thread": _call("message_id"),
        "mark_read": _call("message_ids", "reader"),
        "status": _call("message_id"),
        "search": _call("query", "limit"),
        "feed": _call("since", "limit"),
        "create_space": _call("name", "parent", "description", "creator"),
        "spaces": _call(),
        "join": _call("space", "agent"),
        "leave": _call("space", "agent"),
        "members": _call("space"),
        "space_send": _call("space", "body", "sender", "priority", "metadata", "reply_to"),
        "space_read": _call("space", "reader", "since", "limit", "unread"),
        "register": _call("name"),
        "heartbeat": _call("agent", "status"),
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
