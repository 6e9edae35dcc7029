"""Which agent CLIs the end-to-end tests run (the isolated homes that let them run offline are
``dev_sessions.selftest.offline``, shared with ``dev-sessions selftest``).

Two pinned sets, each a ``tests/agents/<set>/package.json``: ``baseline`` (the oldest versions
dev-sessions supports) and ``current`` (the newest it is tested with). ``scripts/test`` installs each
into ``.cache/agents/<set>``; every end-to-end test runs once per set (its test id names the set and
both versions). ``DEV_SESSIONS_TEST_AGENTS=baseline`` (or ``current``, or a comma list) runs fewer;
``DEV_SESSIONS_TEST_CLAUDE`` / ``DEV_SESSIONS_TEST_CODEX`` put another binary in every set (the
version checks then say so).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PINS = ROOT / "tests" / "agents"
CACHE = ROOT / ".cache" / "agents"
SETS = ("baseline", "current")


@dataclass(frozen=True)
class AgentSet:
    """One pinned pair of agent CLIs."""

    name: str
    claude_version: str
    codex_version: str

    @property
    def modules(self) -> Path:
        return CACHE / self.name / "node_modules"

    @property
    def id(self) -> str:
        return f"{self.name}-claude{self.claude_version}-codex{self.codex_version}"

    def claude(self) -> Path | None:
        explicit = os.environ.get("DEV_SESSIONS_TEST_CLAUDE")
        path = (
            Path(explicit)
            if explicit
            else self.modules / "@anthropic-ai" / "claude-code-linux-x64" / "claude"
        )
        return path if path.is_file() and os.access(path, os.X_OK) else None

    def codex(self) -> Path | None:
        explicit = os.environ.get("DEV_SESSIONS_TEST_CODEX")
        native = self.modules / "@openai" / "codex-linux-x64" / "vendor" / "x86_64-unknown-linux-musl"
        path = Path(explicit) if explicit else native / "bin" / "codex"
        return path if path.is_file() and os.access(path, os.X_OK) else None


def pinned(name: str) -> AgentSet:
    pins = json.loads((PINS / name / "package.json").read_text())["dependencies"]
    return AgentSet(name, pins["@anthropic-ai/claude-code"], pins["@openai/codex"])


def agent_sets() -> list[AgentSet]:
    """The sets this run tests: all, or those named in DEV_SESSIONS_TEST_AGENTS."""
    wanted = [n.strip() for n in os.environ.get("DEV_SESSIONS_TEST_AGENTS", "").split(",") if n.strip()]
    unknown = set(wanted) - set(SETS)
    if unknown:
        raise ValueError(
            f"DEV_SESSIONS_TEST_AGENTS: no set {', '.join(sorted(unknown))} (have {', '.join(SETS)})"
        )
    return [pinned(name) for name in (wanted or SETS)]


BASELINE = pinned("baseline")
CURRENT = pinned("current")


def claude_binary() -> Path | None:
    """The baseline Claude Code (tools outside the parametrised tests, such as the transcript recorder)."""
    return BASELINE.claude()


def codex_binary() -> Path | None:
    return BASELINE.codex()
