"""Remote hosts: the same commands on a session here and on one behind ssh, side by side.

    python bench/hosts.py [--runs N]

The "remote host" is a real sshd on 127.0.0.1 whose login is a second world on this machine (its own
home, state dir and tmux server; tests/fakes/sshd.py), with the same pinned Claude Code against the
same fake model; what differs is the ssh hop and the host's own dev-sessions. Measured warm, as every
command after the first one to a host is: the shared connection (ControlMaster) is up, and so is the
warm path to the host's call server (its socket forwarded by that connection; remote/warm.py), so
that no command starts a process on the host (the last line says how many did). Target (issue 12):
remote send, wait lag and status within 40 ms of local (median).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import AGENTS, Stats, ms, table, timed, world
from dev_sessions.selftest.offline import claude_env, prepare_claude_home
from tests.fakes.sshd import ALIAS, start_sshd


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    binary = AGENTS.claude()
    with world() as w, tempfile.TemporaryDirectory(prefix="ds-bench-ssh-") as root:

        def claude_there(home: Path) -> dict[str, str]:
            return {**claude_env(home, w.fake.url), "DEV_SESSIONS_CLAUDE_BIN": str(binary)}

        sshd = start_sshd(Path(root) / "sshd", extra=claude_there)
        try:
            prepare_claude_home(sshd.remote.home, trusted=sshd.remote.home)
            w.env["DEV_SESSIONS_SSH_CONFIG"] = str(sshd.client_config)
            here = w.create()
            there = w.run("create", "-q", "--host", ALIAS).stdout.strip()
            results: dict[str, Stats] = {}
            started = len(sshd.remote.started())
            for label, sid in (("local", here), ("remote", there)):

                def settle(sid: str = sid) -> None:
                    w.run("wait", sid, "--timeout", "60")

                def send_and_wait(sid: str = sid) -> None:
                    w.run("send", sid, "a short prompt")
                    w.run("wait", sid, "--timeout", "60")

                results[f"status ({label})"] = timed(lambda sid=sid: w.run("status", sid), runs)
                results[f"send ({label})"] = timed(
                    lambda sid=sid: w.run("send", sid, "a short prompt"), runs, before=settle
                )
                settle()
                results[f"send + wait, instant model ({label})"] = timed(send_and_wait, runs)
                results[f"last-message ({label})"] = timed(lambda sid=sid: w.run("last-message", sid), runs)
            results["list --json (one local, one remote)"] = timed(lambda: w.run("list", "--json"), runs)
            started = len(sshd.remote.started()) - started
            w.run("kill", here, there)
        finally:
            sshd.stop()
    rows = [(name, ms(stats.median), ms(stats.p95)) for name, stats in results.items()]
    print(table(("command", "median", "p95"), rows))
    for what in ("status", "send", "send + wait, instant model", "last-message"):
        local, remote = results[f"{what} (local)"], results[f"{what} (remote)"]
        print(
            f"{what}: remote - local = {(remote.median - local.median) * 1000:+.0f} ms median "
            f"(target: within 40 ms), {(remote.p95 - local.p95) * 1000:+.0f} ms p95"
        )
    print(f"dev-sessions processes started on the host during the timed runs: {started}")


if __name__ == "__main__":
    main()
