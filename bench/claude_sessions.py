"""Claude sessions, whole-process: the figures issue 2 names, against the original tool's.

    python bench/claude_sessions.py [--runs N] [--only TEXT] [--against CHECKOUT]

Prints a table: median and p95 of each command as a user runs it (a new process each time), the
target, the original TypeScript tool's figure measured on this machine kind, and the ratio.
``--against`` times `list` with another checkout's code too (say, a worktree of the commit before),
run for run in turn with this checkout's (both through PYTHONPATH), so that a change is measured
under the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import ROOT, Stats, World, ms, table, timed, timed_pair, world

# Measured side by side with the original TypeScript tool (node) on this machine kind (issue 2).
ORIGINAL: dict[str, float | None] = {
    "--version": 0.128,
    "list --json (no sessions)": 0.150,  # issue 17's table, measured again side by side
    "status": 0.133,
    "last-message": None,
    "list (20 live sessions)": 0.228,
    "list --json (20 live sessions)": 0.255,  # issue 17's table
    "list (20 sessions, a turn each)": None,
    "send (session ready)": 0.466,
    "send + wait (instant model)": 0.635,
    "send 50 lines, 4 KB (editor key)": None,
    "create (until input box ready)": 15.0,
    "wait: late after the turn ends": 1.2,
}
TARGET = {
    "--version": "< 60 ms",
    "list --json (no sessions)": "< 60 ms",
    "status": "< 60 ms",
    "last-message": "< 60 ms",
    "list (20 live sessions)": "< 150 ms",
    "list --json (20 live sessions)": "< 60 ms",
    "list (20 sessions, a turn each)": "< 150 ms",
    "send (session ready)": "< 150 ms",
    "send + wait (instant model)": "< 318 ms",  # issue 17: half the original's
    "send 50 lines, 4 KB (editor key)": "-",
    "create (until input box ready)": "< 2 s",
    "wait: late after the turn ends": "< 50 ms",
}


def turn_ends(transcript: Path) -> int:
    try:
        return transcript.read_bytes().count(b'"subtype":"turn_duration"')
    except FileNotFoundError:
        return 0


def _note_turn_end(transcript: Path, before: int, landed: list[float]) -> None:
    while turn_ends(transcript) == before:
        time.sleep(0.0005)
    landed.append(time.perf_counter())


def wait_lateness(w: World, sid: str, runs: int) -> tuple[Stats, float]:
    """How long after the turn_duration line lands `wait` exits, and the CPU a long wait uses."""
    transcript = Path(json.loads(w.run("inspect", sid).stdout)["transcript"]["path"])
    late = []
    for _ in range(runs):
        before = turn_ends(transcript)
        w.run("send", sid, "bench turn <<slow:0.6>>")
        waiter = subprocess.Popen(
            [str(w.tool), "wait", sid], env=w.env, cwd=w.workdir, stdout=subprocess.PIPE
        )
        landed: list[float] = []
        watcher = threading.Thread(target=_note_turn_end, args=(transcript, before, landed))
        watcher.start()
        waiter.communicate()
        exited = time.perf_counter()
        watcher.join()
        late.append(exited - landed[0])
    # CPU: a 10 s wait against a quick command; the difference is what waiting itself costs.
    w.run("send", sid, "long turn <<slow:10>>")
    proc = subprocess.Popen([str(w.tool), "wait", sid], env=w.env, cwd=w.workdir, stdout=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    long_cpu = usage.ru_utime + usage.ru_stime
    quick = subprocess.Popen(
        [str(w.tool), "status", sid], env=w.env, cwd=w.workdir, stdout=subprocess.DEVNULL
    )
    _, _, usage = os.wait4(quick.pid, 0)
    quick_cpu = usage.ru_utime + usage.ru_stime
    return Stats(late), long_cpu - quick_cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--only", metavar="TEXT", help="Only the measures whose name holds TEXT.")
    parser.add_argument("--against", type=Path, metavar="CHECKOUT", help="Also time list with this code.")
    args = parser.parse_args()
    runs = args.runs

    def wanted(name: str) -> bool:
        return args.only is None or args.only in name

    results: dict[str, Stats] = {}
    with world() as w:
        if wanted("--version"):
            results["--version"] = timed(lambda: w.run("--version"), runs)
        w.warm_up()
        if wanted("list --json (no sessions)"):
            results["list --json (no sessions)"] = timed(lambda: w.run("list", "--json"), runs)
        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(lambda _: w.create(), range(20)))
        sid = ids[0]
        if wanted("status"):
            results["status"] = timed(lambda: w.run("status", sid), runs)

        def time_list(name: str) -> None:
            if args.against is None:
                results[name] = timed(lambda: w.run("list"), runs)
                return
            # Both from their source trees (byte code compiled before timing), to be alike.
            w.run("list", code=ROOT)
            w.run("list", code=args.against)
            results[name], results[f"{name}, {args.against}"] = timed_pair(
                lambda: w.run("list", code=ROOT), lambda: w.run("list", code=args.against), runs
            )

        if wanted("list (20 live sessions)"):
            time_list("list (20 live sessions)")
        if wanted("list --json (20 live sessions)"):
            results["list --json (20 live sessions)"] = timed(lambda: w.run("list", "--json"), runs)
        if wanted("list (20 sessions, a turn each)"):
            # Each transcript holds a turn, so that list has tokens to read (its TOKENS column).
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda s: w.run("ask", s, "a short prompt", "--timeout", "60"), ids))
            time_list("list (20 sessions, a turn each)")
        w.run("kill", *ids[1:])

        def settle() -> None:
            w.run("wait", sid, "--timeout", "30")

        if wanted("send (session ready)"):
            results["send (session ready)"] = timed(
                lambda: w.run("send", sid, "a short prompt"), runs, before=settle
            )
            settle()

        def send_and_wait() -> None:
            w.run("send", sid, "a short prompt")
            w.run("wait", sid, "--timeout", "30")

        if wanted("send + wait (instant model)"):
            results["send + wait (instant model)"] = timed(send_and_wait, runs)
        if wanted("last-message"):
            settle()
            results["last-message"] = timed(lambda: w.run("last-message", sid), runs)
        block = "\n".join(f"line {n}: {'x' * 70}" for n in range(50))
        if wanted("send 50 lines, 4 KB (editor key)"):
            results["send 50 lines, 4 KB (editor key)"] = timed(
                lambda: w.run("send", sid, block), runs, before=settle
            )
            settle()
        created: list[str] = []
        if wanted("create (until input box ready)"):
            results["create (until input box ready)"] = timed(
                lambda: created.append(w.create()),
                max(3, runs // 3),
                before=lambda: created and w.run("kill", created.pop()),
            )
        wait_cpu = None
        if wanted("wait: late after the turn ends"):
            results["wait: late after the turn ends"], wait_cpu = wait_lateness(w, sid, max(5, runs // 2))

    rows = []
    for name, stats in results.items():
        original = ORIGINAL.get(name)
        rows.append(
            [
                name,
                ms(stats.median),
                ms(stats.p95),
                TARGET.get(name, "-"),
                ms(original) if original else "-",
                f"{original / stats.median:.1f}x" if original else "-",
            ]
        )
    print(table(["measure", "median", "p95", "target", "original", "faster"], rows))
    if wait_cpu is not None:
        print(f"\nCPU used by a 10 s wait beyond a quick command's start-up: {wait_cpu * 1000:.0f} ms")
    print(f"runs per measure: {runs} (create: {max(3, runs // 3)}, wait: {max(5, runs // 2)})")


if __name__ == "__main__":
    main()
