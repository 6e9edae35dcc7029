"""Quick commands with and without the warm command server (issue 17; on unless ``DEV_SESSIONS_WARM=0``).

    python bench/warm.py [--runs 20]

Whole processes of the regular install, in turn (cold, then warm, each round: the same load), on a
live Claude session (the real pinned ``claude`` against the fake model): ``--version``, ``status ID``,
``list --json``, ``last-message ID``, ``msg send`` to an agent and ``lease check`` of a file in a git
repository. The
issue's targets: 60 ms for the first four; ``send`` 150 ms. Before the warm rounds one command starts
the server (it is not counted).
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from common import ms, table, timed_pair, world

from dev_sessions.cli.warm_server import stop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with world() as w:
        home = Path(w.env["DEV_SESSIONS_HOME"])
        sid = w.create()
        w.run("send", sid, "hello")
        w.run("wait", sid, "--timeout", "60")
        w.run("agents", "register", "bench")
        subprocess.run(["git", "init", "-q", str(w.workdir)], check=True)
        (w.workdir / "a.py").write_text("")
        commands = {
            "--version": ["--version"],
            "status ID": ["status", sid],
            "list --json (1 session)": ["list", "--json"],
            "last-message ID": ["last-message", sid],
            "msg send (to an agent)": ["msg", "send", "--to", "bench", "hello"],
            "lease check FILE": ["lease", "check", "a.py"],
        }
        cold_env = {**w.env, "DEV_SESSIONS_WARM": "0"}
        warm_env = {**w.env, "DEV_SESSIONS_WARM": "1"}

        def run(env: dict[str, str], argv: list[str]) -> None:
            subprocess.run([str(w.tool), *argv], env=env, cwd=w.workdir, capture_output=True, check=True)

        w.warm_up()
        rows = []
        try:
            for label, argv in commands.items():
                cold, warm = timed_pair(
                    lambda argv=argv: run(cold_env, argv), lambda argv=argv: run(warm_env, argv), args.runs
                )
                rows.append(
                    [label, ms(cold.median), ms(cold.p95), ms(warm.median), ms(warm.p95),
                     f"{warm.median / cold.median:.2f}"]
                )  # fmt: skip
        finally:
            stop(home)
    print(table(["command", "cold median", "cold p95", "warm median", "warm p95", "ratio"], rows))
    print(f"\nruns per measure: {args.runs}; whole processes of the regular install")


if __name__ == "__main__":
    main()
