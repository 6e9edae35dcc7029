"""install-skill: what is installed where, and that only our own files are ever replaced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dev_sessions.config import Settings
from dev_sessions.install_skills import MANIFEST, bundled, detect, install, skill_root

SKILLS = ["delegate", "dev-sessions", "handoff", "messaging"]


def env(tmp_path: Path, **extra: str) -> Settings:
    return Settings.from_env({"HOME": str(tmp_path / "home"), "PATH": str(tmp_path / "bin"), **extra})


def test_the_four_skills_ship_with_frontmatter() -> None:
    skills = bundled()
    assert sorted(skills) == SKILLS
    for name, directory in skills.items():
        text = (directory / "SKILL.md").read_text()
        head = text.split("---")[1]
        assert f"\nname: {name}\n" in head
        assert "\ndescription: " in head and len(head) > 80


def test_where_each_agent_looks(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert skill_root("claude", "global", env(tmp_path), tmp_path) == home / ".claude" / "skills"
    assert skill_root("claude", "global", env(tmp_path, CLAUDE_CONFIG_DIR="/c"), tmp_path) == Path(
        "/c/skills"
    )
    assert (
        skill_root("claude", "local", env(tmp_path), tmp_path / "p") == tmp_path / "p" / ".claude" / "skills"
    )
    assert skill_root("codex", "global", env(tmp_path), tmp_path) == home / ".codex" / "skills"
    assert skill_root("codex", "global", env(tmp_path, CODEX_HOME="/x"), tmp_path) == Path("/x/skills")
    assert skill_root("codex", "local", env(tmp_path), tmp_path / "p") == tmp_path / "p" / ".codex" / "skills"


def test_install_update_and_leave_foreign_skills_alone(tmp_path: Path) -> None:
    environ = env(tmp_path)
    first = install(["claude"], "global", environ, tmp_path)
    assert [(r.skill, r.action) for r in first] == [(s, "installed") for s in SKILLS]
    root = tmp_path / "home" / ".claude" / "skills"
    assert json.loads((root / "dev-sessions" / MANIFEST).read_text())["files"] == ["SKILL.md"]
    assert {r.action for r in install(["claude"], "global", environ, tmp_path)} == {"unchanged"}

    (root / "handoff" / "SKILL.md").write_text("edited by hand")
    (root / "handoff" / "notes.md").write_text("mine, not dev-sessions'")
    again = {r.skill: r.action for r in install(["claude"], "global", environ, tmp_path)}
    assert again["handoff"] == "updated"
    assert (root / "handoff" / "notes.md").read_text() == "mine, not dev-sessions'"

    foreign = root / "messaging"
    (foreign / MANIFEST).unlink()
    (foreign / "SKILL.md").write_text("someone else's messaging skill")
    result = {r.skill: r for r in install(["claude"], "global", environ, tmp_path)}
    assert result["messaging"].action == "skipped"
    assert (foreign / "SKILL.md").read_text() == "someone else's messaging skill"
    forced = {r.skill: r.action for r in install(["claude"], "global", environ, tmp_path, force=True)}
    assert forced["messaging"] == "updated"


def test_detect_finds_agents_by_binary_or_config(tmp_path: Path) -> None:
    assert detect(env(tmp_path)) == []
    (tmp_path / "home" / ".codex").mkdir(parents=True)
    assert detect(env(tmp_path)) == ["codex"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").write_text("#!/bin/sh\n")
    (bin_dir / "claude").chmod(0o755)
    assert detect(env(tmp_path)) == ["claude", "codex"]


@pytest.mark.parametrize("scope", ["global", "local"])
def test_codex_and_claude_together(tmp_path: Path, scope: str) -> None:
    results = install(["claude", "codex"], scope, env(tmp_path), tmp_path / "proj")  # type: ignore[arg-type]
    assert {r.agent for r in results} == {"claude", "codex"}
    assert all(r.path.joinpath("SKILL.md").is_file() for r in results)
