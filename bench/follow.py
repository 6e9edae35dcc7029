"""Watching a session live (issue 18): how soon an event shows, and what a waiting `wait` costs.

    python bench/follow.py [--runs N] [--seconds S] [--host]

With the real pinned Claude Code against the fake model (bench/common.py):

* event to line: `logs ID --follow --json` runs; an assistant entry is appended to the session's
  transcript (as Claude appends its own), and the time from the append to the event's line on the
  follower's stdout is measured, N times (target: 100 ms);
* a waiting `wait` with its progress line: `wait ID` on a pseudo-terminal while a turn is held by the
  fake model, its CPU (user + system, all its threads, from /proc) over S windows of 5 s (target:
  under 1% of a core).

With ``--host``, the same two again for a session on a remote host (a real sshd on 127.0.0.1 whose
login is a second world on this machine, tests/fakes/sshd.py, as in bench/hosts.py): the transcript is
the host's, and the event travels as a line of the host's own follow, through its warm call server.

Prints median and p95 of each.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from common import AGENTS, Stats, World, table, world

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
    held = uuid.uuid4().hex[:8]  # a hold of its own: a name once released stays released
    tool(w, "send", sid, f"hold it <<hold:{held}>>")
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
    w.fake.release(held)
    waiter.wait(30)
    os.close(master)
    return Stats(samples)


def on_a_host(w: World, runs: int, seconds: int) -> tuple[Stats, Stats]:
    from dev_sessions.selftest.offline import claude_env, prepare_claude_home
    from tests.fakes.sshd import ALIAS, start_sshd

    binary = AGENTS.claude()
    with tempfile.TemporaryDirectory(prefix="ds-bench-ssh-") as root:

        def claude_there(home: Path) -> dict[str, str]:
            return {**claude_env(home, w.fake.url), "DEV_SESSIONS_CLAUDE_BIN": str(binary)}

        sshd = start_sshd(Path(root) / "sshd", extra=claude_there)
        try:
            prepare_claude_home(sshd.remote.home, trusted=sshd.remote.home)
            w.env["DEV_SESSIONS_SSH_CONFIG"] = str(sshd.client_config)
            sid = tool(w, "create", "-q", "--host", ALIAS).strip()
            tool(w, "ask", sid, "hello")
            latency = event_to_line(w, sid, runs)
            usage = waiting_cpu(w, sid, seconds)
            tool(w, "kill", sid)
        finally:
            sshd.stop()
    return latency, usage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seconds", type=int, default=6, help="how many 5 s windows")
    parser.add_argument("--host", action="store_true", help="and a session on a remote host")
    args = parser.parse_args()
    found: dict[str, tuple[Stats, Stats]] = {}
    with world() as w:
        sid = tool(w, "create", "-q").strip()
        tool(w, "ask", sid, "hello")
        found[""] = (event_to_line(w, sid, args.runs), waiting_cpu(w, sid, args.seconds))
        tool(w, "kill", sid)
        if args.host:
            found[" (remote host)"] = on_a_host(w, args.runs, args.seconds)
    rows = []
    for where, (latency, usage) in found.items():
        rows += [
            [
                f"event to line (logs --follow){where}",
                f"{latency.median * 1000:.1f} ms",
                f"{latency.p95 * 1000:.1f} ms",
            ],
            [
                f"CPU of a waiting wait + line{where}",
                f"{usage.median * 100:.2f} %",
                f"{usage.p95 * 100:.2f} %",
            ],
        ]
    print(table(["what", "median", "p95"], rows))


if __name__ == "__main__":
    main()
