"""A session as it happens: one stream of typed events, from which every live face is derived.

``logs --follow``, ``wait --follow``, the progress line of ``wait`` and ``ask``, the gateway's
streamed ``follow`` and a remote host's all read the same :class:`Event` stream, written once here and
in each backend's follower:

* Claude (:mod:`dev_sessions.claude.following`): the transcript read on from where the last read
  stopped (``watch.Tail``), each batch of new entries turned into events
  (:class:`dev_sessions.claude.transcript.EventReader`), Claude's own state file for the status and a
  dialog, the tokens counted by ``usage.Tally`` from the same lines; it sleeps on inotify and a pidfd.
* Codex (:mod:`dev_sessions.codex.backend`): the bridge turns the app-server's notifications into
  events as they arrive (``codex.model.event_of``) and answers a long-poll (op ``follow``) with those
  after a sequence number; the backlog is the thread's log.

A follower is a generator of rounds (:data:`Rounds`): it yields the events it found, or a
:class:`Pause` to sleep on (inotify, a bridge call), and is sent what the pause brought back. The two
drivers, :func:`drive` (blocking) and :func:`drive_async` (an asyncio loop: the gateway), are the only
places that sleep. This module owns the event type and the drivers; it reads no file of its own.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from dev_sessions.backend import LogItem

Kind = Literal["prompt", "reply", "tool", "result", "turn", "dialog", "status", "tokens"]
KINDS: tuple[Kind, ...] = ("prompt", "reply", "tool", "result", "turn", "dialog", "status", "tokens")
Start = Literal["all", "turn", "now"]
"""Where a stream starts: the whole conversation so far, the turn of the last send, or from now."""

RESULT_LINES = 3
LINE_LIMIT = 200
TARGET_LIMIT = 80


@dataclass(frozen=True)
class Event:
    """One thing that happened in a session.

    ``prompt`` / ``reply``: ``text``. ``tool``: ``tool`` (its name) and ``target`` (what it acts on,
    short: the command run, the file edited). ``result``: ``text``, the tool result's first lines.
    ``turn``: ``outcome`` (completed, interrupted, failed) and ``seconds``, ``text`` an error.
    ``dialog``: ``text``, the question the session waits on. ``status``: ``state`` (working, idle,
    waiting_for_input, exited). ``tokens``: ``tokens``, the session's total so far."""

    kind: Kind
    session_id: str = ""
    timestamp: str = ""
    text: str = ""
    tool: str = ""
    target: str = ""
    outcome: str = ""
    seconds: float | None = None
    state: str = ""
    tokens: int | None = None

    def to_json(self) -> dict[str, Any]:
        """One line of ``logs --follow --json``: ``id``, ``kind``, ``timestamp`` and the fields of its
        kind that are set."""
        data: dict[str, Any] = {"id": self.session_id, "kind": self.kind, "timestamp": self.timestamp}
        for name in ("text", "tool", "target", "outcome", "state"):
            value = getattr(self, name)
            if value:
                data[name] = value
        if self.seconds is not None:
            data["seconds"] = self.seconds
        if self.tokens is not None:
            data["tokens"] = self.tokens
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        kind = data.get("kind")
        if kind not in KINDS:
            raise ValueError(f"not an event kind: {kind!r}")
        seconds, tokens = data.get("seconds"), data.get("tokens")
        return cls(
            kind=kind,
            session_id=str(data.get("id", "")),
            timestamp=str(data.get("timestamp", "")),
            text=str(data.get("text", "")),
            tool=str(data.get("tool", "")),
            target=str(data.get("target", "")),
            outcome=str(data.get("outcome", "")),
            seconds=float(seconds) if isinstance(seconds, int | float) else None,
            state=str(data.get("state", "")),
            tokens=int(tokens) if isinstance(tokens, int) else None,
        )


# -- short texts ------------------------------------------------------------------------------------


def one_line(value: Any, limit: int = LINE_LIMIT) -> str:
    text = value if isinstance(value, str) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_lines(value: Any, count: int = RESULT_LINES) -> str:
    """A tool result's first non-empty lines, each cut short, and how many more there were."""
    text = value if isinstance(value, str) else str(value)
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    shown = [one_line(line) for line in lines[:count]]
    if len(lines) > count:
        shown.append(f"… {len(lines) - count} more line(s)")
    return "\n".join(shown)


_TARGET_KEYS = (
    "command",
    "cmd",
    "file_path",
    "path",
    "notebook_path",
    "pattern",
    "url",
    "query",
    "description",
    "prompt",
    "skill",
)


