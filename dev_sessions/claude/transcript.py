"""Claude Code's JSONL transcript, read as pure functions from entries to facts. No I/O here.

Facts this module relies on (see PROTOCOLS.md; observed with Claude Code 2.1.197):

* Exactly one ``{"type": "system", "subtype": "turn_duration"}`` entry per finished interactive turn.
  Other ``system`` subtypes do not end a turn. A turn that fails on an API error writes an assistant
  entry with ``isApiErrorMessage: true`` (``model: "<synthetic>"``): 2.1.197 follows it with a
  ``turn_duration``, 2.1.332 writes none, so that entry itself ends the turn, as failed.
* Order is not always chronological (the first turn may write ``assistant`` and ``turn_duration``
  before ``user``), so a turn is found by counting end markers after a point, never by position.
* An interrupted turn writes no ``turn_duration``; it writes a user entry whose text starts with
  ``[Request interrupted by user``.
* A prompt typed while a turn runs is queued: a ``queue-operation`` ``enqueue`` entry, later a
  ``remove`` (the prompt was folded into the running turn at a tool boundary) or a ``dequeue`` (it
  starts the next turn).
* Each content block of one API message is its own ``assistant`` entry, all with the same
  ``message.id``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from dev_sessions.backend import LogItem

if TYPE_CHECKING:
    from dev_sessions.follow import Event

Entry = dict[str, Any]

INTERRUPT_PREFIX = "[Request interrupted by user"
_TAKEN = ("dequeue", "remove")


def _loads() -> Any:
    try:
        import orjson

        return orjson.loads
    except ImportError:  # pragma: no cover - orjson is a dependency, this only guards odd installs
        import json

        return json.loads


def parse_lines(lines: Iterable[bytes]) -> Iterator[Entry]:
    """Entries from complete JSONL lines; a line that is not a JSON object is skipped."""
    loads = _loads()
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            yield entry


def _message(entry: Entry) -> dict[str, Any]:
    message = entry.get("message")
    return message if isinstance(message, dict) else {}


def _blocks(entry: Entry) -> list[dict[str, Any]]:
    content = _message(entry).get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def user_text(entry: Entry) -> str | None:
    """The typed text of a user entry (None for tool results and other non-prompt content)."""
    if entry.get("type") != "user":
        return None
    texts = [b.get("text", "") for b in _blocks(entry) if b.get("type") == "text"]
    return "\n".join(t for t in texts if isinstance(t, str)) if texts else None


def is_prompt(entry: Entry) -> bool:
    """A user entry that starts a turn: typed text, not a tool result, an interrupt or injected context."""
    if entry.get("type") != "user" or entry.get("isMeta"):
        return False
    text = user_text(entry)
    return text is not None and not text.startswith(INTERRUPT_PREFIX)


def is_turn_end(entry: Entry) -> bool:
    return (
        entry.get("type") == "system"
        and entry.get("subtype") == "turn_duration"
        and not entry.get("isSidechain")
    )


def is_interrupt(entry: Entry) -> bool:
    text = user_text(entry)
    return text is not None and text.startswith(INTERRUPT_PREFIX)


def count_turn_ends(data: bytes) -> int:
    """Finished turns in raw transcript bytes, without parsing them (cheap enough for a quick command)."""
    return data.count(b'"subtype":"turn_duration"')


def queue_depth(data: bytes) -> int:
    """Prompts waiting in Claude's queue, from raw transcript bytes."""
    enqueued = data.count(b'"operation":"enqueue"')
    taken = sum(data.count(b'"operation":"%s"' % op.encode()) for op in _TAKEN)
    return max(0, enqueued - taken)


# -- assistant messages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AssistantMessage:
    id: str
    text: str
    timestamp: str
    api_error: bool


