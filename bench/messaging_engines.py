"""Messaging on both engines side by side: SQLite (the local file) and PostgreSQL (a server).

    python bench/messaging_engines.py [--runs N] [--messages 10000]

The PostgreSQL server is a throw-away one on a private Unix socket (the tests' own,
``tests/fakes/postgres.py``: Debian's ``postgresql`` binaries, ``fsync`` off as in the tests, so this
measures our code and the protocol, not a disk). Per engine:

* messages per second sent through the library by one process (one transaction each);
* ``msg send`` and ``msg read --unread`` as whole processes, with ``--messages`` stored;
* how long after a send commits a waiting ``msg wait`` process prints it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from common import VENV, Stats, ms, table, timed, world

from dev_sessions.messaging.store import open_store
from tests.fakes.postgres import binaries, running_postgres


def _with_driver() -> None:
    """psycopg in the benchmark's install too (the extra dev-sessions[postgres])."""
    python = VENV / "bin" / "python"
    if subprocess.run([str(python), "-c", "import psycopg"], capture_output=True, check=False).returncode:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "psycopg[binary]>=3.1"], check=True)


def measure(engine: str, url: str | None, runs: int, messages: int) -> list[list[str]]:
    rows = []
    with world() as w:
        if url is not None:
            w.env["DEV_SESSIONS_MESSAGES_URL"] = url
        for name in ("bench", "reader", "listener"):
            w.run("agents", "register", name)
        store = open_store(url or Path(w.env["DEV_SESSIONS_HOME"]) / "messages.db")
        started = time.perf_counter()
        text = "the quick brown fox jumps over the lazy dog"
        for n in range(messages):
            store.send("bench", {"reader" if n % 2000 == 0 else "bench": "mailbox"}, f"message {n}: {text}")
        rate = messages / (time.perf_counter() - started)
        rows.append([engine, "library send (one process, one transaction each)", f"{rate:,.0f} msg/s", ""])
        send = timed(lambda: w.run("msg", "send", "--to", "bench", "--from", "reader", "hello"), runs)
        rows.append([engine, f"msg send ({messages:,} stored)", ms(send.median), ms(send.p95)])
        read = timed(lambda: w.run("msg", "read", "--as", "reader", "--unread"), runs)
        rows.append([engine, f"msg read --unread ({messages:,} stored)", ms(read.median), ms(read.p95)])
        late = []
        for _ in range(runs):
            waiter = subprocess.Popen(
                [str(w.tool), "msg", "wait", "--as", "listener", "--timeout", "30"],
                env=w.env, cwd=w.workdir, stdout=subprocess.PIPE,
            )  # fmt: skip
            time.sleep(0.5)  # let it block
            store.send("bench", {"listener": "mailbox"}, "wake up")
            committed = time.perf_counter()
            assert waiter.stdout is not None
            waiter.stdout.readline()
            late.append(time.perf_counter() - committed)
            waiter.wait()
        wake = Stats(late)
        rows.append([engine, "msg wait: prints after the send commits", ms(wake.median), ms(wake.p95)])
        store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    bindir = binaries()
    if bindir is None:
        sys.exit("PostgreSQL is not installed (Debian: apt-get install postgresql; it need not run)")
    rows = measure("sqlite", None, args.runs, args.messages)
    _with_driver()
    with running_postgres(bindir) as server:
        rows += measure("postgres", server.database(), args.runs, args.messages)
    print(table(["engine", "measure", "median", "p95"], rows))
    print(f"\nruns per measure: {args.runs}; PostgreSQL from {bindir}, on a Unix socket")


if __name__ == "__main__":
    main()
