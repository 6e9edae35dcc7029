"""Quick commands with and without the warm command server (issue 17, ``DEV_SESSIONS_WARM=1``).

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
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

from common import ms, table, timed_pair, world


def _server_pid(home: Path) -> int | None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(home / "serve" / "cli.sock"))
        except OSError:
            return None
        raw = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", raw)[0])


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
        cold_env = dict(w.env)
        warm_env = {**w.env, "DEV_SESSIONS_WARM": "1"}

        def run(env: dict[str, str], argv: list[str]) -> None:
            subprocess.run([str(w.tool), *argv], env=env, cwd=w.workdir, capture_output=True, check=True)

        run(warm_env, ["list", "--json"])  # starts the server
        deadline = time.monotonic() + 30
        while _server_pid(home) is None and time.monotonic() < deadline:
            time.sleep(0.05)
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
            pid = _server_pid(home)
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
    print(table(["command", "cold median", "cold p95", "warm median", "warm p95", "ratio"], rows))
    print(f"\nruns per measure: {args.runs}; whole processes of the regular install")


if __name__ == "__main__":
    main()
