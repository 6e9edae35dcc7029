"""The gateway: what going through it costs per command, and what open waits cost it in memory.

    python bench/gateway.py [--runs N]

Each command runs twice as a whole process: locally, and in sandbox mode through a gateway on
127.0.0.1 (what an agent in a container runs). Then 100 `wait` calls are left open on one session
and the gateway's resident memory is compared before and after.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import threading
import time
from pathlib import Path

from common import World, ms, table, timed, world


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_gateway(w: World, root: Path) -> tuple[subprocess.Popen[str], str, str]:
    token = os.urandom(16).hex()
    env = {**w.env, "DEV_SESSIONS_GATEWAY_TOKEN": token}
    gateway = subprocess.Popen(
        [str(w.tool), "gateway", "--port", "0", "--root", str(root)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert gateway.stdout is not None
    url = gateway.stdout.readline().split("listening on ", 1)[1].strip()
    return gateway, url, token


def open_wait(url: str, token: str, sid: str, done: list[int]) -> None:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    body = json.dumps({"api": "sessions", "method": "wait", "args": {"session_ids": [sid], "timeout": 120}})
    connection.request("POST", "/v1/call", body=body, headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    response.read()
    done.append(response.status)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    rows = []
    with world() as w:
        base = Path(w.env["DEV_SESSIONS_HOME"]).parent
        gateway, url, token = start_gateway(w, base)
        try:
            sid = w.create()
            w.run("ask", sid, "warm up")
            w.run("agents", "register", "bench")
            remote = World(
                {**w.env, "DEV_SESSIONS_SANDBOX": "1", "DEV_SESSIONS_GATEWAY_URL": url,
                 "DEV_SESSIONS_GATEWAY_TOKEN": token, "CONTAINER_WORKSPACE": str(w.workdir),
                 "HOST_PATH": str(w.workdir)},
                w.workdir, w.fake, w.tool,
            )  # fmt: skip
            commands: list[tuple[str, list[str]]] = [
                ("status", ["status", sid]),
                ("last-message", ["last-message", sid]),
                ("list", ["list"]),
                ("msg read --unread", ["msg", "read", "--as", "bench", "--unread"]),
                ("msg send", ["msg", "send", "--to", "bench", "hi"]),
            ]
            for name, argv in commands:
                local = timed(lambda argv=argv: w.run(*argv), runs)  # type: ignore[misc]
                through = timed(lambda argv=argv: remote.run(*argv), runs)  # type: ignore[misc]
                overhead = through.median - local.median
                rows.append([name, ms(local.median), ms(through.median), ms(overhead), "< 30 ms"])

            w.run("send", sid, "a long turn <<slow:30>>")
            before = rss_mb(gateway.pid)
            done: list[int] = []
            threads = [threading.Thread(target=open_wait, args=(url, token, sid, done)) for _ in range(100)]
            for thread in threads:
                thread.start()
            time.sleep(3)  # every wait is open and parked by now
            during = rss_mb(gateway.pid)
            w.run("interrupt", sid)
            for thread in threads:
                thread.join(60)
            assert done.count(200) == 100, done
        finally:
            gateway.terminate()
            gateway.wait()
    print(table(["command", "local", "via gateway", "overhead", "target"], rows))
    growth = during - before
    print(f"\ngateway memory: {before:.1f} MB idle, {during:.1f} MB with 100 open waits (+{growth:.1f} MB;")
    print("target < 50 MB); all 100 waits returned after the interrupt")
    print(f"runs per command: {runs}")


if __name__ == "__main__":
    main()
