"""Leases with many stored: ``lease acquire`` and ``lease check`` as whole processes, on both engines.

    python bench/leases.py [--runs 20] [--leases 10000] [--only sqlite|postgres]

The store holds ``--leases`` live leases before the runs: 100 agents' path leases in the measured
repository (files and globs over 100 packages), a tenth of them names, and some in other repositories.
Measured, each a whole ``dev-sessions`` process from the regular install (``.cache/bench-venv``), in a
directory of that repository:

* ``lease acquire FILE`` of a free file (a new one each run), and of a held one (refused, exit 1);
* ``lease check FILE`` of a held file and of a free one; ``lease check`` of 10 files;
* the git guard of a commit of 100 files (the hook's own process: ``python -m
  dev_sessions.messaging.guard``);
* for scale, ``dev-sessions --version`` (the interpreter's start), ``space list`` and ``msg send`` (quick
  commands that open the store);
* the library's own calls in this process (``Messenger.lease_check`` / ``lease_acquire``): what the
  leases stored cost, without the process's start.

The target is 150 ms for ``lease acquire`` / ``lease check`` with 10,000 leases stored. Besides the
wall-clock time, the CPU time each process used (user + system, from ``getrusage``): on a machine
shared with other work it says what the command itself costs, where the wall clock also counts the
waits for a core. Through the warm command server (issue 17: on unless ``DEV_SESSIONS_WARM=0``) that
is the client's alone: the server's child that runs the command is not this process's.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import VENV, Stats, installed_tool, ms, table, warm_up

from dev_sessions.cli.warm_server import stop
from dev_sessions.messaging.leases import Target
from dev_sessions.messaging.store import open_store
from tests.fakes.postgres import binaries, running_postgres

TARGET_S = 0.150


def _with_driver() -> None:
    python = VENV / "bin" / "python"
    if subprocess.run([str(python), "-c", "import psycopg"], capture_output=True, check=False).returncode:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "psycopg[binary]>=3.1"], check=True)


def _fill(where: Path | str, repo: Path, count: int) -> None:
    """``count`` live leases: most in ``repo`` (files and globs), a tenth names, some elsewhere."""
    store = open_store(where)
    key = str(repo.resolve())
    expires = int(time.time() * 1000) + 3600_000
    rows = []
    for n in range(count):
        holder = f"agent{n % 100}"
        if n % 10 == 0:
            target = Target("name", "", f"resource-{n}")
        elif n % 10 == 1:
            target = Target("path", "/elsewhere/repo", f"pkg{n % 100}/f{n}.py")
        elif n % 10 == 2:
            target = Target("path", key, f"pkg{n % 100}/sub{n % 7}/*.py")
        else:
            target = Target("path", key, f"pkg{n % 100}/sub{n % 7}/file{n}.py")
        rows.append(
            (target.repo, target.pattern, holder, target.kind, target.prefix, 1, "bench", 3600.0,
             "2026-01-01T00:00:00Z", expires, None)
        )  # fmt: skip
    with store.write() as db:
        db.executemany(
            """INSERT INTO leases (repo, pattern, holder, kind, prefix, exclusive, reason, ttl_s,
                                   acquired_at, expires_ms, machine) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT DO NOTHING""",
            rows,
        )
    store.close()


def timed(action: Callable[[], object], runs: int) -> tuple[Stats, Stats]:
    """Wall-clock and CPU seconds (the child processes' user + system) of each run."""
    wall, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        action()
        wall.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return Stats(wall), Stats(cpu)


def measure(engine: str, url: str | None, runs: int, count: int) -> list[list[str]]:
    tool = installed_tool()
    base = Path(tempfile.mkdtemp(prefix="ds-bench-leases-"))
    try:
        repo = base / "repo"
        repo.mkdir()
        subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOME": str(base),
            "DEV_SESSIONS_HOME": str(base / "state"),
            "DEV_SESSIONS_AGENT": "bencher",
            **(
                {"DEV_SESSIONS_WARM": os.environ["DEV_SESSIONS_WARM"]}
                if "DEV_SESSIONS_WARM" in os.environ
                else {}
            ),
        }
        if url is not None:
            env["DEV_SESSIONS_MESSAGES_URL"] = url
        _fill(url if url is not None else base / "state" / "messages.db", repo, count)

        def run(*args: str, ok: bool = True, cwd: Path = repo) -> None:
            done = subprocess.run(
                [str(tool), *args], env=env, cwd=cwd, capture_output=True, text=True, check=False
            )
            if (done.returncode == 0) != ok:
                raise RuntimeError(
                    f"dev-sessions {' '.join(args)} -> {done.returncode}: {done.stderr.strip()}"
                )

        held = "pkg5/sub5/file5.py"
        run("lease", "check", held, ok=False)  # warm the file cache and the byte-code
        warm_up(tool, env, repo)  # the warm command server (issue 17), unless DEV_SESSIONS_WARM=0
        counter = iter(range(10**9))
        rows: list[tuple[str, tuple[Stats, Stats]]] = [
            ("--version", timed(lambda: run("--version"), runs)),
            ("space list", timed(lambda: run("space", "list"), runs)),
            (
                "lease acquire (a free file)",
                timed(lambda: run("lease", "acquire", f"./new/f{next(counter)}.py"), runs),
            ),
            (
                "lease acquire (a held file: refused)",
                timed(lambda: run("lease", "acquire", held, ok=False), runs),
            ),
            ("lease check (a held file)", timed(lambda: run("lease", "check", held, ok=False), runs)),
            ("lease check (a free file)", timed(lambda: run("lease", "check", "pkg5/sub5/free.md"), runs)),
            (
                "lease check (10 files)",
                timed(lambda: run("lease", "check", *[f"pkg{n}/free{n}.md" for n in range(10)]), runs),
            ),
        ]
        files = [f"pkg{n}/sub{n % 7}/new{n}.txt" for n in range(100)]
        for name in files:
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_text("x")
        subprocess.run(["git", "add", *files], cwd=repo, check=True)
        python = VENV / "bin" / "python"

        def guard() -> None:
            subprocess.run(
                [str(python), "-m", "dev_sessions.messaging.guard"], env=env, cwd=repo, check=False
            )

        rows.append(("git guard: a commit of 100 files", timed(guard, runs)))
        run("agents", "register", "bench-reader")
        rows.append(("msg send", timed(lambda: run("msg", "send", "--to", "bench-reader", "hello"), runs)))
        rows += _library(env, repo, runs, held)
        return [
            [
                engine,
                what,
                _ms(s.median),
                _ms(s.p95),
                "" if what.startswith("library") else ms(c.median),
                "" if what.startswith("library") else ms(c.p95),
                _verdict(s) if what.startswith("lease") else "",
            ]
            for what, (s, c) in rows
        ]
    finally:
        stop(base / "state")  # the warm command server
        shutil.rmtree(base, ignore_errors=True)


