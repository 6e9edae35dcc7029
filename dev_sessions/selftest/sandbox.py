"""The selftest's sandbox: one temporary directory that is a whole world for the agent under test.

:class:`Sandbox` makes it (``HOME``, ``CLAUDE_CONFIG_DIR``, ``CODEX_HOME``, ``DEV_SESSIONS_HOME``,
``TMPDIR``, ``XDG_RUNTIME_DIR``, the tmux socket directory and a work directory), serves the fake model
of :mod:`.fakes` from this process, and builds the environment of every subprocess from nothing but
``PATH``, the locale and the sandbox (:func:`sandbox_env`), so that nothing can reach the user's home,
their default tmux server, their agent settings or a network.

It owns the sandbox from start to end: on leaving (success, failure, Ctrl-C or SIGTERM) it kills the
tmux server and the Codex bridge and app-server it started, then any process still carrying the sandbox
in its environment (Linux), and removes the directory; :attr:`Sandbox.cleaned` is the ``cleanup``
check that says whether all of that worked. The capability checks are not its business.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from dev_sessions.errors import DevSessionsError
from dev_sessions.poll import poll_until
from dev_sessions.selftest.fakes._server import FakeServer
from dev_sessions.selftest.offline import claude_env, prepare_claude_home, prepare_codex_home
from dev_sessions.selftest.report import Check
from dev_sessions.tmux import Tmux

# What reaches the agents besides the sandbox: where programs are, and how text is encoded.
KEPT_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TERM", "TZ", "USER", "LOGNAME", "SHELL")

TMUX_SOCKET = "selftest"
# The sandbox holds Unix sockets (tmux's, the Codex bridge's), whose paths may have ~100 bytes: under a
# long TMPDIR (macOS has ~50 bytes) it goes to /tmp.
_LONGEST_BASE = 60

# How long one step in the sandbox may take before it counts as failed (an instant fake model answers
# in well under a second; Claude Code starts in one to three).
TURN_S = 30.0
STEP_S = 20.0


def sandbox_env(root: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of everything the selftest runs: the sandbox, and only ``KEPT_ENV`` of ours."""
    env = {name: environ[name] for name in KEPT_ENV if name in environ}
    package_root = Path(__file__).resolve().parents[2]
    env.update(
        {
            "HOME": str(root / "home"),
            "CLAUDE_CONFIG_DIR": str(root / "home" / ".claude"),
            "CODEX_HOME": str(root / "codex-home"),
            "DEV_SESSIONS_HOME": str(root / "state"),
            "DEV_SESSIONS_TMUX_SOCKET": TMUX_SOCKET,
            "TMUX_TMPDIR": str(root / "tmux"),
            "TMPDIR": str(root / "tmp"),
            "XDG_RUNTIME_DIR": str(root / "run"),
            # If our cleanup is cut short, the Codex bridge still goes by itself soon.
            "DEV_SESSIONS_BRIDGE_LINGER": "60",
            # The subprocesses run this very dev-sessions, wherever it was imported from.
            "PYTHONPATH": str(package_root),
        }
    )
    return env


