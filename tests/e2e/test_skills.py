"""The installed skills are seen by the real agents."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from dev_sessions.codex.client import AppServerClient
from dev_sessions.codex.daemon import AppServer
from dev_sessions.selftest.fakes.anthropic import FakeAnthropic
from dev_sessions.selftest.fakes.openai_responses import FakeResponses
from tests.conftest import DevSessions, eventually

pytestmark = pytest.mark.e2e


def test_codex_app_server_lists_the_installed_skills(
    cli: DevSessions, codex: FakeResponses, workdir: Path
) -> None:
    out = cli.ok("install-skill", "--codex", "--json")
    assert {r["skill"] for r in json.loads(out)} == {"dev-sessions", "delegate", "handoff", "messaging"}
    app = AppServer(Path(os.environ["DEV_SESSIONS_HOME"]), os.environ["DEV_SESSIONS_CODEX_BIN"], os.environ)
    state = app.ensure()

    async def listed() -> dict[str, str]:
        client = AppServerClient(state.url, app.token())
        await client.connect()
        result = await client.call("skills/list", {"cwds": [str(workdir)], "forceReload": True})
        await client.close()
        return {s["name"]: s["scope"] for entry in result["data"] for s in entry["skills"]}

    skills = asyncio.run(listed())
    for name in ("dev-sessions", "delegate", "handoff", "messaging"):
        assert skills.get(name) == "user"


def test_claude_code_offers_the_installed_skills(cli: DevSessions, claude: FakeAnthropic) -> None:
    cli.ok("install-skill", "--claude")
    sid = cli.ok("create", "-q").strip()
    cli.ok("ask", sid, "hello", "--timeout", "60")

    def offered() -> bool:
        sent = json.dumps([r["body"] for r in claude.requests])
        return all(f"- {name}:" in sent for name in ("dev-sessions", "delegate", "handoff", "messaging"))

    eventually(offered)
    sent = json.dumps([r["body"] for r in claude.requests])
    assert "Start other coding-agent sessions (Claude Code or Codex)" in sent
