"""install-mcp's edit of Codex's config.toml: only our table's lines change, and what is written
parses to the old configuration with only our entry changed; and which command is registered."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from dev_sessions.errors import AgentConfigError
from dev_sessions.install_mcp import Server, codex_install, codex_uninstall, server_command

SERVER = Server("/opt/ds/bin/dev-sessions", ("mcp",), ("DEV_SESSIONS_HOME",))
OURS = (
    '[mcp_servers.dev-sessions]\ncommand = "/opt/ds/bin/dev-sessions"\nargs = ["mcp"]\n'
    'env_vars = ["DEV_SESSIONS_HOME"]\n'
)


class Case(NamedTuple):
    test_id: str
    before: str
    after_install: str


CASES = [
    Case("empty file", "", OURS),
    Case("no final newline", 'model = "o3"', 'model = "o3"\n\n' + OURS),
    Case(
        "others kept, ours appended",
        '# c\n[mcp_servers.other]\ncommand = "x"  # note\n',
        '# c\n[mcp_servers.other]\ncommand = "x"  # note\n\n' + OURS,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.test_id)
def test_install_then_uninstall_gives_the_same_bytes_back(case: Case, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(case.before)
    assert codex_install(path, "global", SERVER).action == "installed"
    assert path.read_text() == case.after_install
    assert codex_install(path, "global", SERVER).action == "unchanged"
    assert codex_uninstall(path, "global").action == "removed"
    assert path.read_text() == (
        case.before + "\n" if case.before and not case.before.endswith("\n") else case.before
    )
    assert codex_uninstall(path, "global").action == "absent"


def test_an_old_entry_in_the_middle_is_rewritten_in_place_with_its_sub_tables_gone(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[mcp_servers.dev-sessions]\ncommand = "/old"\n\n[mcp_servers.dev-sessions.env]\nA = "1"\n\n'
        "# about b\n[b]\nx = 1\n"
    )
    assert codex_install(path, "global", SERVER).action == "updated"
    assert path.read_text() == OURS + "\n# about b\n[b]\nx = 1\n"
    codex_uninstall(path, "global")
    assert path.read_text() == "# about b\n[b]\nx = 1\n"


def test_removing_ours_between_two_tables_keeps_one_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[a]\nx = 1\n\n" + OURS + "\n[b]\ny = 2\n")
    codex_uninstall(path, "global")
    assert path.read_text() == "[a]\nx = 1\n\n[b]\ny = 2\n"


@pytest.mark.parametrize(
    "text",
    ['mcp_servers = { dev-sessions = { command = "x" } }\n', 'mcp_servers.dev-sessions.command = "x"\n'],
    ids=["inline table", "dotted keys"],
)
def test_a_form_we_do_not_edit_is_refused_and_left_alone(text: str, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(AgentConfigError, match="a form install-mcp does not edit"):
        codex_install(path, "global", SERVER)
    with pytest.raises(AgentConfigError, match="a form install-mcp does not edit"):
        codex_uninstall(path, "global")
    assert path.read_text() == text


def test_a_linked_config_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "config.toml"
    real.parent.mkdir()
    real.write_text('model = "o3"\n')
    real.chmod(0o640)
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    codex_install(link, "global", SERVER)
    assert link.is_symlink()
    assert real.read_text() == 'model = "o3"\n\n' + OURS
    assert (real.stat().st_mode & 0o777) == 0o640


def test_a_project_file_that_held_only_ours_is_removed(tmp_path: Path) -> None:
    path = tmp_path / ".codex" / "config.toml"
    codex_install(path, "local", SERVER)
    assert path.read_text() == OURS
    assert codex_uninstall(path, "local").action == "removed"
    assert not path.exists()


def test_the_running_executable_is_registered(tmp_path: Path) -> None:
    exe = tmp_path / "bin" / "dev-sessions"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    relative = os.path.relpath(exe)
    server = server_command(relative, "/usr/bin/python3")
    assert (server.command, server.args) == (str(exe), ("mcp",))
    assert "PYTHONPATH" not in server.env_vars


def test_without_an_executable_python_m_is_registered() -> None:
    server = server_command("/src/dev_sessions/__main__.py")
    assert (server.command, server.args) == (sys.executable, ("-m", "dev_sessions", "mcp"))
    assert "PYTHONPATH" in server.env_vars and "DEV_SESSIONS_HOME" in server.env_vars
