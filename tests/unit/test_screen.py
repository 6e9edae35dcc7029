"""The screen classifier, on panes captured from the real Claude Code."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from dev_sessions.claude.screen import classify

SCREENS = Path(__file__).parents[1] / "fixtures" / "screens"


def screen(name: str) -> str:
    return (SCREENS / f"{name}.txt").read_text()


class Case(NamedTuple):
    test_id: str
    state: str
    question: str | None = None
    options: tuple[str, ...] = ()


CASES = [
    Case("idle-bypass", "ready"),
    Case("idle-default", "ready"),
    Case("after-permission-no", "ready"),
    Case("busy", "busy"),
    # An answer that itself contains a numbered list, a question and "Esc to cancel" is no dialog.
    Case("idle-numbered-answer", "ready"),
    Case("dialog-ask", "dialog", "Which colour?", ("Red", "Blue", "Type something.", "Chat about this")),
    Case(
        "dialog-permission",
        "dialog",
        "Do you want to proceed?",
        ("Yes", "Yes, and always allow access to work/ from this project", "No"),
    ),
    Case(
        "dialog-trust",
        "dialog",
        "Quick safety check: Is this a project you created or one you trust?",
        ("Yes, I trust this folder", "No, exit"),
    ),
    Case("dialog-api-key", "dialog", "Do you want to use this API key?", ("Yes", "No (recommended)")),
    Case(
        "dialog-bypass-warning",
        "dialog",
        "WARNING: Claude Code running in Bypass Permissions mode",
        ("No, exit", "Yes, I accept"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.test_id for c in CASES])
def test_screen_state_and_dialog(case: Case) -> None:
    found = classify(screen(case.test_id))
    assert found.state == case.state
    if case.question is None:
        assert found.dialog is None
    else:
        assert found.dialog is not None
        assert found.dialog.question == case.question
        assert tuple(o.label for o in found.dialog.options) == case.options
        assert [o.number for o in found.dialog.options] == list(range(1, len(case.options) + 1))


def test_ask_dialog_has_descriptions_context_and_a_text_option() -> None:
    dialog = classify(screen("dialog-ask")).dialog
    assert dialog is not None
    assert dialog.options[0].description == "The colour red"
    assert dialog.context == ("☐ Colour",)
    assert dialog.text_option is not None and dialog.text_option.number == 3
    assert dialog.selected == 1


def test_permission_dialog_shows_the_command_as_context() -> None:
    dialog = classify(screen("dialog-permission")).dialog
    assert dialog is not None
    assert "touch /tmp/exp/work/made2.txt" in dialog.context
    assert dialog.text_option is None


def test_input_box_prompt_line_is_read() -> None:
    assert classify(screen("idle-bypass")).prompt == "❯"
    # Claude draws the empty input box as "❯" and a no-break space.
    typed = screen("idle-bypass").replace("\n❯\u00a0", "\n❯\u00a0hello there", 1)
    assert classify(typed).prompt == "❯ hello there"


def test_empty_or_unknown_screens_are_starting() -> None:
    assert classify("").state == "starting"
    assert classify("\n\n  Loading...\n").state == "starting"
    assert classify("\n\n  Loading...\n").hint == "Loading..."
