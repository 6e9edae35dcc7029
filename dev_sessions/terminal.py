"""Text on its way into a terminal, made unable to do anything but be text.

Two directions, one rule: a control character is shown as its Unicode control picture (``␛`` for
ESC), never sent, so nothing is silently dropped and nothing acts.

* Into an agent's pane (:func:`neutralise`): a pasted text is wrapped in bracketed-paste markers; an
  ESC inside it could close the bracket early and type keys of its own (``\\x1b[201~`` then ``/exit``
  and Enter). Line feeds and tabs stay; a carriage return (alone or in CRLF) becomes a line feed,
  which is what the agent made of it anyway, so that no CR can ever act as an Enter; C0 and C1
  controls and DEL become pictures; a lone surrogate (an undecodable byte carried by
  ``surrogateescape``, such as ``\\udc9b``, which would reach the pane as a raw 8-bit CSI) becomes
  U+FFFD.
* Onto the user's terminal (:func:`for_terminal`, :class:`TerminalStream`): message bodies, replies
  and descriptions are other agents' text, and could carry OSC, CSI or BEL sequences that retitle,
  recolour or rewrite the terminal. On a terminal every control character but line feed and tab is
  shown as a picture; ``--json`` stays exact (:func:`json_text` escapes, never replaces).
* Into a log on the user's terminal (:func:`log_to_terminal`): a log line names what arrived (a
  request's path, which any web page can make a browser send with ``%1b`` or ``%0a`` in it, and which
  aiohttp decodes), so each record is one line with every control character shown.
"""

from __future__ import annotations

import logging
import re
from typing import Any, TextIO

_PICTURES = {code: chr(0x2400 + code) for code in range(0x20)}
_PICTURES[0x7F] = "\u2421"  # ␡
_C1 = {code: "\ufffd" for code in range(0x80, 0xA0)}
_SURROGATES = {code: "\ufffd" for code in range(0xD800, 0xE000)}


def _table(keep: str) -> dict[int, str]:
    table = {**_PICTURES, **_C1, **_SURROGATES}
    for char in keep:
        table.pop(ord(char), None)
    return table


_TEXT = _table("\n\t")
_CELL = _table("")
_CR = re.compile(r"\r\n?")


def neutralise(text: str) -> str:
    """Text to paste into an agent's pane: only printable characters, line feeds and tabs."""
    return _CR.sub("\n", text).translate(_TEXT)


def for_terminal(text: str) -> str:
    """Text to print on a terminal: no control character acts (line feeds and tabs stay)."""
    return text.translate(_TEXT)


def cell(text: str) -> str:
    """One cell of a table: everything on one line, every control character shown."""
    return text.translate(_CELL)


_JSON_UNSAFE = re.compile("[\u007f-\u009f\u2028\u2029\ud800-\udfff]")


def json_text(data: Any) -> str:
    """JSON for any output: exact values, but no raw DEL, C1 control, line separator or lone surrogate.

    ``json.dumps`` already escapes C0 controls; these others it would write raw. Escaping them keeps
    every value exactly as it was for a JSON reader, and harmless for a terminal.
    """
    import json  # only the --json output needs it

    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def json_line(data: Any) -> str:
    """``json_text`` on one line (a stream of objects, one a line: ``logs --follow --json``)."""
    import json

    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class TerminalStream:
    """A text stream for a terminal: everything written goes through :func:`for_terminal`."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(for_terminal(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    @property
    def raw(self) -> TextIO:
        """The terminal itself, for our own control sequences (the progress line's redraw); what goes
        through it must already be made harmless (:func:`cell`)."""
        return self._stream

    def fileno(self) -> int:
        return self._stream.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class LogFormatter(logging.Formatter):
    """Log records for a terminal: the message on one line, every control character shown (a line
    break in a value cannot forge a record); a traceback keeps its lines but nothing in it acts."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return cell(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return for_terminal(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return for_terminal(super().formatStack(stack_info))


def log_to_terminal(level: int, fmt: str, stream: TextIO | None = None) -> None:
    """``logging.basicConfig`` for a long-running command whose log goes to the user's terminal."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LogFormatter(fmt))
    logging.basicConfig(level=level, handlers=[handler])
