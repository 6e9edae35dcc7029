"""What Claude Code's terminal screen shows, as a pure function of the captured text. No I/O here.

The screen is the last resort: what Claude records or announces (its hooks, its transcript, its own
state file) decides first. It is still the only place for first-run dialogs (trust this folder, use
this API key, accept bypass mode), which come before Claude writes any file or runs any hook, and it
renders the option labels of the dialogs the hooks announce. Layouts seen (Claude Code 2.1.197 and
2.1.332; fixtures in tests/fixtures/screens/):

* Input box ready: a rule line, the prompt line starting with ``❯``, a rule line, then a status line
  (``? for shortcuts``, ``bypass permissions on``, ``manual mode on`` or a passing hint). While a turn
  runs, the status line says ``esc to interrupt``. The box may hold a dim placeholder (2.1.332 after
  an API error: ``Resend your message to try again``), which is no text of the user's.
  A box taller than it may grow hides its first lines: 2.1.332 (past about 20 lines) scrolls it under
  a top rule that says ``─── ↑ 26 more ───``; 2.1.197 (past about 45) lets it run off the top of the
  screen, so that no top rule shows at all.
* Dialog: options under a question, and a last line of key hints such as ``Enter to confirm · Esc to
  cancel`` or ``Esc to cancel · Tab to amend``. The input box is hidden. The options are
  - numbered (``❯ 1. Yes``; AskUserQuestion options have an indented description line each): a digit
    picks one;
  - or, in 2.1.332's first-run dialogs, unnumbered (``❯ No, exit`` / ``  Yes, I trust this folder``),
    where digits do nothing: the arrows move the ``❯`` and Enter picks;
  - or none at all, only key hints (``Enter to stay in auto mode · shift+Tab to leave … · Esc to
    cancel``): each hint is an option, chosen by its key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from dev_sessions.backend import Dialog, Option

State = Literal["ready", "busy", "dialog", "starting"]

_RULE = re.compile(r"^\s*(─{10,}|─+ [↑↓] \d+ more ─+)")
_SCROLLED = re.compile(r"^\s*─+ ↑ \d+ more ─+")
_OPTION = re.compile(r"^\s*(❯\s*)?(\d{1,2})\.\s+(\S.*?)\s*$")
_POINTED = re.compile(r"^(\s*)❯\s+(\S.*?)\s*$")
_DIALOG_KEYS = ("Esc to cancel", "Enter to confirm", "Enter to select")
_BUSY = "esc to interrupt"
_TEXT_OPTION = ("type something", "other")
# Dim text Claude shows in an empty input box: not a prompt anyone typed.
PLACEHOLDERS = ("Resend your message to try again",)
# Key names in Claude's hints, as tmux names them.
_KEY_NAMES = {"enter": "Enter", "esc": "Escape", "escape": "Escape", "tab": "Tab", "shift+tab": "BTab"}
_HINT = re.compile(r"^\s*(?P<key>[A-Za-z+]+) to (?P<action>.+?)\s*$")


@dataclass(frozen=True)
class Screen:
    state: State
    dialog: Dialog | None = None
    hint: str = ""
    prompt: str | None = None
    """The first line of the input box (``❯`` and what is typed), when the input box shows; when that
    line is scrolled out of sight, ``…`` and the first line that shows."""


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
        dialog = parse_dialog(lines) or parse_pointed(lines) or parse_key_hints(lines)
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
    if not rules or (len(lines) - rules[-1] > 6 and not _command_menu(lines[rules[-1] + 1 :])):
        return None
    bottom = rules[-1]
    if len(rules) < 2:
        return _overflowing_box(lines[:bottom])
    top = rules[-2]
    if bottom - top < 2:
        return None
    line = lines[top + 1].replace("\xa0", " ").strip()
    if _SCROLLED.match(lines[top]):
        return f"… {line}"
    if not line.startswith("❯") or _OPTION.match(line):
        return None
    if line[1:].strip() in PLACEHOLDERS:
        return "❯"
    return line


def _command_menu(below: list[str]) -> bool:
    """Lines under the box that are the slash-command menu (``/clear  Start a new session…``), which
    shows while the box holds a ``/`` command and may run longer than the status lines."""
    shown = [line for line in below if line.strip()]
    return bool(shown) and shown[0].startswith("/") and all(line.startswith(("/", " ")) for line in shown)


def _overflowing_box(body: list[str]) -> str | None:
    """The input box of 2.1.197 grown past the top of the screen: every line above its bottom rule is
    its text (the ``❯`` line, or continuation lines indented by two spaces)."""
    if not body or not body[0].strip():
        return None
    if not all(not line or line.startswith(("  ", "❯")) for line in body):
        return None
    first = body[0].replace("\xa0", " ").strip()
    return first if body[0].startswith("❯") else f"… {first}"


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
    question, context = _question(_block_above(lines, first_index))
    text_option = next((o for o in options if o.label.lower().rstrip(".").startswith(_TEXT_OPTION)), None)
    return Dialog(question, context, tuple(options), selected, text_option)


def _question(above: list[str]) -> tuple[str, tuple[str, ...]]:
    """The question among the lines above the options (the last one that asks), and the rest as context."""
    asking = [line for line in above if "?" in line]
    source = asking[-1] if asking else (above[0] if above else "")
    question = source[: source.rfind("?") + 1] if "?" in source else source
    return question, tuple(line for line in above if line != source)


def _block_above(lines: list[str], index: int, limit: int = 12) -> list[str]:
    """The non-empty lines above ``index``, up to a rule line."""
    above: list[str] = []
    for line in reversed(lines[max(0, index - limit) : index]):
        if _RULE.match(line):
            break
        if line.strip():
            above.insert(0, line.strip())
    return above


def parse_pointed(lines: list[str]) -> Dialog | None:
    """Unnumbered options (one marked ``❯``), just above the key hints: chosen with the arrows and Enter."""
    end = len(lines) - 1
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    start = end
    while start > 0 and lines[start - 1].strip() and not _RULE.match(lines[start - 1]):
        start -= 1
    block = lines[start:end]
    marked = [i for i, line in enumerate(block) if _POINTED.match(line)]
    if len(marked) != 1 or len(block) < 2:
        return None
    pointer = _POINTED.match(block[marked[0]])
    assert pointer is not None
    indent = len(pointer.group(1))
    labels = []
    for line in block:
        match = _POINTED.match(line)
        text = match.group(2) if match else line.strip()
        if not match and len(line) - len(line.lstrip()) != indent + 2:
            return None  # not a list of options
        labels.append(text)
    selected = marked[0] + 1
    options = tuple(Option(n, label, "", _arrows(selected, n)) for n, label in enumerate(labels, start=1))
    question, context = _question(_block_above(lines, start))
    return Dialog(question, context, options, selected, None)


def _arrows(selected: int, wanted: int) -> tuple[str, ...]:
    step = "Down" if wanted > selected else "Up"
    return (*([step] * abs(wanted - selected)), "Enter")


def parse_key_hints(lines: list[str]) -> Dialog | None:
    """A dialog with no list, only key hints (``Enter to stay … · Esc to cancel``): one option per hint."""
    options: list[Option] = []
    for part in lines[-1].split("·"):
        match = _HINT.match(part)
        if match is None:
            continue
        key = _KEY_NAMES.get(match.group("key").lower())
        if key is None:
            continue
        options.append(Option(len(options) + 1, match.group("action"), "", (key,)))
    if len(options) < 2:
        return None
    question, context = _question(_block_above(lines, len(lines) - 1, limit=20))
    return Dialog(question, context, tuple(options), None, None)


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
