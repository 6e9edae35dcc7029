"""install-mcp / uninstall-mcp with the real pinned ``claude`` and ``codex``: what each agent's own
``mcp list`` / ``mcp get`` says afterwards, other servers kept, idempotence, and the bad cases.

No model server is needed: only the agents' ``mcp`` commands run, in the test's isolated home.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DevSessions, Result, git_repo, need
from tests.fakes.agents import AgentSet

pytestmark = pytest.mark.e2e

# What install-mcp registers when run as `python -m dev_sessions` (the tests' way of running it).
COMMAND = sys.executable
ARGS = ["-m", "dev_sessions", "mcp"]
OTHER_CLAUDE = {"type": "stdio", "command": "/opt/other/server", "args": ["--flag", "a b"], "env": {"K": "v"}}
CODEX_CONFIG = """# my own settings, kept as written
model = "o3"   # a comment after a value

[mcp_servers.other]
command = "/opt/other/server"
args = ["--flag", "a b"]

# the profile below is mine too
[profiles.fast]
model = "o4-mini"
"""


@pytest.fixture
def bins(agents: AgentSet, monkeypatch: pytest.MonkeyPatch) -> AgentSet:
    """The set's claude and codex are the ones dev-sessions finds."""
    claude, codex = agents.claude(), agents.codex()
    if claude is None or codex is None:
        need(f"the pinned agents of {agents.name} are not installed (run scripts/test)")
    monkeypatch.setenv("DEV_SESSIONS_CLAUDE_BIN", str(claude))
    monkeypatch.setenv("DEV_SESSIONS_CODEX_BIN", str(codex))
    return agents


