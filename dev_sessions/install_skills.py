"""``install-skill``: put the bundled skills where Claude Code and Codex look for them.

Where they look (checked with the pinned versions): Claude Code, ``$CLAUDE_CONFIG_DIR/skills`` or
``~/.claude/skills`` (``./.claude/skills`` for one project); Codex, ``$CODEX_HOME/skills`` or
``~/.codex/skills`` (``./.codex/skills`` for one project), which is what the app-server's
``skills/list`` reports. Each skill is a directory with a ``SKILL.md``.

Only our own files are ever overwritten: every installed skill directory carries a manifest
(``.dev-sessions.json``) naming the files we wrote; a directory of the same name without it belongs to
someone else and is left alone (unless ``force``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Literal

from dev_sessions import __version__
from dev_sessions.config import Settings
from dev_sessions.errors import UsageError

MANIFEST = ".dev-sessions.json"
AGENTS = ("claude", "codex")
Scope = Literal["global", "local"]
Action = Literal["installed", "updated", "unchanged", "skipped"]


@dataclass(frozen=True)
class Installed:
    agent: str
    skill: str
    path: Path
    action: Action
    reason: str = ""


def bundled() -> dict[str, Traversable]:
    """The skills shipped with this package: name -> its directory."""
    root = resources.files("dev_sessions.skills")
    return {
        entry.name: entry for entry in root.iterdir() if entry.is_dir() and (entry / "SKILL.md").is_file()
    }


def skill_root(agent: str, scope: Scope, settings: Settings, cwd: Path) -> Path:
    if agent == "claude":
        return (cwd / ".claude" if scope == "local" else settings.claude_config_dir) / "skills"
    if agent == "codex":
        if scope == "local":
            return cwd / ".codex" / "skills"
        return settings.codex_home / "skills"
    raise UsageError(f"install-skill: unknown agent {agent!r}")


def detect(settings: Settings) -> list[str]:
    """The agents that look installed: their binary is on PATH, or their config directory exists."""
    found = []
    path = settings.environ.get("PATH")
    if shutil.which(settings.claude_bin, path=path) or settings.claude_config_dir.is_dir():
        found.append("claude")
    if shutil.which(settings.codex_bin, path=path) or settings.codex_home.is_dir():
        found.append("codex")
    return found


def _files(directory: Traversable, prefix: str = "") -> Iterable[tuple[str, bytes]]:
    for entry in directory.iterdir():
        if entry.name.startswith((".", "__")):
            continue
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            yield from _files(entry, name + "/")
        else:
            yield name, entry.read_bytes()


def install(
    agents: Iterable[str], scope: Scope, settings: Settings, cwd: Path, *, force: bool = False
) -> list[Installed]:
    results = []
    skills = bundled()
    for agent in agents:
        root = skill_root(agent, scope, settings, cwd)
        for name, source in sorted(skills.items()):
            results.append(_install_one(agent, name, source, root / name, force))
    return results


def _install_one(agent: str, name: str, source: Traversable, target: Path, force: bool) -> Installed:
    manifest = target / MANIFEST
    if target.exists() and not manifest.exists() and not force:
        return Installed(
            agent, name, target, "skipped", "not installed by dev-sessions (use --force to replace)"
        )
    previous = json.loads(manifest.read_text()).get("files", []) if manifest.exists() else []
    existed = target.exists()
    changed = False
    files = dict(_files(source))
    target.mkdir(parents=True, exist_ok=True)
    for relative, data in files.items():
        path = target / relative
        if path.exists() and path.read_bytes() == data:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        changed = True
    for stale in set(previous) - set(files):
        # Ours from an older version and gone from this one; other files are not touched.
        (target / stale).unlink(missing_ok=True)
        changed = True
    manifest.write_text(
        json.dumps({"installedBy": "dev-sessions", "version": __version__, "files": sorted(files)})
    )
    action: Action = "unchanged" if existed and not changed else ("updated" if existed else "installed")
    return Installed(agent, name, target, action)
