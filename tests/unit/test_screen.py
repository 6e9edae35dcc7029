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


ASK_OPTIONS = ("Red", "Blue", "Type something.", "Chat about this")
TRUST = "Quick safety check: Is this a project you created or one you trust?"
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
    # Claude Code 2.1.332
    *(Case(f"2.1.332/{name}", "ready") for name in (
        "idle-bypass", "idle-default", "idle-auto", "idle-auto-first-start-banner", "after-interrupt",
        "after-api-error", "after-api-error-6s", "after-ask-escape", "after-permission-escape",
        "after-auto-mode-ran-touch", "busy-with-typed-text",
    )),
    Case("2.1.332/busy", "busy"),
    Case("2.1.332/busy-with-queued", "busy"),
    *(Case(f"2.1.332/{name}", "dialog", "Which colour?", ASK_OPTIONS)
      for name in ("dialog-ask", "dialog-ask-auto-mode", "dialog-ask-default-mode")),
    Case("2.1.332/dialog-permission", "dialog", "Do you want to proceed?", (
        "Yes", "Yes, and always allow access to /tmp/rc-scr-tefodm1r/work from this project",
        "Yes, and switch to auto mode · auto mode handles these prompts for you", "No",
    )),
    Case("2.1.332/dialog-trust", "dialog", TRUST, ("No, exit", "Yes, I trust this folder")),
    Case("2.1.332/dialog-api-key", "dialog", "Do you want to use this API key?", ("Yes", "No (recommended)")),
    Case("2.1.332/dialog-bypass-warning", "dialog",
         "WARNING: Claude Code running in Bypass Permissions mode", ("No, exit", "Yes, I accept")),
    Case("2.1.332/dialog-auto-mode-unavailable", "dialog", "Auto mode can't check actions in this session", (
        "stay in auto mode", "leave for accept edits mode and stop", "cancel",
    )),
]  # fmt: skip


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


class Keys(NamedTuple):
    test_id: str
    selected: int | None
    keys: tuple[tuple[str, ...], ...]


KEYS = [
    # 2.1.332's first-run dialogs lost their numbers (digits do nothing): the arrows and Enter pick.
    Keys("2.1.332/dialog-trust", 1, (("Enter",), ("Down", "Enter"))),
    Keys("2.1.332/dialog-api-key", 2, (("Up", "Enter"), ("Enter",))),
    Keys("2.1.332/dialog-bypass-warning", 1, (("Enter",), ("Down", "Enter"))),
    # A dialog of key hints only: each hint is chosen by its key.
    Keys("2.1.332/dialog-auto-mode-unavailable", None, (("Enter",), ("BTab",), ("Escape",))),
    # Numbered dialogs are answered by their number (no keys of their own).
    Keys("2.1.332/dialog-permission", 1, ((), (), (), ())),
    Keys("dialog-trust", 1, ((), ())),
]


@pytest.mark.parametrize("case", KEYS, ids=[c.test_id for c in KEYS])
def test_how_each_option_is_chosen(case: Keys) -> None:
    dialog = classify(screen(case.test_id)).dialog
    assert dialog is not None
    assert dialog.selected == case.selected
    assert tuple(o.keys for o in dialog.options) == case.keys


def test_a_box_too_tall_for_the_screen_is_still_the_input_box() -> None:
    # The text `send` put in through the editor: 40 lines and more (a box taller than Claude lets it
    # grow) hide the first line. 2.1.332 scrolls the box under a "↑ N more" rule; 2.1.197 lets it run
    # off the top of the screen, with no top rule at all.
    assert classify(screen("idle-long-text")).prompt == "❯ !not a shell command"
    scrolled = classify(screen("2.1.332/idle-long-text-scrolled"))
    assert (scrolled.state, scrolled.prompt) == ("ready", "… line 25 with a tab")
    overflowing = classify(screen("idle-long-text-overflow"))
    assert (overflowing.state, overflowing.prompt) == ("ready", "… line 23       with a tab")


def test_a_placeholder_in_the_input_box_is_no_prompt() -> None:
    # 2.1.332 shows a dim "Resend your message to try again" in the box after an API error.
    assert "Resend your message" in screen("2.1.332/after-api-error")
    assert classify(screen("2.1.332/after-api-error")).prompt == "❯"


@pytest.mark.parametrize("name", ["idle-slash-menu", "2.1.332/idle-slash-menu"])
def test_a_slash_command_in_the_box_with_its_menu_is_the_input_box(name: str) -> None:
    # 2.1.197 lists the matching commands under the box (more lines than status lines); 2.1.332 above.
    assert classify(screen(name)).prompt == "❯ /clear"


def test_empty_or_unknown_screens_are_starting() -> None:
    assert classify("").state == "starting"
    assert classify("\n\n  Loading...\n").state == "starting"
    assert classify("\n\n  Loading...\n").hint == "Loading..."