def agent(binary: Path | None, *args: str, cwd: Path) -> Result:
    assert binary is not None
    env = {**os.environ, "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    done = subprocess.run(
        [str(binary), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    return Result(done.returncode, done.stdout, done.stderr)


def claude_config(home: Path, extra: dict[str, object] | None = None) -> Path:
    path = home / ".claude.json"
    data = {"hasCompletedOnboarding": True, "mcpServers": {"other": OTHER_CLAUDE}, "mine": [1, "two"]}
    path.write_text(json.dumps({**data, **(extra or {})}))
    return path


def codex_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str = CODEX_CONFIG) -> Path:
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(text)
    monkeypatch.setenv("CODEX_HOME", str(home))
    return home / "config.toml"


def servers(path: Path, project: Path | None = None) -> dict[str, object]:
    data = json.loads(path.read_text())
    holder = data["projects"][str(project)] if project else data
    found: dict[str, object] = holder.get("mcpServers", {})
    return found


def test_claude_mcp_get_shows_the_server_in_user_scope_and_others_survive(
    bins: AgentSet, cli: DevSessions, workdir: Path
) -> None:
    config = claude_config(Path(os.environ["HOME"]))
    out = cli.ok("install-mcp", "--claude")
    assert out == f"claude: dev-sessions installed in {config} (user scope): {COMMAND} {' '.join(ARGS)}\n"
    got = agent(bins.claude(), "mcp", "get", "dev-sessions", cwd=workdir)
    assert got.returncode == 0, got
    assert "Scope: User config" in got.stdout
    assert f"Command: {COMMAND}\n" in got.stdout
    assert "Args: -m dev_sessions mcp\n" in got.stdout
    listed = agent(bins.claude(), "mcp", "list", cwd=workdir)
    assert "dev-sessions: " in listed.stdout and "other: /opt/other/server" in listed.stdout
    # Claude rewrites its whole file (its own format): the other server keeps its value exactly.
    assert servers(config)["other"] == OTHER_CLAUDE
    assert servers(config)["dev-sessions"] == {"type": "stdio", "command": COMMAND, "args": ARGS}
    assert json.loads(config.read_text())["mine"] == [1, "two"]

    assert cli.ok("uninstall-mcp", "--claude") == f"claude: dev-sessions removed from {config} (user scope)\n"
    assert servers(config) == {"other": OTHER_CLAUDE}
    gone = agent(bins.claude(), "mcp", "get", "dev-sessions", cwd=workdir)
    assert gone.returncode == 1 and "dev-sessions" in gone.stderr + gone.stdout


def test_claude_config_dir_is_respected(
    bins: AgentSet, cli: DevSessions, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "claude-config"
    config_dir.mkdir()
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(config_dir))
    config = claude_config(config_dir)
    cli.ok("install-mcp", "--claude")
    assert "dev-sessions" in servers(config)
    assert not (Path(os.environ["HOME"]) / ".claude.json").exists()
    got = agent(bins.claude(), "mcp", "get", "dev-sessions", cwd=workdir)
    assert got.returncode == 0 and f"Command: {COMMAND}\n" in got.stdout, got


def test_claude_local_scope_is_this_project_only(
    bins: AgentSet, cli: DevSessions, workdir: Path, tmp_path: Path
) -> None:
    config = claude_config(Path(os.environ["HOME"]))
    project = git_repo(workdir / "repo")
    inside = project / "sub"
    inside.mkdir()
    local = DevSessions(inside)
    out = local.ok("install-mcp", "--claude", "--local")
    assert f"(local scope, project {project.resolve()})" in out
    assert servers(config, project.resolve())["dev-sessions"] == {
        "type": "stdio",
        "command": COMMAND,
        "args": ARGS,
    }
    assert "dev-sessions" not in servers(config)  # not in user scope
    got = agent(bins.claude(), "mcp", "get", "dev-sessions", cwd=inside)
    assert got.returncode == 0 and "Scope: Local config" in got.stdout, got
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert agent(bins.claude(), "mcp", "get", "dev-sessions", cwd=elsewhere).returncode == 1
    assert "unchanged" in local.ok("install-mcp", "--claude", "--local")
    assert "removed from" in local.ok("uninstall-mcp", "--claude", "--local")
    assert agent(bins.claude(), "mcp", "get", "dev-sessions", cwd=inside).returncode == 1


def test_codex_mcp_list_shows_the_server_and_the_file_is_kept_byte_for_byte(
    bins: AgentSet, cli: DevSessions, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = codex_home(tmp_path, monkeypatch)
    out = cli.ok("install-mcp", "--codex")
    assert out == f"codex: dev-sessions installed in {config}: {COMMAND} {' '.join(ARGS)}\n"
    listed = agent(bins.codex(), "mcp", "list", "--json", cwd=workdir)
    assert listed.returncode == 0, listed
    entries = {e["name"]: e for e in json.loads(listed.stdout)}
    assert set(entries) == {"dev-sessions", "other"}
    transport = entries["dev-sessions"]["transport"]
    assert (transport["command"], transport["args"]) == (COMMAND, ARGS)
    assert "DEV_SESSIONS_HOME" in transport["env_vars"]
    assert entries["dev-sessions"]["enabled"] is True
    # Everything that was there is still there, byte for byte, before our table.
    assert config.read_text().startswith(CODEX_CONFIG)

    assert cli.ok("uninstall-mcp", "--codex") == f"codex: dev-sessions removed from {config}\n"
    assert config.read_text() == CODEX_CONFIG
    listed = agent(bins.codex(), "mcp", "list", "--json", cwd=workdir)
    assert [e["name"] for e in json.loads(listed.stdout)] == ["other"]


def test_install_twice_is_unchanged_and_updates_a_stale_entry(
    bins: AgentSet, cli: DevSessions, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    claude_json = claude_config(Path(os.environ["HOME"]))
    toml = codex_home(tmp_path, monkeypatch)
    cli.ok("install-mcp")
    first = toml.read_bytes()
    again = cli.ok("install-mcp").splitlines()
    assert [line.split(" ")[:3] for line in again] == [
        ["claude:", "dev-sessions", "unchanged"],
        ["codex:", "dev-sessions", "unchanged"],
    ]
    assert toml.read_bytes() == first
    # An entry left by an older install (another path) is replaced, in place, not added twice.
    stale = agent(bins.codex(), "mcp", "add", "dev-sessions", "--", "/old/dev-sessions", "mcp", cwd=workdir)
    assert stale.returncode == 0, stale
    stale_text = toml.read_text()
    agent(bins.claude(), "mcp", "remove", "-s", "user", "dev-sessions", cwd=workdir)
    agent(bins.claude(), "mcp", "add", "-s", "user", "dev-sessions", "--", "/old/ds", "mcp", cwd=workdir)
    updated = cli.ok("install-mcp").splitlines()
    assert [line.split(" ")[:3] for line in updated] == [
        ["claude:", "dev-sessions", "updated"],
        ["codex:", "dev-sessions", "updated"],
    ]
    # Codex's own `mcp add` moved the table next to the other server; ours is rewritten where it is.
    ours = first.decode()[first.decode().index("[mcp_servers.dev-sessions]") :]
    theirs = '[mcp_servers.dev-sessions]\ncommand = "/old/dev-sessions"\nargs = ["mcp"]\n'
    assert toml.read_text() == stale_text.replace(theirs, ours)
    assert theirs in stale_text
    assert servers(claude_json)["dev-sessions"] == {"type": "stdio", "command": COMMAND, "args": ARGS}
    assert servers(claude_json)["other"] == OTHER_CLAUDE


def test_codex_local_config_is_read_in_a_trusted_project(
    bins: AgentSet, cli: DevSessions, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = codex_home(
        tmp_path, monkeypatch, CODEX_CONFIG + f'\n[projects."{workdir.resolve()}"]\ntrust_level = "trusted"\n'
    )
    before = user.read_bytes()
    out = cli.ok("install-mcp", "--codex", "--local")
    project_file = workdir / ".codex" / "config.toml"
    assert out.startswith(
        f"codex: dev-sessions installed in {project_file} (read by Codex in a trusted project)"
    )
    assert user.read_bytes() == before
    listed = agent(bins.codex(), "mcp", "list", "--json", cwd=workdir)
    assert {e["name"] for e in json.loads(listed.stdout)} == {"dev-sessions", "other"}
    assert sorted(p.name for p in (workdir / ".codex").iterdir()) == ["config.toml"]
    cli.ok("uninstall-mcp", "--codex", "--local")
    assert not project_file.exists()
    listed = agent(bins.codex(), "mcp", "list", "--json", cwd=workdir)
    assert {e["name"] for e in json.loads(listed.stdout)} == {"other"}


def test_no_agent_installed_is_one_line(
    cli: DevSessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = cli("install-mcp")
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "claude and codex: not found" in result.stderr
    asked = cli("install-mcp", "--claude", "--codex")
    assert asked.returncode == 1
    lines = asked.stderr.splitlines()
    assert lines[0] == "claude: `claude` not found on PATH; install Claude Code, or leave out --claude"
    # Codex needs no binary to be registered: its file is ours to edit.
    assert asked.stdout.startswith("codex: dev-sessions installed in ")
    assert len(lines) == 1


def test_a_corrupt_config_is_one_line_and_left_alone(
    bins: AgentSet, cli: DevSessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Path(os.environ["HOME"])
    claude_json = home / ".claude.json"
    claude_json.write_text('{"hasCompletedOnboarding": tru')
    toml = codex_home(tmp_path, monkeypatch, 'model = "o3\n[[[')
    for command in ("install-mcp", "uninstall-mcp"):
        result = cli(command)
        assert result.returncode == 1, result
        lines = result.stderr.splitlines()
        assert len(lines) == 2 and "Traceback" not in result.stderr, result
        assert lines[0].startswith(f"claude: {claude_json}: not valid JSON (")
        assert lines[1].startswith(f"codex: {toml}: not valid TOML (")
        assert result.stdout == ""
    assert claude_json.read_text() == '{"hasCompletedOnboarding": tru'
    assert toml.read_text() == 'model = "o3\n[[['
    # Claude was never run on it (2.1.197 would have replaced the file and kept a backup).
    assert not (home / ".claude" / "backups").exists()


def test_one_agent_failing_does_not_stop_the_other(
    bins: AgentSet, cli: DevSessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (Path(os.environ["HOME"]) / ".claude.json").write_text("[1, 2]")
    toml = codex_home(tmp_path, monkeypatch)
    result = cli("install-mcp")
    assert result.returncode == 1
    assert result.stderr.endswith(": not a JSON object; nothing was changed\n")
    assert result.stderr.count("\n") == 1
    assert result.stdout.startswith("codex: dev-sessions installed in ")
    assert "[mcp_servers.dev-sessions]" in toml.read_text()
