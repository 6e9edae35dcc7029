from __future__ import annotations

import pytest

from dev_sessions.durations import format_age, parse_duration
from dev_sessions.errors import UsageError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("1.5", 1.5), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "2x", "-5", "2 h", "1h-3m", "abc"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="duration"):
        parse_duration(text)


def test_ages() -> None:
    assert format_age(5) == "5s"
    assert format_age(125) == "2m"
    assert format_age(7300) == "2h"
    assert format_age(90000) == "1d"
