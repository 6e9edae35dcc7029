"""A git worktree per session: its own checkout of the repository, so that agents fanned out on one
repository do not overwrite each other's files.

``plan`` decides where a session's worktree goes and on which branch, and checks what would make it
fail, before anything is made; ``make`` runs ``git worktree add``; ``remove`` takes a worktree away
when it holds no uncommitted change (the branch stays: it may hold the agent's commits). Every git
command gets its arguments as a list, after ``--`` where git allows, so that no path or branch name is
ever read as an option or by a shell.

Where: ``<dir>/<id>``, where ``<dir>`` is ``DEV_SESSIONS_WORKTREES`` if set, else ``.worktrees`` beside
the repository's root (``~/src/app`` → ``~/src/.worktrees/fizz-top``): never inside the repository's
tracked tree. The branch: the one asked for (checked out if it exists, made from HEAD if not), else
``dev-sessions/<id>`` made from HEAD.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from dev_sessions.errors import DevSessionsError, ToolMissing, UsageError

DEFAULT_PREFIX = "dev-sessions/"
_TIMEOUT = 60.0


@dataclass(frozen=True)
class Plan:
    """What ``make`` will do: the repository, the worktree's directory, the branch (and whether it is
    made), the directory the agent starts in, and notes for the user."""

    repo: Path
    directory: Path
    branch: str
    new_branch: bool
    workdir: Path
    notes: tuple[str, ...] = ()


def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise ToolMissing(tool="git", hint="install git to use --worktree") from None
    if check and done.returncode != 0:
        raise DevSessionsError(f"git {args[0]}: {_last_line(done)}")
    return done


def plan(path: Path, session_id: str, branch: str | None, root: Path | None) -> Plan:
    """Where and how the session's worktree would be made; a one-line ``UsageError`` for what would fail."""
    top = git("rev-parse", "--show-toplevel", cwd=path, check=False)
    if top.returncode != 0:
        raise UsageError(f"--worktree: {path} is not in a git repository")
    repo = Path(top.stdout.strip()).resolve()
    if git("rev-parse", "--verify", "--quiet", "HEAD^{commit}", cwd=repo, check=False).returncode != 0:
        raise UsageError(f"--worktree: {repo} has no commit yet to start a worktree from")
    wanted = branch or f"{DEFAULT_PREFIX}{session_id}"
    valid = git("check-ref-format", "--branch", wanted, cwd=repo, check=False).returncode == 0
    if not valid or wanted.startswith("-"):
        raise UsageError(f"--worktree {wanted!r}: not a valid branch name")
    ref = git("show-ref", "--verify", "--quiet", f"refs/heads/{wanted}", cwd=repo, check=False)
    exists = ref.returncode == 0
    if exists:
        holder = _checked_out_at(repo, wanted)
        if holder is not None:
            raise UsageError(f"--worktree {wanted}: already checked out at {holder}; choose another branch")
    directory = ((root or repo.parent / ".worktrees") / session_id).resolve()
    if directory == repo or repo in directory.parents:
        raise UsageError(f"DEV_SESSIONS_WORKTREES: {directory} is inside the repository {repo}")
    if directory.exists():
        raise UsageError(f"--worktree: {directory} exists already")
    notes = []
    if git("status", "--porcelain", "--untracked-files=no", cwd=repo).stdout.strip():
        notes.append(f"{repo} has uncommitted changes; the worktree starts from HEAD without them")
    relative = path.resolve().relative_to(repo)
    return Plan(repo, directory, wanted, not exists, directory / relative, tuple(notes))


def _checked_out_at(repo: Path, branch: str) -> str | None:
    listing = git("worktree", "list", "--porcelain", cwd=repo).stdout
    current: str | None = None
    for line in listing.splitlines():
        if line.startswith("worktree "):
            current = line.removeprefix("worktree ")
        elif line == f"branch refs/heads/{branch}":
            return current
    return None


def make(planned: Plan) -> None:
    """``git worktree add`` as planned; nothing is left behind when it fails."""
    planned.directory.parent.mkdir(parents=True, exist_ok=True)
    if planned.new_branch:
        args = ["worktree", "add", "-b", planned.branch, "--", str(planned.directory), "HEAD"]
    else:
        args = ["worktree", "add", "--", str(planned.directory), planned.branch]
    git(*args, cwd=planned.repo)


def undo(planned: Plan) -> None:
    """Take away a worktree ``make`` made (and the branch, if it made that too): a create that failed."""
    git("worktree", "remove", "--force", "--", str(planned.directory), cwd=planned.repo, check=False)
    if planned.new_branch:
        git("branch", "-D", "--", planned.branch, cwd=planned.repo, check=False)


def release(directory: Path, branch: str | None, *, keep: bool) -> str | None:
    """After a kill: take the worktree away unless ``keep`` or it holds uncommitted changes (its branch
    stays: it may hold the agent's commits). What was kept and why, or None when it was removed."""
    if not directory.is_dir():
        return None
    on = f" (branch {branch})" if branch else ""
    if keep:
        return f"worktree kept at {directory}{on}"
    status = git("status", "--porcelain", cwd=directory, check=False)
    if status.returncode != 0:
        return f"worktree kept at {directory}{on}: git cannot read it ({_last_line(status)})"
    if status.stdout.strip():
        count = len(status.stdout.splitlines())
        return f"worktree kept at {directory}{on}: {count} uncommitted change(s)"
    common = git("rev-parse", "--path-format=absolute", "--git-common-dir", cwd=directory, check=False)
    repo = Path(common.stdout.strip()).parent if common.returncode == 0 else directory
    removed = git("worktree", "remove", "--", str(directory), cwd=repo, check=False)
    if removed.returncode != 0:
        return f"worktree kept at {directory}{on}: {_last_line(removed)}"
    return None


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    return (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1].removeprefix("fatal: ")
