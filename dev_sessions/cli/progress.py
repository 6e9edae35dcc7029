"""What ``wait``, ``ask`` and ``logs --follow`` print from the event stream (:mod:`dev_sessions.follow`).

* The progress line: while ``wait`` / ``ask`` blocks on a terminal, one line per session on stderr,
  redrawn in place: id, status, time waited, the last thing the agent did (a tool call and its
  target, or "thinking"), the tool calls of this turn and the tokens so far; on a dialog, the
  question. It is redrawn when an event arrives (at most ``MAX_RATE`` times a second) and once a
  second for the clock, never in a busy loop, and erased before the command prints its result, so
  that what stays on the screen is exactly what the command prints without it. Only where
  :func:`wanted` says so: stderr a terminal, no ``--json`` or ``--quiet``, no ``NO_COLOR``, and a
  terminal that can redraw (not ``TERM=dumb``).
* The lines of ``logs --follow`` and ``wait --follow``: ``[HH:MM:SS] role: text``, as ``logs`` prints
  the conversation, or with ``--json`` one JSON object per event per line.

Agents' text reaches the terminal only through :func:`dev_sessions.terminal.cell` (every control
character shown as its picture, one line).
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

from dev_sessions.follow import Event
from dev_sessions.terminal import cell, json_line
from dev_sessions.usage import compact

if TYPE_CHECKING:
    from dev_sessions.api import SessionsAPI

log = logging.getLogger(__name__)

MAX_RATE = 5.0
"""Redraws a second at most."""
TICK_S = 1.0
"""The clock's redraw, without any event."""


def wanted(stream: TextIO, environ: Mapping[str, str], *, as_json: bool = False, quiet: bool = False) -> bool:
    """Whether to draw the progress line on ``stream``."""
    if as_json or quiet or "NO_COLOR" in environ or environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class SessionLine:
    """What one session's line shows, folded from its events."""

    def __init__(self, session_id: str, started: float) -> None:
        self.session_id = session_id
        self.started = started
        self.state = "working"
        self.doing = "thinking"
        self.tools = 0
        self.tokens: int | None = None
        self.dialog: str | None = None
        self.between_turns = True

    def apply(self, event: Event) -> None:
        kind = event.kind
        if kind == "prompt":
            if self.between_turns:  # a prompt folded into (or steered into) a running turn counts on
                self.tools, self.doing = 0, "thinking"
            self.between_turns, self.dialog = False, None
        elif kind == "tool":
            self.tools += 1
            self.doing = f"{event.tool}: {event.target}" if event.target else event.tool
        elif kind == "reply":
            self.doing = "replying"
        elif kind == "status":
            self.state = event.state
            if event.state != "waiting_for_input":
                self.dialog = None
        elif kind == "dialog":
            self.dialog = event.text
            self.state = "waiting_for_input"
        elif kind == "tokens" and event.tokens is not None:
            self.tokens = event.tokens
        elif kind == "turn":
            self.state = event.outcome or "completed"
            self.between_turns = True

    def render(self, now: float, width: int) -> str:
        seconds = int(now - self.started)
        clock = f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
        if self.dialog is not None or self.state == "waiting_for_input":
            text = f"{self.session_id}  waiting for input  {clock}  {self.dialog or ''}".rstrip()
        else:
            parts = [self.session_id, self.state, clock, self.doing]
            tail = f"{self.tools} tool call{'s' if self.tools != 1 else ''}"
            if self.tokens is not None:
                tail += f" · {compact(self.tokens)} tokens"
            text = "  ".join(parts) + "  · " + tail
        text = cell(text)
        return text if len(text) < width else text[: max(1, width - 2)] + "…"


