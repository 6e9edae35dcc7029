"""Start an agent in a tmux pane with its own environment, without putting that environment in any argv.

``tmux new-session -e NAME=VALUE`` would show every value (API keys among them) in the tmux client's
command line, which any local user can read in ``/proc/*/cmdline``. Instead the pane runs::

    python -I -S .../dev_sessions/launch.py SPEC

where SPEC is a 0600 file in the state directory holding ``{"argv": [...], "env": {...}}``. This script
reads it, deletes it at once, and replaces itself (``execve``, same pid) with ``argv`` and exactly that
environment. It runs without the site packages (``-S``) and imports only the standard library, so it
costs a few milliseconds; it must never import the rest of the package.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the pane's side imports as little as it can
    from collections.abc import Mapping, Sequence
    from pathlib import Path


def prepare(spool: Path, argv: Sequence[str], env: Mapping[str, str]) -> tuple[list[str], Path]:
    """The pane's command that runs ``argv`` with ``env``, and the launch file it will consume.

    The caller removes the file if the pane never starts.
    """
    from pathlib import Path

    from dev_sessions import files  # the caller's side only: the pane's side imports no package code

    path = spool / f"{os.urandom(12).hex()}.launch"
    spec = json.dumps({"argv": list(argv), "env": dict(env)}).encode()
    files.write_atomic(path, spec)
    return [sys.executable, "-I", "-S", str(Path(__file__).resolve()), str(path)], path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: launch.py SPEC", file=sys.stderr)
        return 2
    path = argv[1]
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            spec = json.loads(handle.read())
    except (OSError, ValueError) as err:
        print(f"dev-sessions: cannot read the launch file {path}: {err}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    command, env = spec["argv"], spec["env"]
    try:
        os.execve(command[0], command, env)
    except OSError as err:
        print(f"dev-sessions: cannot run {command[0]}: {err.strerror}", file=sys.stderr)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
