"""Watching a session live (issue 18): how soon an event shows, and what a waiting `wait` costs.

    python bench/follow.py [--runs N] [--seconds S]

With the real pinned Claude Code against the fake model (bench/common.py):

* event to line: `logs ID --follow --json` runs; an assistant entry is appended to the session's
  transcript (as Claude appends its own), and the time from the append to the event's line on the
  follower's stdout is measured, N times (target: 100 ms);
* a waiting `wait` with its progress line: `wait ID` on a pseudo-terminal while a turn is held by the
  fake model, its CPU (user + system, all its threads, from /proc) over S windows of 5 s (target:
  under 1% of a core).

Prints median and p95 of each.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import subprocess
import time
import uuid

from common import Stats, World, table, world

WINDOW_S = 5.0
"""One CPU sample: the kernel counts CPU in ticks of 10 ms, so a 1 s window is 0 % or 1 %."""


def tool(w: World, *args: str) -> str:
    done = subprocess.run(
        [str(w.tool), *args], env=w.env, cwd=w.workdir, capture_output=True, text=True, check=True
    )
    return done.stdout


def entry(text: str) -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    message = {
        "id": f"msg_{uuid.uuid4().hex}",
        "role": "assistant",
        "content": [{"type": "text", "text": text}],
    }
    line = {"type": "assistant", "uuid": str(uuid.uuid4()), "timestamp": stamp, "message": message}
    return json.dumps(line).encode() + b"\n"


def event_to_line(w: World, sid: str, runs: int) -> Stats:
    transcript = json.loads(tool(w, "inspect", sid))["transcript"]["path"]
    follower = subprocess.Popen(
        [str(w.tool), "logs", sid, "--follow", "--json"], env=w.env, cwd=w.workdir, stdout=subprocess.PIPE
    )
    assert follower.stdout is not None
    fd = follower.stdout.fileno()
    os.set_blocking(fd, False)
    pending = b""

    def line_with(needle: bytes, deadline: float) -> float:
        nonlocal pending
        while needle not in pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise SystemExit("the follower printed nothing in time")
            pending += os.read(fd, 65536)
        arrived = time.monotonic()
        pending = pending[pending.index(needle) :].split(b"\n", 1)[-1]
        return arrived

    line_with(b'"kind":"tokens"', time.monotonic() + 30)  # the backlog is out: it follows now
    samples = []
    for n in range(runs):
        marker = f"bench-{n}-{uuid.uuid4().hex[:6]}"
        data = entry(marker)
        with open(transcript, "ab") as file:
            written = time.monotonic()
            file.write(data)
        samples.append(line_with(marker.encode(), time.monotonic() + 10) - written)
        time.sleep(0.05)
    follower.terminate()
    follower.wait()
    return Stats(samples)


def waiting_cpu(w: World, sid: str, seconds: int) -> Stats:
    tool(w, "send", sid, "hold it <<hold>>")
    master, slave = pty.openpty()
    waiter = subprocess.Popen(
        [str(w.tool), "wait", sid], env=w.env, cwd=w.workdir, stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    tick = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        with open(f"/proc/{waiter.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    drained = b""
    end = time.monotonic() + 3  # started, the line drawn, the clock ticking
    while time.monotonic() < end:
        if select.select([master], [], [], 0.1)[0]:
            drained += os.read(master, 65536)
    if b"\x1b[2K" not in drained:
        raise SystemExit("no progress line was drawn")
    samples = []
    for _ in range(seconds):
        before, start = cpu(), time.monotonic()
        while time.monotonic() - start < WINDOW_S:
            if select.select([master], [], [], 0.2)[0]:
                os.read(master, 65536)
        samples.append((cpu() - before) / (time.monotonic() - start))
    w.fake.release()
    waiter.wait(30)
    os.close(master)
    return Stats(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seconds", type=int, default=6, help="how many 5 s windows")
    args = parser.parse_args()
    with world() as w:
        sid = tool(w, "create", "-q").strip()
        tool(w, "ask", sid, "hello")
        latency = event_to_line(w, sid, args.runs)
        usage = waiting_cpu(w, sid, args.seconds)
        tool(w, "kill", sid)
    rows = [
        ["event to line (logs --follow)", f"{latency.median * 1000:.1f} ms", f"{latency.p95 * 1000:.1f} ms"],
        ["CPU of a waiting wait + line", f"{usage.median * 100:.2f} %", f"{usage.p95 * 100:.2f} %"],
    ]
    print(table(["what", "median", "p95"], rows))


if __name__ == "__main__":
    main()