def target_of(tool_input: Any) -> str:
    """What a tool call acts on, in a few words: the command, the file, the pattern."""
    if isinstance(tool_input, dict):
        for key in _TARGET_KEYS:
            value = tool_input.get(key)
            if isinstance(value, str) and value.strip():
                return one_line(value, TARGET_LIMIT)
            if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                return one_line(" ".join(value), TARGET_LIMIT)
        if "questions" in tool_input:
            questions = tool_input.get("questions") or []
            if isinstance(questions, list) and questions and isinstance(questions[0], dict):
                return one_line(questions[0].get("question", ""), TARGET_LIMIT)
        return ""
    return one_line(tool_input, TARGET_LIMIT) if tool_input else ""


def of_log(session_id: str, items: Iterable[LogItem]) -> list[Event]:
    """Events from a conversation as ``logs`` gives it (a backlog where a backend has nothing finer)."""
    found = []
    for item in items:
        if item.role == "user":
            found.append(Event("prompt", session_id, item.timestamp, text=item.text))
        elif item.role == "assistant":
            found.append(Event("reply", session_id, item.timestamp, text=item.text))
        elif item.role == "tool":
            name, _, rest = item.text.partition("(")
            target = rest[:-1] if rest.endswith(")") else rest
            found.append(Event("tool", session_id, item.timestamp, tool=name, target=one_line(target, 80)))
        elif item.role == "result":
            found.append(Event("result", session_id, item.timestamp, text=first_lines(item.text)))
        elif item.role == "turn":
            words = item.text.split()
            outcome = words[1] if len(words) > 1 and words[0] == "turn" else "completed"
            outcome = "completed" if outcome == "ended" else outcome
            seconds = _seconds_in(words)
            found.append(Event("turn", session_id, item.timestamp, outcome=outcome, seconds=seconds))
    return found


def _seconds_in(words: list[str]) -> float | None:
    for before, word in itertools.pairwise(words):
        if before == "after":
            try:
                return float(word)
            except ValueError:
                return None
    return None


def since_iso(since: str | None) -> str | None:
    """``--since`` (an age such as 30m, or an ISO time) as the UTC ISO time events carry."""
    if since is None:
        return None
    from datetime import datetime, timezone

    from dev_sessions.durations import parse_duration
    from dev_sessions.store import parse_iso

    moment = parse_iso(since) if any(c in since for c in "-:T") else None
    if moment is None:
        moment = datetime.fromtimestamp(time.time() - parse_duration(since), timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def since_filter(events: Iterable[Event], since_iso: str | None) -> list[Event]:
    """The events at or after ``since_iso`` (an ISO time, UTC, as the events carry), all without."""
    if since_iso is None:
        return list(events)
    return [e for e in events if e.timestamp and e.timestamp >= since_iso]


# -- rounds and their drivers ------------------------------------------------------------------------


class Pause(Protocol):
    """Something a follower sleeps on; what it brings back is sent into the follower."""

    def block(self) -> Any: ...

    async def block_async(self) -> Any: ...


Rounds = Generator["list[Event] | Pause", Any, None]
"""A follower: yields the events it found (sent back None) or a ``Pause`` (sent back what it
brought); it returns when the session is gone."""


def drive(rounds: Rounds) -> Iterator[Event]:
    """The events of a follower, sleeping where it says (blocking)."""
    try:
        value: Any = None
        while True:
            item = rounds.send(value)
            if isinstance(item, list):
                value = None
                yield from item
            else:
                value = item.block()
    except StopIteration:
        return
    finally:
        rounds.close()


async def drive_async(rounds: Rounds) -> AsyncIterator[Event]:
    """``drive`` for an asyncio loop (the gateway): the pauses are awaited, no thread is held."""
    try:
        value: Any = None
        while True:
            try:
                item = rounds.send(value)
            except StopIteration:
                return
            if isinstance(item, list):
                value = None
                for event in item:
                    yield event
            else:
                value = await item.block_async()
    finally:
        rounds.close()


def merged(streams: list[Iterator[Event]]) -> Iterator[Event]:
    """Several sessions' events as they come, one thread per session (a stream blocks)."""
    if len(streams) == 1:
        yield from streams[0]
        return
    import queue
    import threading

    box: queue.Queue[Event | BaseException | None] = queue.Queue()

    def pump(stream: Iterator[Event]) -> None:
        try:
            for event in stream:
                box.put(event)
        except BaseException as err:  # handed to the reader, which raises it as its own
            box.put(err)
        box.put(None)

    for stream in streams:
        threading.Thread(target=pump, args=(stream,), daemon=True).start()
    running = len(streams)
    while running:
        got = box.get()
        if got is None:
            running -= 1
        elif isinstance(got, BaseException):
            raise got
        else:
            yield got
