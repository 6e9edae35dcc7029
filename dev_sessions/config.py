"""Settings read from the environment: where state lives and which binaries to run.

The knobs (all optional):

``DEV_SESSIONS_HOME``          state directory (default ``~/.dev-sessions``)
``DEV_SESSIONS_TMUX_SOCKET``   tmux ``-L`` socket name (unset: the user's default tmux server)
``DEV_SESSIONS_CLAUDE_BIN``    the Claude Code binary (default ``claude``)
``DEV_SESSIONS_DOCKER_CLAUDE`` the command that runs Claude Code in a container (``--mode docker``;
                              default ``clauded``)
``DEV_SESSIONS_READY_TIMEOUT`` seconds to wait for an agent's input box (default 30)
``DEV_SESSIONS_DEBUG``         ``1`` shows tracebacks
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


@dataclass(frozen=True)
class Settings:
    home: Path
    tmux_socket: str | None
    claude_bin: str
    docker_claude: str
    ready_timeout: float
    debug: bool

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = env.get("DEV_SESSIONS_HOME") or str(Path(env.get("HOME") or Path.home()) / ".dev-sessions")
        return cls(
            home=Path(home).expanduser(),
            tmux_socket=env.get("DEV_SESSIONS_TMUX_SOCKET") or None,
            claude_bin=env.get("DEV_SESSIONS_CLAUDE_BIN") or "claude",
            docker_claude=env.get("DEV_SESSIONS_DOCKER_CLAUDE") or "clauded",
            ready_timeout=_float(env, "DEV_SESSIONS_READY_TIMEOUT", 30.0),
            debug=env.get("DEV_SESSIONS_DEBUG", "") not in ("", "0", "false"),
        )

    @property
    def store_path(self) -> Path:
        return self.home / "sessions.json"


def claude_config_dir(environ: Mapping[str, str]) -> Path:
    """Where a Claude Code started with this environment keeps ``projects/`` and ``sessions/``."""
    explicit = environ.get("CLAUDE_CONFIG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return Path(environ.get("HOME") or Path.home()) / ".claude"
