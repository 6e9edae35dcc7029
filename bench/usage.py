"""Usage of a long Claude transcript: what `usage` and `list --json` spend on it, in process.

    python bench/usage.py [--runs N] [--megabytes M] [--tree PATH]

A transcript of M megabytes (default 20) is made from the recorded ones (tests/fixtures/transcripts,
each copy with fresh message ids, so that every copy counts), and ``usage.of_transcript`` timed on
it: read with no cache, read again unchanged, and read after a turn was appended (a live session's
case, before every run). ``--tree`` measures another checkout's dev_sessions (the commit before, to
compare). Prints median and p95 of each.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "transcripts"


def recorded_lines() -> list[dict[str, Any]]:
    found = []
    for path in sorted(FIXTURES.rglob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            if line.strip():
                found.append(json.loads(line))
    return found


def copy_of(entries: list[dict[str, Any]], n: int) -> bytes:
    """The recorded entries once more, each id made this copy's own."""
    out = []
    for recorded in entries:
        entry = dict(recorded)
        for key in ("uuid", "parentUuid", "requestId"):
            if isinstance(entry.get(key), str):
                entry[key] = f"{entry[key]}-{n}"
        message = entry.get("message")
        if isinstance(message, dict) and isinstance(message.get("id"), str):
            entry["message"] = {**message, "id": f"{message['id']}-{n}"}
        out.append(json.dumps(entry, separators=(",", ":")).encode())
    return b"\n".join(out) + b"\n"


def percentile95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def timed(action: Callable[[], object], runs: int, before: Callable[[], object]) -> list[float]:
    samples = []
    for _ in range(runs):
        before()
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--megabytes", type=float, default=20)
    parser.add_argument("--tree", type=Path, default=ROOT, help="The checkout whose dev_sessions to time.")
    args = parser.parse_args()
    if not (args.tree / "dev_sessions" / "usage.py").is_file():
        sys.exit(f"{args.tree}: not a dev-sessions checkout with usage")
    sys.path.insert(0, str(args.tree.resolve()))
    from dev_sessions import usage
    from dev_sessions.usage import of_transcript

    entries = recorded_lines()
    base = Path(tempfile.mkdtemp(prefix="ds-bench-usage-"))
    try:
        path = base / "transcript.jsonl"
        cache = base / "cache"
        copies = 0
        with path.open("wb") as handle:
            while handle.tell() < args.megabytes * 1_000_000:
                handle.write(copy_of(entries, copies))
                copies += 1
        turn = copy_of(entries[:40], -1)

        def append() -> None:
            nonlocal copies
            with path.open("ab") as handle:
                handle.write(copy_of(entries[:40], copies))
            copies += 1

        def uncached() -> None:
            shutil.rmtree(cache, ignore_errors=True)

        size = path.stat().st_size
        rows = [
            ("no cache (whole transcript)", timed(lambda: of_transcript(path, cache), args.runs, uncached)),
            (
                "unchanged since the last read",
                timed(lambda: of_transcript(path, cache), args.runs, lambda: None),
            ),
            (
                f"after a {len(turn) / 1000:.0f} KB append",
                timed(lambda: of_transcript(path, cache), args.runs, append),
            ),
        ]
        found = of_transcript(path, cache)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"{usage.__file__}; transcript {size / 1e6:.1f} MB ({found.tokens:,} tokens)")
    width = max(len(name) for name, _ in rows)
    print(f"{'measure'.ljust(width)}  median    p95")
    for name, samples in rows:
        median, p95 = statistics.median(samples) * 1000, percentile95(samples) * 1000
        print(f"{name.ljust(width)}  {median:6.1f} ms  {p95:6.1f} ms")
    print(f"runs per measure: {args.runs}")


if __name__ == "__main__":
    main()
