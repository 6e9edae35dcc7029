"""What Claude Code's terminal screen shows, as a pure function of the captured text. No I/O here.

The screen is the only place where some states are visible at all: first-run dialogs (trust this
folder, use this API key, accept bypass mode) come before Claude writes any file, and a permission
prompt or an AskUserQuestion only shows in the pane. Observed layouts (Claude Code 2.1.197):

* Input box ready: a rule line, the prompt line starting with ``❯``, a rule line, then a status line
  (``? for shortcuts``, ``bypass permissions on``, or a passing hint). While a turn runs, the status
  line says ``esc to interrupt``.
* Dialog: numbered options (``❯ 1. Yes`` marks the highlighted one; AskUserQuestion options have an
  indented description line each) under a question, and a last line of key hints such as
  ``Enter to confirm · Esc to cancel`` or ``Esc to cancel · Tab to amend``. The input box is hidden.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from dev_sessions.backend import Dialog, Option

State = Literal["ready", "busy", "dialog", "starting"]

_RULE = re.compile(r"^\s*─{10,}")
_OPTION = re.compile(r"^\s*(❯\s*)?(\d{1,2})\.\s+(\S.*?)\s*$")
_DIALOG_KEYS = ("Esc to cancel", "Enter to confirm", "Enter to select")
_BUSY = "esc to interrupt"
_TEXT_OPTION = ("type something", "other")


@dataclass(frozen=True)
class Screen:
    state: State
    dialog: Dialog | None = None
    hint: str = ""
    prompt: str | None = None
    """The first line of the input box (``❯`` and what is typed), when the input box shows."""


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def classify(text: str) -> Screen:
    lines = _lines(text)
    if not lines:
        return Screen("starting")
    last = lines[-1]
    hint = _hint(lines)
    if any(key in last for key in _DIALOG_KEYS):
        dialog = parse_dialog(lines)
        if dialog is not None:
            return Screen("dialog", dialog, hint)
    prompt = _input_box(lines)
    if prompt is not None:
        busy = any(_BUSY in line for line in lines[-3:])
        return Screen("busy" if busy else "ready", None, hint, prompt)
    return Screen("starting", None, hint)


def _input_box(lines: list[str]) -> str | None:
    """The prompt line of the input box: a rule, a ``❯`` line (and its continuation lines), a rule,
    and status lines below; None when the screen shows no input box."""
    rules = [i for i, line in enumerate(lines) if _RULE.match(line)]
    if len(rules) < 2:
        return None
    top, bottom = rules[-2], rules[-1]
    if bottom - top < 2 or len(lines) - bottom > 6:
        return None
    line = lines[top + 1].replace("\xa0", " ").strip()
    if not line.startswith("❯") or _OPTION.match(line):
        return None
    return line


def parse_dialog(lines: list[str]) -> Dialog | None:
    """The numbered options nearest the bottom, and the question above the first of them."""
    options: list[Option] = []
    selected: int | None = None
    first_index: int | None = None
    expected: int | None = None
    # Walk up from the key hints: options come numbered downwards, so upwards they count down to 1.
    for index in range(len(lines) - 2, max(-1, len(lines) - 60), -1):
        match = _OPTION.match(lines[index])
        if match is None:
            continue
        number = int(match.group(2))
        if expected is not None and number != expected:
            if options:
                break
            continue
        options.insert(0, Option(number, match.group(3)))
        if match.group(1):
            selected = number
        first_index = index
        expected = number - 1
        if number == 1:
            break
    if not options or options[0].number != 1 or first_index is None:
        return None
    options = _with_descriptions(lines, first_index, options)
    above: list[str] = []
    for line in reversed(lines[max(0, first_index - 12) : first_index]):
        if _RULE.match(line):
            break
        if line.strip():
            above.insert(0, line.strip())
    asking = [line for line in above if "?" in line]
    source = asking[-1] if asking else (above[0] if above else "")
    question = source[: source.rfind("?") + 1] if "?" in source else source
    context = tuple(line for line in above if line != source)
    text_option = next((o for o in options if o.label.lower().rstrip(".").startswith(_TEXT_OPTION)), None)
    return Dialog(question, context, tuple(options), selected, text_option)


def _with_descriptions(lines: list[str], start: int, options: list[Option]) -> list[Option]:
    """Attach to each option the indented lines right under it (AskUserQuestion's descriptions)."""
    numbers = {o.number: o for o in options}
    current: int | None = None
    extra: dict[int, list[str]] = {}
    for line in lines[start:-1]:
        match = _OPTION.match(line)
        if match and int(match.group(2)) in numbers:
            current = int(match.group(2))
            continue
        if current is not None and line.strip() and not _RULE.match(line):
            extra.setdefault(current, []).append(line.strip())
        elif _RULE.match(line):
            current = None
    return [Option(o.number, o.label, " ".join(extra.get(o.number, []))) for o in options]


def _hint(lines: list[str]) -> str:
    """The last line that says something, for error messages about a screen we do not recognise."""
    for line in reversed(lines):
        stripped = line.strip()
        if stripped and not _RULE.match(line):
            return stripped[:160]
    return ""
