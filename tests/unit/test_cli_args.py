"""Options whose value may be left out, which typer cannot say by itself."""

from __future__ import annotations

import pytest

from dev_sessions.cli.lifecycle import optional_values


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["create", "--worktree"], ["create", "--worktree="]),
        (["create", "-w", "--cli", "codex"], ["create", "--worktree=", "--cli", "codex"]),
        (["create", "--worktree", "topic", "-q"], ["create", "--worktree", "topic", "-q"]),
        (["create", "--worktree=topic"], ["create", "--worktree=topic"]),
        (["-q", "create", "--worktree", "--path", "p"], ["-q", "create", "--worktree=", "--path", "p"]),
        (["send", "x", "--worktree"], ["send", "x", "--worktree"]),  # other commands: as typed
        (["create", "--", "--worktree"], ["create", "--", "--worktree"]),
        ([], []),
    ],
)
def test_a_worktree_without_a_branch(args: list[str], expected: list[str]) -> None:
    assert optional_values(args) == expected
