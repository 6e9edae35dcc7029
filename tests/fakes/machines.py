"""Simulated machines sharing one message store: each its own ``DEV_SESSIONS_HOME``, tmux socket and
``DEV_SESSIONS_MACHINE``, all on the same PostgreSQL database; the command line run as each.

At the end every session of each machine is killed (and its Codex app-server stopped), then its
deliverer (which stays while its machine has sessions on a shared store) is stopped by the pid in its
lock file, and its tmux server too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from dev_sessions.config import Settings
from dev_sessions.messaging.deliver import running
from tests.conftest import SLOW, Result, stop_codex


class Machine:
    """One simulated machine: ``run``/``ok`` are the command line as that machine runs it."""

    def __init__(self, name: str, root: Path, url: str, cwd: Path) -> None:
        self.name = name
        self.home = root / name
        self.cwd = cwd
        self.socket = f"ds-machine-{os.getpid()}-{name}"
        self.env = {
            **os.environ,
            "DEV_SESSIONS_HOME": str(self.home),
            "DEV_SESSIONS_TMUX_SOCKET": self.socket,
            "DEV_SESSIONS_MACHINE": name,
            "DEV_SESSIONS_MESSAGES_URL": url,
        }

    def __call__(self, *args: str, timeout: float = 60.0) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "dev_sessions", *args],
            capture_output=True, cwd=self.cwd, env=self.env, timeout=timeout * SLOW, check=False,
        )  # fmt: skip
        return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    def ok(self, *args: str, timeout: float = 60.0) -> str:
        result = self(*args, timeout=timeout)
        assert result.returncode == 0, f"{self.name}: dev-sessions {' '.join(args)} -> {result}"
        return result.stdout

    def stop(self) -> None:
        self(*("kill", "--all"))
        stop_codex(self.home)  # its Codex bridge and app-server, if a Codex session started them
        lock = self.home / "deliverer.lock"
        if running(Settings.from_env(self.env)):  # its pid is in the lock it holds
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(lock.read_text().strip()), signal.SIGTERM)
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False)


@contextlib.contextmanager
def machines(names: list[str], root: Path, url: str, cwd: Path) -> Iterator[list[Machine]]:
    made = [Machine(name, root, url, cwd) for name in names]
    try:
        yield made
    finally:
        for machine in made:
            machine.stop()