class ProgressLine:
    """The live lines of a wait, on a terminal: start it before the wait, ``close`` it after."""

    def __init__(self, api: SessionsAPI, session_ids: Sequence[str], stream: TextIO) -> None:
        self.api = api
        self.ids = list(dict.fromkeys(session_ids))
        self.stream = getattr(stream, "raw", stream)  # our own sequences, past TerminalStream
        started = time.monotonic()
        self.lines = {sid: SessionLine(sid, started) for sid in self.ids}
        self._changed = threading.Condition()
        self._dirty = True
        self._stop = False
        self._drawn = 0
        self._last_draw = 0.0
        self._drawer = threading.Thread(target=self._draw_loop, name="progress", daemon=True)
        self._reader = threading.Thread(target=self._read, name="progress-events", daemon=True)

    def __enter__(self) -> ProgressLine:
        self._reader.start()
        self._drawer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> None:
        try:
            for event in self.api.follow(self.ids, start="turn"):
                with self._changed:
                    line = self.lines.get(event.session_id)
                    if line is not None:
                        line.apply(event)
                        self._dirty = True
                        self._changed.notify()
        except Exception as err:  # the line is a courtesy: the wait itself reports what went wrong
            log.debug("progress: the event stream stopped: %s", err)

    def _draw_loop(self) -> None:
        with self._changed:
            while not self._stop:
                if not self._dirty:
                    self._changed.wait(TICK_S)
                    if self._stop:
                        break
                soon = self._last_draw + 1 / MAX_RATE - time.monotonic()
                if soon > 0:
                    self._changed.wait(soon)
                    if self._stop:
                        break
                self._dirty = False
                self._draw()

    def _draw(self) -> None:
        width = shutil.get_terminal_size((80, 24)).columns
        now = time.monotonic()
        rendered = [self.lines[sid].render(now, width) for sid in self.ids]
        out = self._home() + "\n".join(f"\x1b[2K{text}" for text in rendered)
        self._write(out)
        self._drawn = len(rendered)
        self._last_draw = now

    def _home(self) -> str:
        """Back to the start of the first line drawn."""
        if self._drawn <= 1:
            return "\r"
        return f"\x1b[{self._drawn - 1}A\r"

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: nothing more to draw on
            self._stop = True

    def close(self) -> None:
        """Stop drawing and erase what was drawn: the screen is as if there had been no line."""
        with self._changed:
            self._stop = True
            self._changed.notify()
        if self._drawer.is_alive():
            self._drawer.join()
        if self._drawn:
            self._write(self._home() + "\x1b[J")
            self._drawn = 0


# -- lines of the event stream -------------------------------------------------------------------------

_ROLES = {"prompt": "user", "reply": "assistant"}


def text_line(event: Event) -> str | None:
    """``[HH:MM:SS] role: text``, as ``logs`` prints a conversation; None for what a person need not
    read in a stream (token counts, status changes but the end)."""
    stamp = event.timestamp[11:19] if len(event.timestamp) >= 19 else event.timestamp
    kind = event.kind
    if kind in _ROLES:
        body = event.text
        role = _ROLES[kind]
    elif kind == "tool":
        body, role = f"{event.tool}({event.target})", "tool"
    elif kind == "result":
        body, role = event.text, "result"
    elif kind == "turn":
        after = f" after {event.seconds:.1f} s" if event.seconds is not None else ""
        body, role = f"turn {event.outcome}{after}" + (f": {event.text}" if event.text else ""), "turn"
    elif kind == "dialog":
        body, role = event.text, "dialog"
    elif kind == "status" and event.state == "exited":
        body, role = "the session ended", "status"
    else:
        return None
    return f"[{stamp}] {role}: " + body.replace("\n", "\n    ")


def print_events(events: Iterator[Event], *, as_json: bool, out: TextIO | None = None) -> None:
    """Each event as it comes, flushed at once (a pipe to an agent must not hold it back)."""
    for event in events:
        stream = out or sys.stdout
        if as_json:
            stream.write(json_line(event.to_json()) + "\n")
        else:
            line = text_line(event)
            if line is None:
                continue
            stream.write(line + "\n")
        stream.flush()
