"""A git worktree per session, on real git repositories: where it goes, which branch, what is refused
(and that a refusal leaves nothing behind), and what ``kill`` keeps. The agent is the scripted fake
backend: what is tested here is the library and git, not an agent."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dev_sessions.config import Settings
from dev_sessions.errors import TmuxError, UsageError
from dev_sessions.sessions import SessionManager
from tests.fakes.backend import FakeBackend


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "src" / "app"
    (root / "pkg").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "t@example.com")
    git(root, "config", "user.name", "T")
    (root / "pkg" / "a.py").write_text("x = 1\n")
    git(root, "add", ".")
    git(root, "commit", "-qm", "first")
    return root


@pytest.fixture
def claude() -> FakeBackend:
    return FakeBackend("claude")


def manager_for(claude: FakeBackend, **env: str) -> SessionManager:
    return SessionManager(Settings.from_env({**os.environ, **env}), backends={"claude": claude})


@pytest.fixture
def manager(claude: FakeBackend) -> SessionManager:
    return manager_for(claude)


def branches(repo: Path) -> set[str]:
    return set(git(repo, "branch", "--format=%(refname:short)").split())


def worktrees(repo: Path) -> list[str]:
    return [
        line.split()[1]
        for line in git(repo, "worktree", "list", "--porcelain").splitlines()
        if line.startswith("worktree ")
    ]


def nothing_left(manager: SessionManager, repo: Path) -> None:
    assert manager.sessions() == []
    assert branches(repo) == {"main"}
    assert worktrees(repo) == [str(repo)]
    assert not (repo.parent / ".worktrees").exists() or not any((repo.parent / ".worktrees").iterdir())


def test_a_session_gets_its_own_worktree_beside_the_repository(manager: SessionManager, repo: Path) -> None:
    created = manager.create(path=str(repo), worktree="")
    session = created.session
    place = repo.parent / ".worktrees" / session.id
    assert session.worktree == str(place) and session.path == str(place)
    assert session.branch == f"dev-sessions/{session.id}"
    assert git(place, "rev-parse", "--abbrev-ref", "HEAD") == session.branch
    assert git(place, "rev-parse", "HEAD") == git(repo, "rev-parse", "HEAD")
    assert str(place) in worktrees(repo)
    assert created.notes == ()
    assert manager.get(session.id).to_record()["worktree"] == str(place)  # recorded, shown by list/inspect


def test_from_a_subdirectory_the_agent_starts_in_the_same_subdirectory(
    manager: SessionManager, repo: Path
) -> None:
    session = manager.create(path=str(repo / "pkg"), worktree="").session
    assert session.path == str(repo.parent / ".worktrees" / session.id / "pkg")
    assert (Path(session.path) / "a.py").read_text() == "x = 1\n"


def test_a_named_branch_new_or_existing(manager: SessionManager, repo: Path) -> None:
    fresh = manager.create(path=str(repo), worktree="feature/new").session
    assert fresh.branch == "feature/new" and "feature/new" in branches(repo)
    git(repo, "branch", "old-work")
    existing = manager.create(path=str(repo), worktree="old-work").session
    assert git(Path(existing.path), "rev-parse", "--abbrev-ref", "HEAD") == "old-work"


def test_a_dirty_main_tree_is_allowed_and_said(manager: SessionManager, repo: Path) -> None:
    (repo / "pkg" / "a.py").write_text("x = 2\n")
    created = manager.create(path=str(repo), worktree="")
    assert created.notes and "uncommitted changes" in created.notes[0]
    assert (Path(created.session.path) / "pkg" / "a.py").read_text() == "x = 1\n"  # from HEAD


@pytest.mark.parametrize(
    ("setup", "branch", "needle"),
    [
        ("not-a-repo", "", "is not in a git repository"),
        ("no-commit", "", "has no commit yet"),
        ("", "main", "already checked out at"),
        ("", "bad..name", "not a valid branch name"),
        ("", "-x", "not a valid branch name"),
    ],
)
def test_refusals_say_why_in_one_line_and_leave_nothing(
    manager: SessionManager,
    claude: FakeBackend,
    repo: Path,
    tmp_path: Path,
    setup: str,
    branch: str,
    needle: str,
) -> None:
    path = repo
    if setup == "not-a-repo":
        path = tmp_path / "plain"
        path.mkdir()
    elif setup == "no-commit":
        path = tmp_path / "empty-repo"
        path.mkdir()
        git(path, "init", "-q")
    with pytest.raises(UsageError, match=needle) as caught:
        manager.create(path=str(path), worktree=branch)
    assert "\n" not in str(caught.value)
    assert claude.calls == []
    nothing_left(manager, repo)


def test_a_create_that_fails_after_the_worktree_takes_it_away(
    manager: SessionManager, claude: FakeBackend, repo: Path
) -> None:
    claude.fail_create = TmuxError(args=["new-session"], detail="no server")
    with pytest.raises(TmuxError):
        manager.create(path=str(repo), worktree="")
    nothing_left(manager, repo)


def test_the_worktrees_directory_can_be_chosen_but_not_inside_the_repo(
    claude: FakeBackend, repo: Path, tmp_path: Path
) -> None:
    chosen = manager_for(claude, DEV_SESSIONS_WORKTREES=str(tmp_path / "trees"))
    session = chosen.create(path=str(repo), worktree="").session
    assert session.worktree == str(tmp_path / "trees" / session.id)
    inside = manager_for(claude, DEV_SESSIONS_WORKTREES=str(repo / "trees"))
    with pytest.raises(UsageError, match="inside the repository"):
        inside.create(path=str(repo), worktree="")
    assert [s.id for s in inside.sessions()] == [session.id]


def test_kill_removes_a_clean_worktree_and_keeps_the_branch(manager: SessionManager, repo: Path) -> None:
    session = manager.create(path=str(repo), worktree="").session
    place = Path(session.worktree or "")
    (place / "pkg" / "b.py").write_text("y = 1\n")
    git(place, "add", ".")
    git(place, "commit", "-qm", "the agent's work")
    (killed,) = manager.kill([session.id])
    assert (killed.id, killed.note) == (session.id, "")
    assert not place.exists()
    assert worktrees(repo) == [str(repo)]
    assert session.branch in branches(repo)  # its commits are not lost
    assert git(repo, "log", "-1", "--format=%s", session.branch or "") == "the agent's work"


def test_kill_keeps_a_worktree_with_uncommitted_changes_and_says_where(
    manager: SessionManager, repo: Path
) -> None:
    session = manager.create(path=str(repo), worktree="").session
    place = Path(session.worktree or "")
    (place / "notes.txt").write_text("not committed\n")
    (killed,) = manager.kill([session.id])
    assert killed.note.startswith(f"worktree kept at {place}") and "1 uncommitted change" in killed.note
    assert place.exists() and (place / "notes.txt").exists()
    assert manager.sessions() == []


def test_kill_keep_worktree_keeps_even_a_clean_one(manager: SessionManager, repo: Path) -> None:
    first = manager.create(path=str(repo), worktree="").session
    second = manager.create(path=str(repo), worktree="").session
    notes = {k.id: k.note for k in manager.kill_all(keep_worktree=True)}
    assert set(notes) == {first.id, second.id}
    for session in (first, second):
        assert notes[session.id] == f"worktree kept at {session.worktree} (branch {session.branch})"
        assert Path(session.worktree or "").exists()


def test_a_worktree_removed_by_hand_does_not_stop_kill(manager: SessionManager, repo: Path) -> None:
    session = manager.create(path=str(repo), worktree="").session
    git(repo, "worktree", "remove", "--force", session.worktree or "")
    (killed,) = manager.kill([session.id])
    assert killed.note == ""