def assistant_messages(entries: Iterable[Entry]) -> list[AssistantMessage]:
    """Assistant messages in order: the text blocks of one ``message.id`` joined, thinking and tool
    calls left out, messages without any text skipped."""
    order: list[str] = []
    texts: dict[str, list[str]] = {}
    first: dict[str, Entry] = {}
    errors: dict[str, bool] = {}
    for entry in entries:
        if entry.get("type") != "assistant" or entry.get("isSidechain"):
            continue
        mid = _message(entry).get("id") or entry.get("uuid") or ""
        if mid not in texts:
            order.append(mid)
            texts[mid] = []
            first[mid] = entry
        errors[mid] = errors.get(mid, False) or bool(entry.get("isApiErrorMessage"))
        texts[mid].extend(
            b["text"] for b in _blocks(entry) if b.get("type") == "text" and isinstance(b.get("text"), str)
        )
    return [
        AssistantMessage(
            id=mid,
            text="\n\n".join(texts[mid]),
            timestamp=str(first[mid].get("timestamp", "")),
            api_error=errors[mid],
        )
        for mid in order
        if any(t for t in texts[mid])
    ]


# -- the turn of one send --------------------------------------------------------------------------

Outcome = Literal["completed", "interrupted", "failed"]


@dataclass(frozen=True)
class TurnResult:
    outcome: Outcome
    error: str | None = None


class TurnTracker:
    """Follows the entries written after a prompt was sent and tells when that prompt's turn ended.

    ``queued`` says whether the prompt went into Claude's queue because a turn was running, and
    ``ahead`` how many queued prompts were before it. The queue hands a prompt over in one of two ways:
    ``remove`` folds it into the running turn at a tool boundary (that turn's end is ours), ``dequeue``
    makes it the next turn (written before the running turn's end, so ours starts at the next prompt
    entry, not at the next turn end).
    """

    def __init__(self, *, queued: bool = False, ahead: int = 0) -> None:
        self._phase: Literal["queued", "next", "turn"] = "queued" if queued else "turn"
        self._takes_needed = ahead + 1

    def feed(self, entries: Iterable[Entry]) -> TurnResult | None:
        for entry in entries:
            result = self._step(entry)
            if result is not None:
                return result
        return None

    def _step(self, entry: Entry) -> TurnResult | None:
        if entry.get("isSidechain"):
            return None
        if self._phase == "queued":
            return self._while_queued(entry)
        if self._phase == "next":
            if is_prompt(entry):
                self._phase = "turn"
            return None
        kind = entry.get("type")
        if kind == "assistant" and entry.get("isApiErrorMessage"):
            texts = [b.get("text", "") for b in _blocks(entry) if b.get("type") == "text"]
            return TurnResult("failed", " ".join(t for t in texts if t) or "API error")
        if is_interrupt(entry):
            return TurnResult("interrupted")
        if is_turn_end(entry):
            return TurnResult("completed")
        return None

    def _while_queued(self, entry: Entry) -> TurnResult | None:
        if entry.get("type") == "queue-operation":
            operation = entry.get("operation")
            if operation in _TAKEN:
                self._takes_needed -= 1
                if self._takes_needed <= 0:
                    self._phase = "turn" if operation == "remove" else "next"
            elif operation not in (None, "enqueue"):
                # e.g. the queue was handed back to the input box: our prompt will not run.
                return TurnResult("interrupted", "the queued prompt was taken back into the input box")
        elif is_interrupt(entry):
            return TurnResult("interrupted", "the turn before the queued prompt was interrupted")
        return None


# -- a readable log --------------------------------------------------------------------------------


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def conversation(entries: Iterable[Entry]) -> list[LogItem]:
    """The conversation as a person reads it: prompts, answers, tool calls, results, turn ends."""
    items: list[LogItem] = []
    for entry in entries:
        if entry.get("isSidechain") or entry.get("isMeta"):
            continue
        stamp = str(entry.get("timestamp", ""))
        kind = entry.get("type")
        if kind == "user":
            for block in _blocks(entry):
                if block.get("type") == "text" and not str(block.get("text", "")).startswith("<"):
                    items.append(LogItem(stamp, "user", str(block.get("text", ""))))
                elif block.get("type") == "tool_result":
                    content = block.get("content")
                    if isinstance(content, list):
                        content = " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
                    items.append(LogItem(stamp, "result", _short(content)))
        elif kind == "assistant":
            for block in _blocks(entry):
                if block.get("type") == "text":
                    items.append(LogItem(stamp, "assistant", str(block.get("text", ""))))
                elif block.get("type") == "tool_use":
                    args = block.get("input") or {}
                    shown = args.get("command") or args.get("file_path") or args.get("description") or args
                    items.append(LogItem(stamp, "tool", f"{block.get('name')}({_short(shown, 120)})"))
        elif (folded := _folded_prompt(entry)) is not None:
            items.append(LogItem(stamp, "user", folded))
        elif is_turn_end(entry):
            seconds = (entry.get("durationMs") or 0) / 1000
            items.append(LogItem(stamp, "turn", f"turn ended after {seconds:.1f} s"))
    return _in_time_order(items)


