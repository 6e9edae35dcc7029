"""End to end: two machines sharing one PostgreSQL message store, each with a live Claude session
(the real pinned ``claude`` against the fake model): a DM from machine alpha's session is pasted into
machine beta's session by beta's deliverer, and beta's reply into alpha's by alpha's; a space message
from alpha into a Claude and a Codex session on beta."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dev_sessions.selftest.fakes.anthropic import FakeAnthropic
from dev_sessions.selftest.fakes.openai_responses import FakeResponses
from tests.conftest import eventually
from tests.fakes.machines import Machine, machines
from tests.fakes.postgres import Postgres

pytestmark = pytest.mark.e2e

NOTICE = "[dev-sessions] Message {id} from {sender}"


def state_of(machine: Machine, message_id: str, recipient: str) -> str:
    receipts = json.loads(machine.ok("msg", "status", message_id, "--json"))["recipients"]
    return str(next(r["state"] for r in receipts if r["recipient"] == recipient))


def prompt_seen(machine: Machine, sid: str, starts: str) -> str:
    def found() -> str | None:
        items = json.loads(machine.ok("logs", sid, "--json"))
        return next((i["text"] for i in items if i["role"] == "user" and i["text"].startswith(starts)), None)

    return str(eventually(found, timeout=30))


def test_a_dm_and_its_reply_reach_live_sessions_on_two_machines(
    claude: FakeAnthropic, postgres_server: Postgres, tmp_path: Path, workdir: Path
) -> None:
    url = postgres_server.database()
    with machines(["alpha", "beta"], tmp_path / "machines", url, workdir) as (alpha, beta):
        sa = alpha.ok("create", "-q", "-p", str(workdir)).strip()
        sb = beta.ok("create", "-q", "-p", str(workdir)).strip()
        mid = alpha.ok("msg", "send", "--from", sa, "--to", sb, "ping from alpha").strip()
        eventually(lambda: state_of(alpha, mid, sb) == "delivered", timeout=60)
        assert "ping from alpha" in prompt_seen(beta, sb, NOTICE.format(id=mid, sender=sa))
        beta.ok("wait", sb, "--timeout", "60")
        answer = beta.ok("msg", "reply", mid, "--from", sb, "pong from beta").strip()
        eventually(lambda: state_of(beta, answer, sa) == "delivered", timeout=60)
        assert "pong from beta" in prompt_seen(alpha, sa, NOTICE.format(id=answer, sender=sb))
        alpha.ok("wait", sa, "--timeout", "60")
    postgres_server.drop(url)


def test_a_space_message_reaches_a_claude_and_a_codex_session_on_another_machine(
    claude: FakeAnthropic, codex: FakeResponses, postgres_server: Postgres, tmp_path: Path, workdir: Path
) -> None:
    url = postgres_server.database()
    with machines(["alpha", "beta"], tmp_path / "machines", url, workdir) as (alpha, beta):
        sa = alpha.ok("create", "-q", "-p", str(workdir)).strip()
        sb = beta.ok("create", "-q", "-p", str(workdir)).strip()
        sc = beta.ok("create", "--cli", "codex", "-q", "-p", str(workdir)).strip()
        alpha.ok("space", "create", "team")
        alpha.ok("space", "join", "team", "--as", sa)
        for sid in (sb, sc):
            beta.ok("space", "join", "team", "--as", sid)
        mid = alpha.ok("space", "send", "team", "--from", sa, "standup in 5").strip()
        head = f"[dev-sessions] Message {mid} from {sa} to space team"
        for sid in (sb, sc):
            eventually(lambda sid=sid: state_of(alpha, mid, sid) == "delivered", timeout=60)
            assert "standup in 5" in prompt_seen(beta, sid, head)
        assert [p for p in codex.prompts() if head in p] != []
        receipts = json.loads(alpha.ok("msg", "status", mid, "--json"))["recipients"]
        assert {r["recipient"] for r in receipts} == {sb, sc}  # the sender is not sent its own
        assert {r["machine"] for r in receipts} == {"beta"}
        for sid in (sb, sc):
            beta.ok("wait", sid, "--timeout", "60")
    postgres_server.drop(url)
