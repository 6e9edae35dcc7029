"""What ``create`` accepts, and which backend serves a session: the choices ``SessionManager`` makes
before any work starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from dev_sessions import ids
from dev_sessions.backend import Backend
from dev_sessions.config import Settings
from dev_sessions.errors import UsageError
from dev_sessions.store import CLIS, Cli, Session

if TYPE_CHECKING:
    from dev_sessions.remote.host import HostBackend

MODES = ("native", "docker")
MODE_ALIASES = {"yolo": "native"}
APPROVALS = ("never", "on-request", "untrusted")


def check_create(cli: str, mode: str, approvals: str, plan: bool, session_id: str | None) -> str:
    """The mode to use (``yolo`` is ``native``), or a one-line ``UsageError`` for a choice that cannot be."""
    if cli not in CLIS:
        raise UsageError(f"--cli {cli!r}: choose one of {', '.join(CLIS)}")
    mode = MODE_ALIASES.get(mode, mode)
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}: choose native or docker")
    if mode == "docker" and cli == "codex":
        raise UsageError(
            "--mode docker: not available for Codex sessions yet (Claude only); use --mode native"
        )
    if approvals not in APPROVALS:
        raise UsageError(f"--approvals {approvals!r}: choose one of {', '.join(APPROVALS)}")
    if plan and cli != "codex":
        raise UsageError("--plan: Plan mode is for Codex sessions (create --cli codex --plan)")
    if session_id is not None and not ids.is_valid(session_id):
        raise UsageError(f"{session_id!r}: not a session id (like fizz-top)")
    return mode


def workdir(path: str | None) -> str:
    raw = path if path is not None else os.getcwd()
    resolved = Path(raw).expanduser().resolve()
    if not resolved.exists():
        raise UsageError(f"--path {raw}: no such directory")
    if not resolved.is_dir():
        raise UsageError(f"--path {raw}: not a directory")
    return str(resolved)


def as_cli(value: str) -> Cli:
    for cli in CLIS:
        if cli == value:
            return cli
    raise UsageError(f"--cli {value!r}: choose one of {', '.join(CLIS)}")


class Backends:
    """The backend of each agent (``claude``, ``codex``) and of each remote host, made on first use."""

    def __init__(self, settings: Settings, given: Mapping[str, Backend]) -> None:
        """``given``: the backend of a cli, when not the real one (tests)."""
        self.settings = settings
        self.clis: dict[str, Backend] = dict(given)
        self.hosts: dict[str, HostBackend] = {}

    def of_cli(self, cli: str) -> Backend:
        if cli not in self.clis:
            if cli == "claude":
                from dev_sessions.claude.backend import ClaudeBackend

                self.clis[cli] = ClaudeBackend(self.settings)
            elif cli == "codex":
                from dev_sessions.codex.backend import CodexBackend

                self.clis[cli] = CodexBackend(self.settings)
            else:
                raise UsageError(f"--cli {cli!r}: choose one of {', '.join(CLIS)}")
        return self.clis[cli]

    def of(self, session: Session) -> Backend:
        return self.host(session.host) if session.host else self.of_cli(session.cli)

    def host(self, target: str) -> HostBackend:
        if target not in self.hosts:
            from dev_sessions.remote.host import HostBackend

            self.hosts[target] = HostBackend(self.settings, target)
        return self.hosts[target]
