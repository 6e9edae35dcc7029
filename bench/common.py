"""Shared pieces of the benchmarks: an installed dev-sessions, an isolated world, timing, tables.

The benchmarks time whole processes, as a user or an agent calling from Bash sees them. They run the
tool from a regular (non-editable) install in ``.cache/bench-venv``, rebuilt when the sources change,
so byte-code is compiled as for any user, and the real pinned Claude Code against the fake model
server, on a private tmux socket and a throw-away home.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dev_sessions.cli.warm_server import stop  # noqa: E402
from dev_sessions.selftest.fakes.anthropic import FakeAnthropic  # noqa: E402
from dev_sessions.selftest.offline import claude_env, prepare_claude_home  # noqa: E402
from tests.fakes.agents import pinned  # noqa: E402

VENV = ROOT / ".cache" / "bench-venv"


def _source_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted([*ROOT.glob("dev_sessions/**/*.py"), ROOT / "pyproject.toml"]):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def installed_tool() -> Path:
    """``dev-sessions`` from a regular install of this checkout (built again when sources change)."""
    stamp = VENV / "source.sha256"
    tool = VENV / "bin" / "dev-sessions"
    if not (tool.exists() and stamp.exists() and stamp.read_text() == _source_hash()):
        print("installing dev-sessions into", VENV, file=sys.stderr)
        if not (VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [
                str(VENV / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--force-reinstall",
                "--no-deps",
                str(ROOT),
            ],
            check=True,
        )
        subprocess.run(
            [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", str(ROOT)], check=True
        )
        stamp.write_text(_source_hash())
    return tool


@dataclass
class World:
    """An isolated place to run sessions in: env for the tool, a work dir, the fake model server."""

    env: dict[str, str]
    workdir: Path
    fake: FakeAnthropic
    tool: Path

    def run(
        self, *args: str, stdin: bytes | None = None, check: bool = True, code: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``code``: run another checkout's dev_sessions (through PYTHONPATH) with the same install."""
        proc = subprocess.run(
            [str(self.tool), *args],
            env=self.env if code is None else {**self.env, "PYTHONPATH": str(code)},
            cwd=self.workdir,
            input=stdin.decode() if stdin is not None else None,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"dev-sessions {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def create(self) -> str:
        return self.run("create", "-q").stdout.strip()

    def warm_up(self) -> None:
        warm_up(self.tool, self.env, self.workdir)


def warm_up(tool: Path, env: dict[str, str], cwd: Path) -> None:
    """Start the warm command server (unless ``DEV_SESSIONS_WARM=0``) and wait until it listens, so
    that no measure counts a command that ran without it while it started."""
    from dev_sessions.cli.warm import enabled
    from dev_sessions.cli.warm_server import running

    if not enabled(env):
        return
    subprocess.run([str(tool), "list", "--json"], env=env, cwd=cwd, capture_output=True, check=True)
    home = Path(env["DEV_SESSIONS_HOME"])
    deadline = time.monotonic() + 30
    while not (running(home) and list((home / "serve").glob("cli-*.sock"))):
        if time.monotonic() > deadline:
            raise RuntimeError("the warm command server did not start")
        time.sleep(0.05)


# Which pinned agent set to measure: baseline (default) or current (DEV_SESSIONS_BENCH_AGENTS=current).
AGENTS = pinned(os.environ.get("DEV_SESSIONS_BENCH_AGENTS") or "baseline")


@contextmanager
def world() -> Iterator[World]:
    binary = AGENTS.claude()
    if binary is None:
        sys.exit(f"claude {AGENTS.claude_version} ({AGENTS.name}) is not installed: run scripts/test once")
    print(f"agents: {AGENTS.name} (claude {AGENTS.claude_version}, codex {AGENTS.codex_version})")
    tool = installed_tool()
    base = Path(tempfile.mkdtemp(prefix="ds-bench-"))
    socket = f"ds-bench-{os.getpid()}"
    home = base / "home"
    workdir = base / "work"
    workdir.mkdir(parents=True)
    with FakeAnthropic() as fake:
        prepare_claude_home(home, trusted=base)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "TERM": "xterm-256color",
            **claude_env(home, fake.url),
            "DEV_SESSIONS_HOME": str(base / "state"),
            "DEV_SESSIONS_TMUX_SOCKET": socket,
            "DEV_SESSIONS_CLAUDE_BIN": str(binary),
            # DEV_SESSIONS_WARM=0 python bench/...: the same measures without the warm command server.
            **(
                {"DEV_SESSIONS_WARM": os.environ["DEV_SESSIONS_WARM"]}
                if os.environ.get("DEV_SESSIONS_WARM")
                else {}
            ),
        }
        try:
            yield World(env, workdir, fake, tool)
        finally:
            subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, check=False)
            stop(base / "state")
            shutil.rmtree(base, ignore_errors=True)


@dataclass
class Stats:
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def timed(action: Callable[[], object], runs: int, before: Callable[[], object] | None = None) -> Stats:
    samples = []
    for _ in range(runs):
        if before is not None:
            before()
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return Stats(samples)


def timed_pair(a: Callable[[], object], b: Callable[[], object], runs: int) -> tuple[Stats, Stats]:
    """Two actions timed in turn, run after run, so that both see the same load."""
    first, second = [], []
    for _ in range(runs):
        for action, samples in ((a, first), (b, second)):
            started = time.perf_counter()
            action()
            samples.append(time.perf_counter() - started)
    return Stats(first), Stats(second)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"
