"""The tested range that doctor reports is the one the suite tests: the two pinned agent sets."""

from __future__ import annotations

import pytest

from dev_sessions.compat import TESTED, placement
from tests.fakes.agents import BASELINE, CURRENT


def test_the_tested_range_is_the_pinned_sets() -> None:
    assert TESTED["claude"] == (BASELINE.claude_version, CURRENT.claude_version)
    assert TESTED["codex"] == (BASELINE.codex_version, CURRENT.codex_version)


@pytest.mark.parametrize(
    ("agent", "answer", "expected"),
    [
        ("claude", "2.1.197 (Claude Code)", "tested"),
        ("claude", "2.1.250 (Claude Code)", "tested"),
        ("claude", "2.1.332 (Claude Code)", "tested"),
        ("claude", "2.1.333 (Claude Code)", "newer"),
        ("claude", "2.0.99 (Claude Code)", "older"),
        ("codex", "codex-cli 0.171.0", "tested"),
        ("codex", "codex-cli 0.172.1", "newer"),
        ("codex", "codex-cli dev", None),
    ],
)
def test_where_a_version_falls(agent: str, answer: str, expected: str | None) -> None:
    assert placement(agent, answer) == expected
