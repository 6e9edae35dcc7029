"""Messaging on both engines side by side: SQLite (the local file) and PostgreSQL (a server).

    python bench/messaging_engines.py [--runs N] [--messages 10000]

The PostgreSQL server is a throw-away one on a private Unix socket (the tests' own,
``tests/fakes/postgres.py``: Debian's ``postgresql`` binaries, ``fsync`` off as in the tests, so this
measures our code and the protocol, not a disk). Per engine:

* messages per second sent through the library by one process (one transaction each);
* ``msg send`` and ``msg read --unread`` as whole processes, with ``--messages`` stored;
* how long after ``msg send`` a message is in an idle Claude session's conversation (on PostgreSQL, a
  session of another machine than the sender's);
* how long after a send commits a waiting ``msg wait`` process prints it, and a waiting
  ``Messenger.wait`` in a process of its own (another machine: its own ``DEV_SESSIONS_HOME``) returns
  it: on PostgreSQL the server's NOTIFY wakes it (before: it looked every 0.2 s).

``--only-wait`` measures the wake-ups alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from common import VENV, Stats, World, ms, table, timed, world

from dev_sessions.messaging.store import MessageStore, open_store
from dev_sessions.store import parse_iso
from tests.fakes.postgres import binaries, running_postgres


def _with_driver() -> None:
    """libpq in the benchmark's install too: the extra dev-sessions[postgres] (psycopg's binary wheel
    carries it; dev-sessions loads it without importing psycopg)."""
    python = VENV / "bin" / "python"
    found = "import importlib.util, sys; sys.exit(importlib.util.find_spec('psycopg_binary') is None)"
    if subprocess.run([str(python), "-c", found], capture_output=True, check=False).returncode:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "psycopg[binary]>=3.1"], check=True)


LIBRARY_WAITER = textwrap.dedent(
    """
    import sys, time
    from dev_sessions.messaging.messenger import Messenger
    messenger = Messenger()
    messenger.store  # connected before the rounds start
    for line in sys.stdin:
        messenger.wait("listener", timeout=30)
        print(time.time(), flush=True)
    """
)


def library_wake(w: World, url: str | None, store: MessageStore, runs: int) -> Stats:
    """A Messenger.wait in a process of its own returns this long after the send commits."""
    env = dict(w.env)
    if url is not None:
        # Another machine: its own state dir, the same server.
        other = Path(env["DEV_SESSIONS_HOME"]).with_name("other-machine")
        other.mkdir(mode=0o700, exist_ok=True)
        env["DEV_SESSIONS_HOME"] = str(other)
    waiter = subprocess.Popen(
        [str(VENV / "bin" / "python"), "-c", LIBRARY_WAITER], env=env, cwd=w.workdir,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert waiter.stdin is not None and waiter.stdout is not None
    late = []
    for _ in range(runs):
        waiter.stdin.write("go\n")
        waiter.stdin.flush()
        time.sleep(0.3)  # let it block
        store.send("bench", {"listener": "mailbox"}, "wake up")
        committed = time.time()
        late.append(float(waiter.stdout.readline()) - committed)
    waiter.stdin.close()
    waiter.wait()
    return Stats(late)


def measure(
    engine: str, url: str | None, runs: int, messages: int, only_wait: bool = False
) -> list[list[str]]:
    rows = []
    with world() as w:
        if url is not None:
            w.env["DEV_SESSIONS_MESSAGES_URL"] = url
        for name in ("bench", "reader", "listener"):
            w.run("agents", "register", name)
        store = open_store(url or Path(w.env["DEV_SESSIONS_HOME"]) / "messages.db")
        if only_wait:
            messages = 0
        started = time.perf_counter()
        text = "the quick brown fox jumps over the lazy dog"
        for n in range(messages):
            store.send("bench", {"reader" if n % 2000 == 0 else "bench": "mailbox"}, f"message {n}: {text}")
        if not only_wait:
            rate = messages / (time.perf_counter() - started)
            each = "library send (one process, one transaction each)"
            rows.append([engine, each, f"{rate:,.0f} msg/s", ""])
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
        wake = library_wake(w, url, store, runs)
        where = " on another machine" if url else ""
        label = f"Messenger.wait{where}: returns after the commit"
        rows.append([engine, label, ms(wake.median), ms(wake.p95)])
        if not only_wait:
            delivery = delivery_into_claude(w, url, max(3, runs // 3))
            label = f"delivery into an idle Claude session{where} (target < 1 s)"
            rows.append([engine, label, ms(delivery.median), ms(delivery.p95)])
        store.close()
    return rows


def delivery_into_claude(w: World, url: str | None, runs: int) -> Stats:
    """How long after ``msg send`` commits a message is in an idle Claude session's conversation (its
    receipt ``delivered``: typed and taken). On PostgreSQL the session is on this world's machine
    ("beta") and the sender on another ("alpha": its own state dir, the same server), so that beta's
    deliverer is woken by the server's push. The first delivery starts the deliverer."""
    w.env["DEV_SESSIONS_MACHINE"] = "beta"
    sid = w.create()
    sender = dict(w.env)
    if url is not None:
        alpha = Path(w.env["DEV_SESSIONS_HOME"]).with_name("alpha-machine")
        alpha.mkdir(mode=0o700, exist_ok=True)
        sender.update(DEV_SESSIONS_HOME=str(alpha), DEV_SESSIONS_MACHINE="alpha")
    delays = []
    for n in range(runs):
        sent = subprocess.run(
            [str(w.tool), "msg", "send", "--to", sid, f"notice {n}", "--json"],
            env=sender, cwd=w.workdir, capture_output=True, text=True, check=True,
        )  # fmt: skip
        message = json.loads(sent.stdout)
        deadline = time.monotonic() + 30
        while True:
            status = json.loads(w.run("msg", "status", str(message["id"]), "--json").stdout)
            receipt = status["recipients"][0]
            if receipt["state"] == "delivered" or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        created, delivered = parse_iso(message["createdAt"]), parse_iso(receipt["deliveredAt"] or "")
        assert created is not None and delivered is not None, receipt
        delays.append((delivered - created).total_seconds())
        w.run("wait", sid, "--timeout", "30")
    return Stats(delays)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--only-wait", action="store_true", help="measure the wake-ups alone")
    args = parser.parse_args()
    bindir = binaries()
    if bindir is None:
        sys.exit("PostgreSQL is not installed (Debian: apt-get install postgresql; it need not run)")
    rows = measure("sqlite", None, args.runs, args.messages, args.only_wait)
    _with_driver()
    with running_postgres(bindir) as server:
        rows += measure("postgres", server.database(), args.runs, args.messages, args.only_wait)
    print(table(["engine", "measure", "median", "p95"], rows))
    print(f"\nruns per measure: {args.runs}; PostgreSQL from {bindir}, on a Unix socket")


if __name__ == "__main__":
    main()
