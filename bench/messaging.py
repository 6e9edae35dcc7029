"""Messaging: the figures issue 4 names.

    python bench/messaging.py [--runs N] [--messages 100000]

* ``msg send`` and ``msg read --unread`` as whole processes, with 100,000 messages stored;
* how long after a send commits a waiting ``msg wait`` process prints it;
* messages per second sent through the library by one process;
* how long after ``msg send`` a message is in an idle Claude session's conversation.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from common import Stats, ms, table, timed, world

from dev_sessions.config import Settings
from dev_sessions.messaging.messenger import Messenger
from dev_sessions.messaging.store import MessageStore
from dev_sessions.store import parse_iso


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    runs = args.runs
    rows = []
    with world() as w:
        home = Path(w.env["DEV_SESSIONS_HOME"])
        settings = Settings.from_env(w.env)
        messenger = Messenger(settings)
        for name in ("bench", "reader", "listener"):
            messenger.register(name)
        store = MessageStore(home / "messages.db")

        started = time.perf_counter()
        for n in range(args.messages):
            recipient = "reader" if n % 2000 == 0 else "bench"
            store.send(
                "bench", {recipient: "mailbox"}, f"message {n}: the quick brown fox jumps over the lazy dog"
            )
        rate = args.messages / (time.perf_counter() - started)
        rows.append(
            ["library send (one process, one transaction each)", f"{rate:,.0f} msg/s", "", "> 2,000 msg/s"]
        )

        send = timed(lambda: w.run("msg", "send", "--to", "bench", "--from", "reader", "hello"), runs)
        rows.append([f"msg send ({args.messages:,} stored)", ms(send.median), ms(send.p95), "< 150 ms"])
        read = timed(lambda: w.run("msg", "read", "--as", "reader", "--unread"), runs)
        rows.append(
            [f"msg read --unread ({args.messages:,} stored)", ms(read.median), ms(read.p95), "< 150 ms"]
        )

        late = []
        for _ in range(runs):
            waiter = subprocess.Popen(
                [str(w.tool), "msg", "wait", "--as", "listener", "--timeout", "30"],
                env=w.env, cwd=w.workdir, stdout=subprocess.PIPE,
            )  # fmt: skip
            time.sleep(0.4)  # let it block
            store.send("bench", {"listener": "mailbox"}, "wake up")
            committed = time.perf_counter()
            assert waiter.stdout is not None
            waiter.stdout.readline()
            late.append(time.perf_counter() - committed)
            waiter.wait()
        wake = Stats(late)
        rows.append(["msg wait: prints after the send commits", ms(wake.median), ms(wake.p95), "< 50 ms"])

        sid = w.create()
        delays = []
        for n in range(max(3, runs // 3)):
            sent = w.run("msg", "send", "--to", sid, f"notice {n}", "--json")
            message = json.loads(sent.stdout)
            deadline = time.monotonic() + 20
            while True:
                receipt = json.loads(w.run("msg", "status", str(message["id"]), "--json").stdout)[
                    "recipients"
                ][0]
                if receipt["state"] == "delivered" or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            created, delivered = parse_iso(message["createdAt"]), parse_iso(receipt["deliveredAt"] or "")
            assert created is not None and delivered is not None, receipt
            delays.append((delivered - created).total_seconds())
            w.run("wait", sid, "--timeout", "30")
        delivery = Stats(delays)
        rows.append(["delivery into an idle Claude session", ms(delivery.median), ms(delivery.p95), "< 1 s"])
        store.close()
        messenger.close()

    print(table(["measure", "median", "p95", "target"], rows))
    print(f"\nruns per measure: {runs} (deliveries: {max(3, runs // 3)}; the first one starts the deliverer)")


if __name__ == "__main__":
    main()
