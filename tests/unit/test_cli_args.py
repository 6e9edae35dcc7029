"""Options whose value may be left out, which typer cannot say by itself."""

from __future__ import annotations

import pytest

from dev_sessions.cli import coordination, lifecycle, messaging, messaging_extras, sessions
from dev_sessions.cli.app import GROUPS, optional_values


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


def test_each_group_is_registered_for_its_own_commands() -> None:
    """A quick command loads only its group's module: the names said in app.py are the module's."""
    for module in (sessions, lifecycle, coordination, messaging, messaging_extras):
        assert GROUPS[module.__name__.rsplit(".", 1)[1]] == module.COMMANDS
    every = [name for names in GROUPS.values() for name in names]
    assert len(every) == len(set(every)), "a command in two groups"