def _library(env: dict[str, str], repo: Path, runs: int, held: str) -> list[tuple[str, tuple[Stats, Stats]]]:
    """The calls in this process, the store open: what the lookups cost with the leases stored."""
    from dev_sessions.config import Settings
    from dev_sessions.errors import LeaseConflict
    from dev_sessions.messaging.messenger import Messenger

    messenger = Messenger(Settings.from_env({**os.environ, **env}))
    where = str(repo)
    counter = iter(range(10**9))

    def refused() -> None:
        try:
            messenger.lease_acquire([held], directory=where)
        except LeaseConflict:
            return
        raise RuntimeError("acquired a held file")

    def in_process(action: Callable[[], object]) -> tuple[Stats, Stats]:
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            action()
            samples.append(time.perf_counter() - started)
        return Stats(samples), Stats(samples)

    found = [
        (
            "library: lease_check (a held file)",
            in_process(lambda: messenger.lease_check([held], directory=where)),
        ),
        ("library: lease_acquire (a held file)", in_process(refused)),
        (
            "library: lease_acquire (a free file)",
            in_process(lambda: messenger.lease_acquire([f"./lib/f{next(counter)}.py"], directory=where)),
        ),
    ]
    messenger.close()
    return found


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 0.01 else ms(seconds)


def _verdict(stats: Stats) -> str:
    return "ok" if stats.median <= TARGET_S and stats.p95 <= TARGET_S else "OVER"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--leases", type=int, default=10_000)
    parser.add_argument("--only", choices=("sqlite", "postgres"))
    args = parser.parse_args()
    rows: list[list[str]] = []
    if args.only in (None, "sqlite"):
        rows += measure("sqlite", None, args.runs, args.leases)
    if args.only in (None, "postgres"):
        bindir = binaries()
        if bindir is None:
            sys.exit("PostgreSQL is not installed (Debian: apt-get install postgresql; it need not run)")
        _with_driver()
        with running_postgres(bindir) as server:
            rows += measure("postgres", server.database(), args.runs, args.leases)
    print(table(["engine", "measure", "median", "p95", "cpu median", "cpu p95", "<= 150 ms"], rows))
    print(f"load average when done: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"\n{args.leases:,} leases stored; {args.runs} runs per measure; whole processes")


if __name__ == "__main__":
    main()
