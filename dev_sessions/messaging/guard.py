"""The lease guard: a git pre-commit hook that refuses a commit touching files another agent leases.

``lease install-guard`` writes the hook (:func:`install`) where git looks for it (``git rev-parse
--git-path hooks``: ``core.hooksPath`` and linked worktrees are git's business). A hook already there
is not ours to replace: it is kept as ``pre-commit.before-dev-sessions`` and run first, and
``lease uninstall-guard`` (:func:`uninstall`) puts it back. A hook that is neither (both names taken)
is refused in one line, nothing changed.

The hook is a short ``sh`` script with two values in it, each quoted whole (``shlex.quote``): this
Python and the state directory it was installed with. Nothing else is interpolated; the files of the
commit are read by :func:`main` from ``git diff --cached -z`` (NUL-separated, never through a shell),
and compared with the live exclusive leases of others in the repository (one query, then by prefix).
A commit that touches one is refused, naming each file, its holder, until when and why; ``git commit
--no-verify`` goes past it, as for any hook. Leases are advisory: a store that cannot be read, or a
Python that is gone, lets the commit through with one line saying so.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dev_sessions.errors import DevSessionsError, UsageError

if TYPE_CHECKING:
    from dev_sessions.messaging.leases import Lease
    from dev_sessions.messaging.store import MessageStore

MARKER = "# dev-sessions lease guard"
HOOK = "pre-commit"
CHAINED = "pre-commit.before-dev-sessions"


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False, timeout=30
        )
    except FileNotFoundError:
        raise UsageError("git: not found; the lease guard is a git hook") from None
    if done.returncode != 0:
        detail = " ".join(done.stderr.split()) or f"git {args[0]} failed"
        raise UsageError(f"{repo}: not a git repository ({detail})")
    return done.stdout.strip()


def hooks_dir(repo: Path) -> Path:
    """Where git runs this repository's hooks from."""
    if not repo.is_dir():
        raise UsageError(f"{repo}: no such directory")
    found = Path(_git(repo, "rev-parse", "--git-path", "hooks"))
    return found if found.is_absolute() else (repo / found).resolve()


def script(python: str, home: Path) -> str:
    q_python, q_home = shlex.quote(python), shlex.quote(str(home))
    return f"""#!/bin/sh
{MARKER}: refuses a commit that touches files another agent leases exclusively.
# Written by `dev-sessions lease install-guard`; `dev-sessions lease uninstall-guard` removes it and
# puts back the hook that was here before (kept as {CHAINED}, run first).
chained="$(dirname -- "$0")/{CHAINED}"
if [ -x "$chained" ]; then
    "$chained" "$@" || exit $?
fi
if [ ! -x {q_python} ]; then
    printf '%s %s %s\\n' 'dev-sessions lease guard:' {q_python} 'is gone; committing unchecked' >&2
    exit 0
fi
exec {q_python} -m dev_sessions.messaging.guard --home {q_home}
"""


def _ours(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except OSError:
        return False
    return MARKER.encode() in head


def install(repo: Path, home: Path, python: str | None = None) -> str:
    """Put the guard in ``repo``'s hooks; one line saying what was done."""
    from dev_sessions.files import write_atomic

    hooks = hooks_dir(repo)
    hooks.mkdir(parents=True, exist_ok=True)
    hook, chained = hooks / HOOK, hooks / CHAINED
    kept = ""
    if hook.is_symlink() or hook.exists():
        if _ours(hook) and not hook.is_symlink():
            write_atomic(hook, script(python or sys.executable, home).encode(), 0o755)
            return f"{hook}: the lease guard is there (brought up to date)"
        if chained.exists() or chained.is_symlink():
            raise UsageError(
                f"{hook}: another pre-commit hook is there and {chained} is taken too; nothing changed "
                "(move one of them away, then install the guard again)"
            )
        os.rename(hook, chained)
        kept = f"; the hook that was there is kept as {chained.name} and runs first"
    write_atomic(hook, script(python or sys.executable, home).encode(), 0o755)
    return f"{hook}: the lease guard is installed{kept}"


def uninstall(repo: Path) -> str:
    """Take the guard out of ``repo``'s hooks (and put back the hook it kept); one line saying what."""
    hooks = hooks_dir(repo)
    hook, chained = hooks / HOOK, hooks / CHAINED
    if not (hook.exists() or hook.is_symlink()):
        return f"{hook}: no lease guard here; nothing to do"
    if not _ours(hook) or hook.is_symlink():
        raise UsageError(f"{hook}: not the lease guard (another hook); left as it is")
    hook.unlink()
    if chained.exists() or chained.is_symlink():
        os.rename(chained, hook)
        return f"{hook}: the lease guard is removed; the hook it kept is back"
    return f"{hook}: the lease guard is removed"


def staged(top: Path) -> list[str]:
    """The paths a commit being made touches (added, changed, deleted; both sides of a rename)."""
    done = subprocess.run(
        ["git", "diff", "--cached", "--name-only", "--no-renames", "-z"],
        cwd=top,
        capture_output=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        raise UsageError(
            f"git diff --cached failed: {' '.join(done.stderr.decode(errors='replace').split())}"
        )
    return [p for p in done.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


def refusals(store: MessageStore, key: str, paths: list[str], me: str) -> list[tuple[str, Lease]]:
    """(path, lease) for each path another agent leases exclusively: one query for the repository's
    leases, then each path against those of its own directories only."""
    from dev_sessions.messaging.leases import ancestors, matches, prefix_of

    by_prefix: dict[str, list[Lease]] = {}
    for lease in store.exclusive_in(key, me):
        by_prefix.setdefault(prefix_of(lease.pattern), []).append(lease)
    found: list[tuple[str, Lease]] = []
    for path in paths:
        for prefix in ancestors(prefix_of(path, literal=True)):
            for lease in by_prefix.get(prefix, ()):
                if matches(lease.pattern, path):
                    found.append((path, lease))
    return found


def main(argv: list[str] | None = None) -> int:
    """The hook: 0 lets the commit through, 1 refuses it (with a line per file held by another)."""
    from dev_sessions.config import Settings
    from dev_sessions.messaging.leases import find_repo
    from dev_sessions.terminal import cell

    args = sys.argv[1:] if argv is None else argv
    environ = dict(os.environ)
    if len(args) == 2 and args[0] == "--home" and not environ.get("DEV_SESSIONS_HOME"):
        environ["DEV_SESSIONS_HOME"] = args[1]
    try:
        settings = Settings.from_env(environ)
        me = settings.me()
        found = find_repo(os.getcwd())
        if found is None:
            return 0
        top, key = found
        paths = staged(top)
        if not paths:
            return 0
        from dev_sessions.messaging.store import store_for

        store = store_for(settings)
        try:
            refused = refusals(store, str(key), paths, me)
        finally:
            store.close()
    except DevSessionsError as err:
        print(f"dev-sessions lease guard: {err}; committing unchecked", file=sys.stderr)
        return 0
    if not refused:
        return 0
    holders = []
    for path, lease in refused:
        why = f": {cell(lease.reason)}" if lease.reason else ""
        print(
            f"dev-sessions: commit refused: {cell(path)} is leased exclusively by {lease.holder} "
            f"(as {cell(lease.pattern)}) until {lease.expires_at}{why}",
            file=sys.stderr,
        )
        if lease.holder not in holders:
            holders.append(lease.holder)
    print(
        f"dev-sessions: ask {', '.join(holders)} (dev-sessions msg send --to NAME ...), wait for the lease "
        "to end (dev-sessions lease check PATH), or commit with --no-verify",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
