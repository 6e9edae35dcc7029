"""dev-sessions' editor for Claude's external-editor key, run as Claude runs it: ``$VISUAL <file>``."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from dev_sessions.claude import wiring


def run_editor(editor: Path, file: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(editor), str(file)], env={"PATH": os.environ["PATH"], **env},
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip


def test_it_hands_over_the_spool_exactly_and_removes_it(tmp_path: Path) -> None:
    editor = wiring.editor(tmp_path / "state")
    assert stat.S_IMODE(editor.stat().st_mode) == 0o700
    spool = tmp_path / "spool"
    text = "line\twith a tab\r\n!bang\n\n'quotes' \"and\" $(no) `expansion` ünï 🚀\n\n"
    spool.write_bytes(text.encode())
    target = tmp_path / "claude-temp.md"
    target.write_text("what Claude had in the box")
    done = run_editor(editor, target, {wiring.SPOOL_VAR: str(spool)})
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == text.encode()
    assert not spool.exists()


def test_without_a_spool_it_runs_the_users_own_editor(tmp_path: Path) -> None:
    editor = wiring.editor(tmp_path / "state")
    mine = tmp_path / "my-editor"
    mine.write_text('#!/bin/sh\nfor f; do :; done\necho "edited by the user" > "$f"\n')
    mine.chmod(0o755)
    target = tmp_path / "claude-temp.md"
    env = {wiring.SPOOL_VAR: str(tmp_path / "no-spool"), wiring.USER_EDITOR_VAR: str(mine)}
    assert run_editor(editor, target, env).returncode == 0
    assert target.read_text() == "edited by the user\n"


def test_a_session_made_from_inside_a_session_keeps_the_users_editor(tmp_path: Path) -> None:
    home = tmp_path / "state"
    outer = wiring.agent_environment(home, "outer-top", {"VISUAL": "emacs -nw"})
    assert outer[wiring.USER_EDITOR_VAR] == "emacs -nw"
    inner = wiring.agent_environment(home, "inner-top", {**outer})
    assert inner["VISUAL"] == outer["VISUAL"]
    assert inner[wiring.USER_EDITOR_VAR] == "emacs -nw"  # not our own editor again (it would loop)


def test_the_editor_lives_where_its_path_has_no_space(tmp_path: Path) -> None:
    spaced = tmp_path / "a state dir"
    editor = wiring.editor(spaced)
    assert " " not in str(editor)
    assert editor.read_text() == wiring.EDITOR_SCRIPT
