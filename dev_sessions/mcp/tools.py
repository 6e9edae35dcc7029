"""The MCP tools, derived from the API's description: no SDK here, and no tool written by hand.

Each ``@call`` of the library (:mod:`dev_sessions.api`) is one tool: its name (``Call.tool``), its
description (``Call.about``), and an input schema made from the method's signature (the same types
the gateway checks each argument against, :mod:`dev_sessions.gateway.checks`). The gateway-only
arguments (``scope``) are not offered. A result goes back as the JSON an agent reads (``--json``'s
shapes where a value has one) under ``{"result": ...}`` (structured content must be an object), and
as text: the text itself for a call that returns text, else that JSON.

Most argument names mean the same in every tool; :data:`ARGUMENTS` says what each is, once (``tool.arg``
where one tool's differs).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import PurePath
from typing import Any, NamedTuple

from dev_sessions.api import Call, calls, library

APIS = ("sessions", "messages")

ARGUMENTS: dict[str, str] = {
    "session_id": "A session's id, like fizz-top.",
    "session_ids": 'Session ids, like ["fizz-top", "buzz-low"].',
    "text": "The prompt, sent as is.",
    "timeout": "Seconds to wait at most; null waits as long as it takes.",
    "path": "The directory the agent works in (relative to this server's working directory).",
    "cli": "claude or codex.",
    "host": "Start it on this machine over ssh (an alias from ~/.ssh/config, or user@host).",
    "worktree": 'Work in a git worktree of its own on this branch ("" for a new dev-sessions/<id>).',
    "plan": "Codex: Plan mode (plans, may ask questions) instead of acting.",
    "approvals": "never (default), on-request or untrusted: when the agent asks before acting.",
    "to": "A session id, an agent name, a space, or parent.",
    "body": "The message text.",
    "sender": "Who sends it (default: you: DEV_SESSIONS_AGENT, else DEV_SESSIONS_ID, else user).",
    "reader": "Whose messages (default: yours).",
    "agent": "Which agent (default: you).",
    "creator": "Who creates it (default: you).",
    "create.parent": "Who it reports to (its `parent` for messages; default: you).",
    "create_space.parent": "The space this one nests in.",
    "create.description": "A few words on what the session is for (shown in list).",
    "create.model": "The model the agent uses (default: its own).",
    "create.mode": "native (default) or docker.",
    "create.session_id": "Use this id (it must be free) instead of a new one.",
    "priority": "low, normal, high or urgent (urgent can interrupt a running Codex turn).",
    "message_id": "A message's id (a number).",
    "message_ids": "Message ids (numbers).",
    "since": "An age like 30m or 2h, or an ISO time.",
    "limit": "At most this many.",
    "metadata": "A JSON object kept with the message.",
    "answer": "An option's number or label, or the text to answer with.",
    "count": "How many of the last replies.",
    "goal": "Wait for the thread goal to be met (Codex), not just the turn.",
    "steer": "Codex: add it to the running turn instead of queueing it.",
    "keep_worktree": "Keep the worktree even when it has no changes.",
    "forget": "Drop a session whose host does not answer from the list anyway.",
    "remote": "Include sessions on other hosts (one ssh call per host); false: only this machine's.",
    "emoji": "One emoji, like 👍, or a :short_name: like :+1:.",
    "peer": "The agent your direct conversation is with.",
    "pinned_messages.space": "The space whose pins to list.",
    "older_than": "An age like 30d or 12h: messages created before then go.",
    "dry_run": "Only count what would go; delete nothing.",
    "takeover": "Take the name over from another live session that holds it.",
    "session": "The agent session holding the name (default: the one this server runs in, if any).",
}


class Tool(NamedTuple):
    name: str
    api: str
    call: Call
    description: str
    input_schema: dict[str, Any]
    function: Any
    """The library's method (unbound): what the arguments are checked against."""


@cache
def tools() -> dict[str, Tool]:
    """Every tool, by name (both APIs)."""
    from dev_sessions.gateway.checks import hints

    found: dict[str, Tool] = {}
    for api in APIS:
        cls = library(api)
        for name, spec in calls(cls).items():
            if spec.stream:
                continue  # a tool answers once; a stream has no tool (its backlog: `logs`)
            function = getattr(cls, name)
            if spec.tool in found:
                raise RuntimeError(f"two calls are the MCP tool {spec.tool!r}: name one with @call(tool=...)")
            found[spec.tool] = Tool(
                spec.tool,
                api,
                spec,
                spec.about or _first_line(function),
                _schema(spec, function, hints(function)),
                function,
            )
    return found


def _first_line(function: object) -> str:
    doc = inspect.getdoc(function) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _schema(spec: Call, function: Any, hints: Mapping[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.name == "self" or parameter.name not in spec.args:
            continue
        schema = schema_of(hints.get(parameter.name, Any))
        about = ARGUMENTS.get(f"{spec.tool}.{parameter.name}") or ARGUMENTS.get(parameter.name)
        if about:
            schema["description"] = about
        if parameter.default is inspect.Parameter.empty:
            required.append(parameter.name)
        elif parameter.default is None or isinstance(parameter.default, (str, int, float, bool)):
            schema["default"] = parameter.default
        properties[parameter.name] = schema
    found: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        found["required"] = required
    return found


def schema_of(hint: Any) -> dict[str, Any]:
    """The JSON schema of the values a parameter of type ``hint`` takes (what the gateway accepts)."""
    if hint is Any or isinstance(hint, typing.ForwardRef):
        return {}  # any JSON value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        arms = [schema_of(arm) for arm in typing.get_args(hint)]
        simple = [arm.get("type") for arm in arms]
        if all(isinstance(t, str) and len(arm) == 1 for t, arm in zip(simple, arms, strict=True)):
            return {"type": simple}
        return {"anyOf": arms}
    if hint is None or hint is type(None):
        return {"type": "null"}
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(hint))}
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if hint in names:
        return {"type": names[hint]}
    if origin in (list, Sequence, tuple) or hint in (list, Sequence):
        items = typing.get_args(hint)
        return {"type": "array", "items": schema_of(items[0])} if items else {"type": "array"}
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return {"type": "object"}
    return {}


def plain(value: object) -> object:
    """A result as the JSON an agent reads: a value's own JSON shape (``to_json``, a session's record)
    where it has one, a dataclass as its fields, tuples as lists, paths as text."""
    to_json = getattr(value, "to_json", None)
    if callable(to_json) and not isinstance(value, type):
        return plain(to_json())
    to_record = getattr(value, "to_record", None)
    if callable(to_record) and not isinstance(value, type):
        return plain(to_record())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def as_text(value: object, data: object) -> str:
    """The text content of a result: text as it is (a reply, a screen), a list of texts one after
    another, anything else its JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return "\n\n".join(value)
    return json.dumps(data, ensure_ascii=False, indent=1)
