"""What Claude Code announces through its hooks, read as pure functions. No I/O here.

Every Claude session is started with ``--settings <file>`` (see :func:`settings`), which adds hooks to
the user's own (it never replaces them, and no file of the user's is touched). Each hook runs the same
constant command, ``cat >> "$DEV_SESSIONS_EVENTS"``: Claude hands the hook one JSON object on stdin,
and it lands in the session's events file (``$DEV_SESSIONS_HOME/events/<id>.jsonl``), which ``wait``
and ``status`` watch. The file is a stream of JSON objects, one per hook call, not necessarily one per
line (:func:`parse` reads any whitespace between them).

Which hooks, and why only these (a hook is synchronous for most events and costs 20-30 ms of the turn
each time it runs; observed on Claude Code 2.1.197 and 2.1.332, docs/claude-code.md):

* ``SessionStart``: the session id and transcript Claude uses, also after ``/clear`` (a new id).
* ``PermissionRequest``: a dialog is coming up: a tool's permission prompt, or an AskUserQuestion
  (it fires for those even in bypass mode), with the tool's input: the question and its options.
* ``StopFailure``: the turn failed (an API error), with the error text. Not awaited by Claude.
* ``Notification``: ``permission_prompt`` / ``idle_prompt`` / ``elicitation_dialog``.
* ``SessionEnd``: why the session ended (``clear``, ``prompt_input_exit``, ...).

The turn's end needs no hook: the transcript records it (``turn_duration``), and a ``Stop`` hook
would only delay it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dev_sessions.backend import Dialog, Option

EVENTS_VAR = "DEV_SESSIONS_EVENTS"
# Constant: no value of anyone's ever goes into it. It always exits 0 (a failing hook shows on screen).
HOOK_COMMAND = f'cat >> "${EVENTS_VAR}" 2>/dev/null; exit 0'
HOOKED = ("SessionStart", "SessionEnd", "PermissionRequest", "StopFailure", "Notification")
ASK_TOOL = "AskUserQuestion"
TEXT_LABEL = "Type something."

Event = dict[str, Any]


def settings() -> dict[str, Any]:
    """The ``--settings`` document that installs our hooks."""
    hook = {"type": "command", "command": HOOK_COMMAND}
    return {"hooks": {name: [{"hooks": [hook]}] for name in HOOKED}}


def parse(data: bytes) -> Iterator[Event]:
    """The hook payloads in ``data``, in order; a cut or garbled object ends the stream there."""
    import json  # only when there is something to read: quick commands rarely get here

    decoder = json.JSONDecoder()
    text = data.decode("utf-8", "replace")
    index, end = 0, len(text)
    while True:
        while index < end and text[index] in " \t\r\n":
            index += 1
        if index >= end:
            return
        try:
            value, index = decoder.raw_decode(text, index)
        except ValueError:
            # A hook still writing, or a broken write: skip to the next object start, if any.
            following = text.find("\n{", index)
            if following < 0:
                return
            index = following + 1
            continue
        if isinstance(value, dict):
            yield value


def name(event: Event) -> str:
    return str(event.get("hook_event_name", ""))


@dataclass(frozen=True)
class Started:
    """Claude's ``SessionStart``: which session id and transcript it writes to now."""

    session_id: str
    transcript_path: str
    source: str


def last_start(events: Iterator[Event] | list[Event]) -> Started | None:
    found = None
    for event in events:
        if name(event) == "SessionStart" and isinstance(event.get("session_id"), str):
            found = Started(
                str(event["session_id"]), str(event.get("transcript_path", "")), str(event.get("source", ""))
            )
    return found


@dataclass(frozen=True)
class Announced:
    """What the hooks said since a point: the last dialog coming up, and a failed turn."""

    dialog: Dialog | None = None
    failure: str | None = None


def fold(events: Iterator[Event] | list[Event]) -> Announced:
    dialog: Dialog | None = None
    failure: str | None = None
    for event in events:
        kind = name(event)
        if kind == "PermissionRequest":
            dialog = dialog_of(str(event.get("tool_name", "")), event.get("tool_input"))
        elif kind == "StopFailure":
            failure = _failure_text(event)
    return Announced(dialog, failure)


def _failure_text(event: Event) -> str:
    message = event.get("last_assistant_message")
    error = event.get("error")
    if isinstance(message, str) and message.strip():
        return message.strip()
    return str(error or "the turn failed")


def dialog_of(tool: str, tool_input: Any) -> Dialog:
    """The dialog a ``PermissionRequest`` brings up, as far as the hook tells it.

    AskUserQuestion: its first question, its options numbered as Claude numbers them (the digit picks),
    then Claude's own "Type something." for a free answer. Any other tool: its permission prompt,
    answered without relying on the numbers, which differ between versions: Enter takes the
    preselected "Yes", Escape declines.
    """
    args: Mapping[str, Any] = tool_input if isinstance(tool_input, Mapping) else {}
    if tool == ASK_TOOL:
        questions = args.get("questions")
        first = questions[0] if isinstance(questions, list) and questions else {}
        first = first if isinstance(first, Mapping) else {}
        labels = [o for o in first.get("options", []) if isinstance(o, Mapping)]
        options = [
            Option(n, str(o.get("label", "")), str(o.get("description", ""))) for n, o in enumerate(labels, 1)
        ]
        text = Option(len(options) + 1, TEXT_LABEL)
        header = first.get("header")
        context = (str(header),) if header else ()
        return Dialog(str(first.get("question", "")), context, (*options, text), 1, text)
    target = args.get("command") or args.get("file_path") or args.get("url") or args.get("pattern") or ""
    context = (f"{tool}: {target}",) if target else (tool,)
    answers = (Option(1, "Yes", "", ("Enter",)), Option(2, "No", "", ("Escape",)))
    return Dialog(f"Allow {tool}?", context, answers, 1, None)


def rendered(announced: Dialog, screen: Dialog | None) -> Dialog:
    """The announced dialog, with the screen's rendering of its options when the screen shows it.

    The hook says what is asked; the screen, when it can be read, says how the options are numbered
    and labelled on this version (a permission prompt has 3 options on one version and 4 on another).
    """
    if screen is None or not screen.options:
        return announced
    permission = announced.text_option is None
    labels = [o.label.lower() for o in announced.options if o.label != TEXT_LABEL]
    shown = [o.label.lower() for o in screen.options]
    if not permission and not all(label in shown for label in labels):
        return announced  # the screen shows something else: keep what the hook said
    question = screen.question if permission else announced.question
    context = screen.context or announced.context
    return Dialog(question, context, screen.options, screen.selected, screen.text_option)