def _folded_prompt(entry: Entry) -> str | None:
    """A queued prompt folded into the running turn (``remove``): Claude records it as an attachment,
    not as a user entry."""
    attachment = entry.get("attachment")
    if entry.get("type") != "attachment" or not isinstance(attachment, dict):
        return None
    prompt = attachment.get("prompt")
    if attachment.get("type") != "queued_command" or attachment.get("commandMode", "prompt") != "prompt":
        return None
    return prompt if isinstance(prompt, str) else None


def _in_time_order(items: list[LogItem]) -> list[LogItem]:
    """Items sorted by time (a first turn may be written out of order); an item without a time keeps
    its place after the one before it. The sort is stable: items of one moment keep file order."""
    keyed = []
    last = ""
    for position, item in enumerate(items):
        last = item.timestamp or last
        keyed.append((last, position, item))
    return [item for _, _, item in sorted(keyed, key=lambda k: (k[0], k[1]))]


# -- events, as they land --------------------------------------------------------------------------


class EventReader:
    """Entries to :class:`dev_sessions.follow.Event`\\ s, a batch at a time, in time order within a
    batch (a first turn may write its reply before its prompt, in one write). An API-error turn is one
    ``failed`` turn event: 2.1.197 follows the error entry with a ``turn_duration``, which is then not
    a second turn."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self._failed = False

    def feed(self, entries: Iterable[Entry]) -> list[Event]:
        from dev_sessions.follow import Event, first_lines, target_of

        sid = self.session_id
        found: list[Event] = []
        for entry in entries:
            if entry.get("isSidechain") or entry.get("isMeta"):
                continue
            stamp = str(entry.get("timestamp", ""))
            kind = entry.get("type")
            if kind == "user":
                for block in _blocks(entry):
                    text = block.get("text")
                    if block.get("type") == "text" and isinstance(text, str):
                        if text.startswith(INTERRUPT_PREFIX):
                            found.append(Event("turn", sid, stamp, outcome="interrupted"))
                        elif not text.startswith("<"):
                            found.append(Event("prompt", sid, stamp, text=text))
                            self._failed = False
                    elif block.get("type") == "tool_result":
                        content = block.get("content")
                        if isinstance(content, list):
                            content = "\n".join(
                                str(c.get("text", "")) for c in content if isinstance(c, dict)
                            )
                        found.append(Event("result", sid, stamp, text=first_lines(content or "")))
            elif kind == "assistant":
                if entry.get("isApiErrorMessage"):
                    texts = [b.get("text", "") for b in _blocks(entry) if b.get("type") == "text"]
                    error = " ".join(t for t in texts if isinstance(t, str) and t) or "API error"
                    found.append(Event("turn", sid, stamp, outcome="failed", text=error))
                    self._failed = True
                    continue
                for block in _blocks(entry):
                    if block.get("type") == "text" and isinstance(block.get("text"), str):
                        found.append(Event("reply", sid, stamp, text=block["text"]))
                    elif block.get("type") == "tool_use":
                        name = str(block.get("name") or "tool")
                        found.append(
                            Event("tool", sid, stamp, tool=name, target=target_of(block.get("input")))
                        )
            elif (folded := _folded_prompt(entry)) is not None:
                found.append(Event("prompt", sid, stamp, text=folded))
            elif is_turn_end(entry):
                if self._failed:
                    self._failed = False
                    continue
                millis = entry.get("durationMs")
                seconds = millis / 1000 if isinstance(millis, int | float) else None
                found.append(Event("turn", sid, stamp, outcome="completed", seconds=seconds))
        return _events_in_time_order(found)


def _events_in_time_order(events: list[Event]) -> list[Event]:
    keyed = []
    last = ""
    for position, event in enumerate(events):
        last = event.timestamp or last
        keyed.append((last, position, event))
    return [event for _, _, event in sorted(keyed, key=lambda k: (k[0], k[1]))]