class Sandbox:
    """One selftest's temporary world and its fake model server; a
    :class:`~dev_sessions.selftest.checks.Checklist` runs the checks in it."""

    def __init__(self, agent: str, binary: str, caller_env: Mapping[str, str]) -> None:
        self.agent = agent
        self.binary = binary
        self.caller_env = dict(caller_env)
        base = tempfile.gettempdir()
        self.root = Path(
            tempfile.mkdtemp(prefix="ds-selftest-", dir=base if len(base) <= _LONGEST_BASE else "/tmp")
        )
        self.work = self.root / "work"
        self.env = sandbox_env(self.root, self.caller_env)
        self.fake: FakeServer | None = None
        self.cleaned = Check("cleanup", "skipped", "not done yet")

    def __enter__(self) -> Sandbox:
        try:
            self._build()
        except BaseException:
            self.cleaned = self._clean()
            raise
        return self

    def _build(self) -> None:
        for name in ("home", "work", "state", "tmp", "tmux", "run"):
            (self.root / name).mkdir(mode=0o700)
        if self.agent == "claude":
            from dev_sessions.selftest.fakes.anthropic import FakeAnthropic

            self.fake = FakeAnthropic().start()
            home = self.root / "home"
            prepare_claude_home(home, trusted=self.root)
            # With CLAUDE_CONFIG_DIR set, Claude Code reads its state file there.
            shutil.copy(home / ".claude.json", home / ".claude" / ".claude.json")
            self.env.update(claude_env(home, self.fake.address))
            self.env["DEV_SESSIONS_CLAUDE_BIN"] = self.binary
        else:
            from dev_sessions.selftest.fakes.openai_responses import FakeResponses

            self.fake = FakeResponses().start()
            self.env.update(prepare_codex_home(self.root / "codex-home", f"{self.fake.address}/v1"))
            self.env["DEV_SESSIONS_CODEX_BIN"] = self.binary

    @property
    def tmux_socket(self) -> str:
        """The path of the sandbox's tmux socket (``-L selftest`` under its ``TMUX_TMPDIR``)."""
        return str(self.root / "tmux" / f"tmux-{os.getuid()}" / TMUX_SOCKET)

    @property
    def model(self) -> FakeServer:
        assert self.fake is not None, "the sandbox is not entered"
        return self.fake

    def __exit__(self, *exc: object) -> None:
        self.cleaned = self._clean()

    def _clean(self) -> Check:
        """Stop everything the sandbox started and remove it; what could not be, as a failed check."""
        left: list[str] = []
        with _uninterrupted():
            env = self.env
            with contextlib.suppress(DevSessionsError):  # no tmux installed: no server to stop
                Tmux(env["DEV_SESSIONS_TMUX_SOCKET"], environ=env).kill_server()
            if self.agent == "codex":
                left += _stop_codex(env)
            from dev_sessions.cli.warm_server import stop

            stop(Path(env["DEV_SESSIONS_HOME"]))  # the warm command server its commands started
            left += [f"pid {pid} ({name})" for pid, name in _reap(env["DEV_SESSIONS_HOME"])]
            if self.fake is not None:
                self.fake.stop()
            try:
                shutil.rmtree(self.root)
            except FileNotFoundError:
                pass
            except OSError as err:
                left.append(f"{self.root} ({err.strerror})")
        if left:
            return Check("cleanup", "failed", "left behind: " + ", ".join(left))
        return Check("cleanup", "ok")

    def version(self) -> str | None:
        try:
            proc = subprocess.run(
                [self.binary, "--version"],
                capture_output=True, text=True, env=self.env, cwd=self.work, timeout=STEP_S, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return None
        lines = (proc.stdout or proc.stderr).strip().splitlines()
        return lines[0].strip() if proc.returncode == 0 and lines else None


# -- helpers ------------------------------------------------------------------------------------------


def _stop_codex(env: dict[str, str]) -> list[str]:
    """Stop the bridge and the app-server the sandbox's Codex sessions used."""
    from dev_sessions.codex.daemon import AppServer
    from dev_sessions.codex.link import BridgeLink
    from dev_sessions.config import Settings

    settings = Settings.from_env(env)
    left = []
    link = BridgeLink(settings, env)
    with contextlib.suppress(DevSessionsError, OSError):
        if link.running():
            link.call("shutdown", start=False, timeout=10)
    try:
        AppServer(settings.home, settings.codex_bin, env).stop()
    except (DevSessionsError, OSError) as err:
        left.append(f"the codex app-server ({err})")
    return left


def _carriers(marker: bytes) -> dict[int, str]:
    """Processes whose environment holds ``marker`` (Linux; elsewhere none are found)."""
    found: dict[int, str] = {}
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found[int(entry.name)] = (entry / "comm").read_text().strip()
            except OSError:
                continue
    return found


def _reap(state_dir: str) -> list[tuple[int, str]]:
    """End what the sandbox started and is still running (a pane's child, a hook, a stuck agent):
    every process whose environment names the sandbox's state dir. Returns the ones that survived."""
    marker = f"DEV_SESSIONS_HOME={state_dir}".encode()
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        found = _carriers(marker)
        if not found:
            return []
        if sig is not None:
            for pid in found:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
        poll_until(lambda: not _carriers(marker), 3.0, 0.1)
    return sorted(_carriers(marker).items())


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Cleanup runs to its end: a second Ctrl-C must not leave a tmux server or an app-server behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
