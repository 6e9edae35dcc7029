"""How `respond` maps an answer onto a dialog's options."""

from __future__ import annotations

import pytest

from dev_sessions.backend import Dialog, Option, choose
from dev_sessions.errors import BadAnswer, UsageError

PERMISSION = Dialog(
    "Do you want to proceed?",
    options=(Option(1, "Yes"), Option(2, "Yes, and don't ask again"), Option(3, "No")),
)
ASK = Dialog(
    "Which colour?",
    options=(Option(1, "Red"), Option(2, "Blue"), Option(3, "Type something."), Option(4, "Chat about this")),
    text_option=Option(3, "Type something."),
)


@pytest.mark.parametrize(
    ("answer", "number"),
    [("1", 1), ("3", 3), ("yes", 1), ("No", 3), (" no ", 3), ("Yes, and", 2)],
)
def test_permission_answers(answer: str, number: int) -> None:
    option, typed = choose("s", PERMISSION, answer)
    assert option.number == number
    assert typed is None


def test_label_prefix_must_be_unique() -> None:
    with pytest.raises(BadAnswer, match="matches none"):
        choose("s", PERMISSION, "Ye")


def test_unknown_answer_without_text_option_is_refused_with_the_options() -> None:
    with pytest.raises(BadAnswer, match=r"1\. Yes; 2\. Yes, and don't ask again; 3\. No"):
        choose("s", PERMISSION, "maybe")


def test_free_text_goes_to_the_text_option() -> None:
    option, typed = choose("s", ASK, "purple, please")
    assert option.number == 3
    assert typed == "purple, please"


def test_labels_and_numbers_win_over_free_text() -> None:
    assert choose("s", ASK, "blue")[0].number == 2
    assert choose("s", ASK, "4") == (Option(4, "Chat about this"), None)


def test_empty_answer_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        choose("s", ASK, "  ")
