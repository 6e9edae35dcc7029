"""What the app-server's objects mean for dev-sessions, as pure functions: statuses, turn outcomes,
messages, logs, and the questions a thread waits on (and how an answer becomes a reply).

Shapes (Codex 0.169.0): a thread status is tagged (``{"type": "idle"}``, ``{"type": "active",
"activeFlags": ["waitingOnApproval"]}``, ``notLoaded``, ``systemError``); a turn's status is a plain
string (``inProgress``, ``completed``, ``interrupted``, ``failed``); items are tagged by ``type``
(``userMessage`` with text ``content`` parts and the ``clientId`` we gave it, ``agentMessage`` with
``text``, ``commandExecution``, ``fileChange``, ...).

A question (Codex 0.169.0 and 0.171.0, Plan mode only) is the server request ``USER_INPUT`` with
``{threadId, turnId, itemId, questions: [{id, header, question, isOther: true, isSecret: false,
options: [{label, description}]}], isBlocking: true, autoResolutionMs: null}``; the thread's status
carries ``waitingOnUserInput`` meanwhile. The reply ``{"answers": {question id: {"answers": [text]}}}``
answers them all at once and becomes the tool's output to the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dev_sessions.backend import Dialog, LogItem, Option
from dev_sessions.codex.protocol import JsonObject, ServerRequest

WAITING_FLAGS = ("waitingOnApproval", "waitingOnUserInput")
ENDED = {"completed": "completed", "interrupted": "interrupted", "failed": "failed"}

# The approval decisions we offer, in order: (decision, label).
DECISIONS = (
    ("accept", "Yes"),
    ("acceptForSession", "Yes, and don't ask again for this session"),
    ("decline", "No, and carry on"),
    ("cancel", "No, and stop the turn"),
)
APPROVALS = ("item/commandExecution/requestApproval", "item/fileChange/requestApproval")
USER_INPUT = "item/tool/requestUserInput"
OTHER_LABEL = "Other (type an answer)"
# Codex's collaboration modes (``ModeKind``). Only in Plan mode does Codex run the model's
# ``request_user_input`` tool calls (as USER_INPUT requests); in Default mode it answers them itself
# with "request_user_input is unavailable in Default mode".
COLLABORATION_MODES = ("plan", "default")


def thread_state(status: JsonObject | None) -> tuple[str, str]:
    """(dev-sessions state, detail) for a thread status."""
    kind = (status or {}).get("type")
    if kind == "active":
        flags = status.get("activeFlags") or [] if status else []
        if any(flag in WAITING_FLAGS for flag in flags):
            return "waiting_for_input", ", ".join(flags)
        return "working", ""
    if kind == "systemError":
        return "error", "the thread is in a system error state"
    if kind in ("idle", "notLoaded", None):
        return "idle", ""
    return "idle", f"unknown thread status {kind}"


def collaboration_mode(mode: str, model: str) -> JsonObject:
    """The ``collaborationMode`` of ``thread/settings/update`` (experimental API): ``settings.model``
    is required (and becomes the thread's model); no developer instructions means the mode's own."""
    if mode not in COLLABORATION_MODES:
        raise ValueError(f"unknown collaboration mode {mode!r}")
    return {"mode": mode, "settings": {"model": model, "developer_instructions": None}}


def user_text(item: JsonObject) -> str:
    parts = item.get("content") or []
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text")


def turn_carries(turn: JsonObject, client_id: str) -> bool:
    return any(
        item.get("type") == "userMessage" and item.get("clientId") == client_id
        for item in turn.get("items") or []
    )


def turn_outcome(turn: JsonObject) -> tuple[str, str | None] | None:
    """(outcome, error message) of a finished turn; None while it runs."""
    outcome = ENDED.get(str(turn.get("status")))
    if outcome is None:
        return None
    error = turn.get("error") or {}
    message = error.get("message") if isinstance(error, dict) else None
    return outcome, (str(message) if message else ("the turn failed" if outcome == "failed" else None))


def agent_messages(turns_oldest_first: Iterable[JsonObject]) -> list[str]:
    return [
        str(item.get("text", ""))
        for turn in turns_oldest_first
        for item in turn.get("items") or []
        if item.get("type") == "agentMessage" and item.get("text")
    ]


def _short(text: Any, limit: int = 200) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def stamp_now() -> str:
    import time

    return _stamp(time.time() * 1000)


def _stamp(ms: Any) -> str:
    if not isinstance(ms, int | float) or ms <= 0:
        return ""
    from datetime import datetime, timezone

    moment = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def log_items(turns_oldest_first: Iterable[JsonObject]) -> list[LogItem]:
    items: list[LogItem] = []
    for turn in turns_oldest_first:
        for item in turn.get("items") or []:
            stamp = _stamp(item.get("startedAtMs"))
            kind = item.get("type")
            if kind == "userMessage":
                items.append(LogItem(stamp, "user", user_text(item)))
            elif kind == "agentMessage":
                items.append(LogItem(stamp, "assistant", str(item.get("text", ""))))
            elif kind == "commandExecution":
                items.append(LogItem(stamp, "tool", f"command({_short(item.get('command'), 120)})"))
                if item.get("aggregatedOutput") is not None or item.get("status") == "declined":
                    output = item.get("aggregatedOutput") if item.get("status") != "declined" else "declined"
                    items.append(LogItem(_stamp(item.get("completedAtMs")), "result", _short(output)))
            elif kind == "fileChange":
                paths = [c.get("path", "?") for c in item.get("changes") or [] if isinstance(c, dict)]
                items.append(LogItem(stamp, "tool", f"edit({', '.join(paths)})"))
            elif kind not in ("reasoning", None):
                items.append(LogItem(stamp, "tool", str(kind)))
        seconds = (turn.get("durationMs") or 0) / 1000
        ended = _stamp((turn.get("completedAt") or 0) * 1000)
        items.append(LogItem(ended, "turn", f"turn {turn.get('status')} after {seconds:.1f} s"))
    return items


# -- questions the thread waits on ------------------------------------------------------------------


def dialog_for(request: ServerRequest, answered: int = 0) -> Dialog:
    """The question a server request asks, as a dialog with numbered options."""
    params = request.params
    if request.method in APPROVALS:
        if request.method == APPROVALS[0]:
            question = "Run this command?"
            context = [str(params.get("command", "")), f"in {params.get('cwd', '?')}"]
        else:
            question = "Apply these file changes?"
            context = [str(params.get("grantRoot") or "")]
        if params.get("reason"):
            context.append(str(params["reason"]))
        options = tuple(Option(n, label) for n, (_, label) in enumerate(DECISIONS, start=1))
        return Dialog(question, tuple(c for c in context if c), options)
    if request.method == USER_INPUT:
        questions = params.get("questions") or []
        current = questions[min(answered, len(questions) - 1)] if questions else {}
        choices = [
            Option(n, str(o.get("label", "")), str(o.get("description", "")))
            for n, o in enumerate(current.get("options") or [], start=1)
        ]
        text_option = None
        if current.get("isOther") or not choices:
            text_option = Option(len(choices) + 1, OTHER_LABEL)
            choices.append(text_option)
        header = str(current.get("header", ""))
        lines = [header] if header else []
        if len(questions) > 1:
            lines.append(f"question {answered + 1} of {len(questions)}")
        return Dialog(str(current.get("question", "")), tuple(lines), tuple(choices), text_option=text_option)
    summary = ", ".join(f"{k}={_short(v, 60)}" for k, v in params.items() if k not in ("threadId", "turnId"))
    return Dialog(f"{request.method}?", (summary,) if summary else (), (Option(1, "Decline"),))


def approval_reply(choice: Option) -> JsonObject:
    return {"decision": DECISIONS[choice.number - 1][0]}


# -- events, as the notifications bring them ----------------------------------------------------------
#
# Each event of an item or a turn carries a ``key`` (``<item id>/<kind>``, ``<turn id>/turn``), the same
# whether it came from a notification or from a listed turn, so that a follower that read the thread's
# turns can leave out what the notifications bring again. ``follow.Event.from_json`` ignores it.


def _keyed(event: Any, key: str | None) -> JsonObject:
    data: JsonObject = event.to_json()
    if key:
        data["key"] = key
    return data


def _item_key(item: JsonObject, kind: str) -> str | None:
    item_id = item.get("id")
    return f"{item_id}/{kind}" if isinstance(item_id, str) and item_id else None


def _item_started(item: JsonObject, stamp: str) -> list[JsonObject]:
    """A tool call as it starts: a command, a file change, another tool."""
    from dev_sessions.follow import Event, one_line

    kind = item.get("type")
    if kind == "commandExecution":
        event = Event("tool", timestamp=stamp, tool="command", target=one_line(item.get("command"), 80))
    elif kind == "fileChange":
        paths = [c.get("path", "?") for c in item.get("changes") or [] if isinstance(c, dict)]
        event = Event("tool", timestamp=stamp, tool="edit", target=one_line(", ".join(paths), 80))
    elif kind not in ("userMessage", "agentMessage", "reasoning", None):
        event = Event("tool", timestamp=stamp, tool=str(item.get("tool") or item.get("name") or kind))
    else:
        return []
    return [_keyed(event, _item_key(item, "tool"))]


def _item_completed(item: JsonObject, stamp: str) -> list[JsonObject]:
    """A prompt, a reply, or a command's output, once the item is done."""
    from dev_sessions.follow import Event, first_lines

    kind = item.get("type")
    if kind == "userMessage":
        return [_keyed(Event("prompt", timestamp=stamp, text=user_text(item)), _item_key(item, "prompt"))]
    if kind == "agentMessage":
        reply = Event("reply", timestamp=stamp, text=str(item.get("text", "")))
        return [_keyed(reply, _item_key(item, "reply"))]
    if kind == "commandExecution":
        output = item.get("aggregatedOutput") if item.get("status") != "declined" else "declined"
        result = Event("result", timestamp=stamp, text=first_lines(output or ""))
        return [_keyed(result, _item_key(item, "result"))]
    return []


def _turn_ended(turn: JsonObject, stamp: str) -> JsonObject:
    from dev_sessions.follow import Event

    millis = turn.get("durationMs")
    error = (turn.get("error") or {}).get("message") if isinstance(turn.get("error"), dict) else None
    event = Event(
        "turn",
        timestamp=stamp,
        outcome=ENDED.get(str(turn.get("status")), str(turn.get("status"))),
        seconds=millis / 1000 if isinstance(millis, int | float) else None,
        text=str(error or ""),
    )
    turn_id = turn.get("id")
    return _keyed(event, f"{turn_id}/turn" if isinstance(turn_id, str) and turn_id else None)


def follow_events(event: Any, stamp: str) -> list[JsonObject]:
    """What a notification or server request adds to a thread's event stream (``follow.Event`` as
    JSON, without the session id, which the bridge does not know): a prompt, a reply, a command or
    file change as it starts and a command's output as it ends, a turn's end, a status, the tokens,
    a question."""
    from dev_sessions.follow import Event

    if isinstance(event, ServerRequest):
        return [Event("dialog", timestamp=stamp, text=dialog_for(event).question).to_json()]
    method, params = event.method, event.params
    item = params.get("item") if isinstance(params.get("item"), dict) else {}
    if method == "item/started":
        return _item_started(item, stamp)
    if method == "item/completed":
        return _item_completed(item, stamp)
    if method == "turn/completed":
        return [_turn_ended(params.get("turn") or {}, stamp)]
    if method == "thread/status/changed":
        return [Event("status", timestamp=stamp, state=thread_state(params.get("status"))[0]).to_json()]
    if method == "thread/tokenUsage/updated":
        total = (params.get("tokenUsage") or {}).get("total")
        if isinstance(total, dict):
            from dev_sessions.usage import from_codex

            return [Event("tokens", timestamp=stamp, tokens=from_codex({"tokens": total}).tokens).to_json()]
    return []


def log_events(turns_oldest_first: Iterable[JsonObject]) -> list[JsonObject]:
    """The events of listed turns (``thread/turns/list`` with ``itemsView: full``), keyed as
    ``follow_events`` keys them: Codex lists an item once it is done, and a running turn without its
    end."""
    found: list[JsonObject] = []
    for turn in turns_oldest_first:
        for item in turn.get("items") or []:
            if not isinstance(item, dict):
                continue
            started = _stamp(item.get("startedAtMs"))
            found += _item_started(item, started)
            if item.get("type") == "commandExecution":
                if item.get("aggregatedOutput") is not None or item.get("status") == "declined":
                    found += _item_completed(item, _stamp(item.get("completedAtMs")) or started)
            else:
                found += _item_completed(item, started)
        if turn_outcome(turn) is not None:
            found.append(_turn_ended(turn, _stamp((turn.get("completedAt") or 0) * 1000)))
    return found
