"""Codex sessions, whole-process: the figures issue 3 names, against the original tool's.

    python bench/codex_sessions.py [--runs N]

The real pinned Codex app-server runs against the fake Responses server (an instant model: a bare
turn takes about 85 ms). "Warm" means the app-server (and our bridge) already run. How late `wait`
returns is measured against a separate client subscribed to the same thread, which notes when
`turn/completed` arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import threading
import time
from pathlib import Path

from common import AGENTS, Stats, World, ms, table, timed, world

from dev_sessions.codex.client import AppServerClient
from dev_sessions.codex.protocol import Notification, ServerRequest
from dev_sessions.selftest.fakes.openai_responses import FakeResponses
from dev_sessions.selftest.offline import prepare_codex_home

ORIGINAL = {"send + wait (instant model)": 0.477}
TARGET = {
    "send (warm)": "< 150 ms",
    "wait: late after turn/completed": "< 20 ms",
    "send + wait (instant model)": "< 250 ms",
    "create (cold: no app-server)": "< 1.5 s",
    "create (warm)": "",
    "status (warm)": "",
    "last-message (warm)": "",
}


class Observer:
    """A second client on the app-server that records when each turn/completed arrives."""

    def __init__(self, url: str, token: str, thread: str) -> None:
        self.url, self.token, self.thread = url, token, thread
        self.completed: list[float] = []
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.thread_ = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread_.start()
        self.ready.wait(10)

    def _on(self, event: Notification | ServerRequest | None) -> None:
        if isinstance(event, Notification) and event.method == "turn/completed":
            self.completed.append(time.perf_counter())

    async def _run(self) -> None:
        client = AppServerClient(self.url, self.token, listeners=[self._on])
        await client.connect()
        await client.call("thread/resume", {"threadId": self.thread, "excludeTurns": True})
        self.ready.set()
        while not self.stop.is_set():
            await asyncio.sleep(0.05)
        await client.close()


def state(w: World) -> dict[str, object]:
    return dict(json.loads((Path(w.env["DEV_SESSIONS_HOME"]) / "codex" / "app-server.json").read_text()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    binary = AGENTS.codex()
    if binary is None:
        raise SystemExit(
            f"codex {AGENTS.codex_version} ({AGENTS.name}) is not installed: run scripts/test once"
        )
    results: dict[str, Stats] = {}
    with world() as w, FakeResponses() as fake:
        base = Path(w.env["DEV_SESSIONS_HOME"]).parent
        w.env.update(prepare_codex_home(base / "codex-home", fake.url))
        w.env["DEV_SESSIONS_CODEX_BIN"] = str(binary)

        cold = []  # each kill below is of the last session: it stops the app-server and the bridge
        for _ in range(max(3, runs // 3)):
            started = time.perf_counter()
            sid = w.run("create", "--cli", "codex", "-q").stdout.strip()
            cold.append(time.perf_counter() - started)
            w.run("kill", sid)
        results["create (cold: no app-server)"] = Stats(cold)

        sid = w.run("create", "--cli", "codex", "-q").stdout.strip()
        warm_ids: list[str] = []
        results["create (warm)"] = timed(
            lambda: warm_ids.append(w.run("create", "--cli", "codex", "-q").stdout.strip()), max(3, runs // 3)
        )
        w.run("kill", *warm_ids)
        w.run("ask", sid, "warm up")

        def settle() -> None:
            w.run("wait", sid)

        results["send (warm)"] = timed(lambda: w.run("send", sid, "a short prompt"), runs, before=settle)
        settle()
        results["send + wait (instant model)"] = timed(
            lambda: (w.run("send", sid, "ping"), w.run("wait", sid)), runs
        )
        results["status (warm)"] = timed(lambda: w.run("status", sid), runs)
        results["last-message (warm)"] = timed(lambda: w.run("last-message", sid), runs)

        daemon = state(w)
        token = (Path(w.env["DEV_SESSIONS_HOME"]) / "codex" / "ws-token").read_text().strip()
        thread = json.loads(w.run("inspect", sid).stdout)["session"]["internalId"]
        observer = Observer(str(daemon["url"]), token, thread)
        late = []
        for _ in range(runs):
            before = len(observer.completed)
            w.run("send", sid, "observed <<slow:0.5>>")
            waiter = subprocess.Popen(
                [str(w.tool), "wait", sid], env=w.env, cwd=w.workdir, stdout=subprocess.DEVNULL
            )
            waiter.wait()
            exited = time.perf_counter()
            deadline = time.monotonic() + 5
            while len(observer.completed) == before and time.monotonic() < deadline:
                time.sleep(0.001)
            late.append(exited - observer.completed[before])
        observer.stop.set()
        results["wait: late after turn/completed"] = Stats(late)
        w.run("kill", sid)

    rows = []
    for name, stats in results.items():
        original = ORIGINAL.get(name)
        ratio = f"{original / stats.median:.1f}x" if original else ""
        rows.append(
            [name, ms(stats.median), ms(stats.p95), TARGET[name], ms(original) if original else "", ratio]
        )
    print(table(["measure", "median", "p95", "target", "original", "faster"], rows))
    print(f"\nruns per measure: {runs} (creates: {max(3, runs // 3)})")


if __name__ == "__main__":
    main()
