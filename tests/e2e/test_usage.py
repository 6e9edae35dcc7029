"""End to end: the tokens, turns and time of real Claude and Codex sessions, as the fake model servers
report them (input: the prompt's characters, output: the reply's, plus fixed cache counts; see
``usage()`` in ``dev_sessions/selftest/fakes/``), through `usage`, `list --json` and `inspect`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from dev_sessions.selftest.fakes import anthropic, openai_responses
from dev_sessions.selftest.fakes.anthropic import FakeAnthropic
from dev_sessions.selftest.fakes.openai_responses import FakeResponses
from tests.conftest import DevSessions

pytestmark = pytest.mark.e2e

FIRST = "count these tokens"  # 18 characters, echoed back
SECOND_CLAUDE = "think <<multi>>"  # 15 characters; the reply is "first part" and "second part": 21
SECOND_CODEX = "and again"  # 9 characters, echoed back
TOKENS = ("input", "output", "cache_read", "cache_write")


def counts(found: dict[str, Any]) -> tuple[int, ...]:
    return tuple(found[k] for k in (*TOKENS, "turns"))


def priced(price: float) -> None:
    home = Path(os.environ["DEV_SESSIONS_HOME"])
    (home / "prices.json").write_text(json.dumps({"*": dict.fromkeys(TOKENS, price)}))


def test_claude_usage_after_two_turns(cli: DevSessions, claude: FakeAnthropic) -> None:
    sid = cli.ok("create", "-q").strip()
    cli.ok("ask", sid, FIRST, "--timeout", "60")
    cli.ok("ask", sid, SECOND_CLAUDE, "--timeout", "60")
    # Two API messages, the second written as three entries (thinking, two texts) counted once.
    wanted = (
        len(FIRST) + len(SECOND_CLAUDE),
        len(FIRST) + len("first part") + len("second part"),
        2 * anthropic.CACHE_READ,
        2 * anthropic.CACHE_WRITE,
        2,
    )
    assert wanted == (33, 39, 8, 4, 2)
    found = json.loads(cli.ok("usage", "--json"))
    (row,) = found["sessions"]
    assert row["id"] == sid and counts(row) == wanted
    assert counts(found["total"]) == wanted
    assert row["seconds"] > 0 and "cost" not in row
    (listed,) = json.loads(cli.ok("list", "--json"))
    assert counts(listed["usage"]) == wanted
    assert counts(json.loads(cli.ok("inspect", sid))["usage"]) == wanted
    head, line = cli.ok("list").splitlines()
    assert head.split() == ["ID", "CLI", "STATUS", "AGE", "TOKENS", "PATH", "DESCRIPTION"]
    assert line.split()[4] == str(sum(wanted[:4])) == "84"
    table = cli.ok("usage").splitlines()
    assert table[0].split() == ["ID", "CLI", "INPUT", "OUTPUT", "CACHE-READ", "CACHE-WRITE", "TURNS", "TIME"]
    assert table[1].split()[:7] == [sid, "claude", "33", "39", "8", "4", "2"]
    priced(1_000_000.0)  # a unit a token
    assert json.loads(cli.ok("usage", "--json"))["total"]["cost"] == sum(wanted[:4])


def test_codex_usage_after_two_turns(cli: DevSessions, codex: FakeResponses) -> None:
    sid = cli.ok("create", "--cli", "codex", "-q").strip()
    cli.ok("ask", sid, FIRST, "--timeout", "60")
    cli.ok("ask", sid, SECOND_CODEX, "--timeout", "60")
    # Codex reports input with the cached part inside; usage takes it out, as Anthropic counts.
    cached = openai_responses.CACHED
    wanted = (len(FIRST) + len(SECOND_CODEX), len(FIRST) + len(SECOND_CODEX), 2 * cached, 0, 2)
    assert wanted == (27, 27, 8, 0, 2)
    found = json.loads(cli.ok("usage", "--json"))
    (row,) = found["sessions"]
    assert row["id"] == sid and counts(row) == wanted
    assert counts(found["total"]) == wanted
    assert row["seconds"] > 0
    (listed,) = json.loads(cli.ok("list", "--json"))
    assert counts(listed["usage"]) == wanted
    assert counts(json.loads(cli.ok("inspect", sid))["usage"]) == wanted
    assert cli.ok("list").splitlines()[1].split()[4] == str(sum(wanted[:4])) == "62"
    priced(2_000_000.0)
    assert json.loads(cli.ok("usage", "--json"))["total"]["cost"] == 2 * sum(wanted[:4])
