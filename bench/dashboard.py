"""The dashboard's two targets (issue 14), measured in the system's headless Chromium:

* latency: from a reply's line landing in a Claude transcript to the reply shown on the session's
  page (the page's own clock, taken by a MutationObserver, against the time the line was written;
  one machine, one clock): median and p95 over RUNS replies;
* idle cost: 50 sessions registered in an isolated state directory, each a live tmux pane (on a
  private tmux socket) running ``sleep``, the overview open in the browser, and the dashboard's CPU
  time (user + system, from /proc) over IDLE_S seconds in which nothing happens: % of one core.

The dashboard runs from this checkout (``python -m dev_sessions dashboard``), in a throw-away home.
Run: ``python bench/dashboard.py`` (needs tmux and Chromium; DEV_SESSIONS_CHROMIUM names another).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dev_sessions.claude.facts import transcript_path  # noqa: E402
from dev_sessions.store import Session, SessionStore  # noqa: E402

SESSIONS = 50
RUNS = int(os.environ.get("BENCH_RUNS", "40"))
IDLE_S = float(os.environ.get("BENCH_IDLE_S", "20"))
URL = re.compile(r"(http://127\.0\.0\.1:(\d+))/login\?code=\S+")
NAMES = ["ahri", "brand", "corki", "diana", "ekko", "fiora", "galio", "heimer", "irelia", "jax"]
ROLES = ["top", "mid", "bot", "jungle", "support"]


def line(kind: str, text: str, sid: str) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    if kind == "user":
        message = {"role": "user", "content": text}
    else:
        message = {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": "bench",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": len(text)},
        }
    entry = {"type": kind, "message": message, "uuid": str(uuid.uuid4()), "timestamp": stamp}
    entry["sessionId"] = sid
    return json.dumps(entry) + "\n"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    chromium = os.environ.get("DEV_SESSIONS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    from playwright.sync_api import sync_playwright

    world = Path(tempfile.mkdtemp(prefix="ds-bench-dash-"))
    socket_name = f"ds-bench-dash-{os.getpid()}"
    env = {
        **os.environ,
        "HOME": str(world / "home"),
        "DEV_SESSIONS_HOME": str(world / "state"),
        "DEV_SESSIONS_TMUX_SOCKET": socket_name,
        "CLAUDE_CONFIG_DIR": str(world / "claude"),
        "PYTHONPATH": str(ROOT),
    }
    (world / "home").mkdir()
    work = world / "work"
    work.mkdir()
    sessions = []
    for n in range(SESSIONS):
        sid = f"{NAMES[n % len(NAMES)]}-{ROLES[n // len(NAMES) % len(ROLES)]}"
        session = Session(
            id=sid,
            internal_id=str(uuid.uuid4()),
            cli="claude",
            path=str(work),
            description=f"bench session {n}",
            created_at=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            tmux_socket=socket_name,
            claude_config_dir=str(world / "claude"),
            delivery="editor",
        )
        sessions.append(session)
        subprocess.run(
            ["tmux", "-L", socket_name, "new-session", "-d", "-s", f"dev-{sid}", "sleep", "100000"],
            check=True,
            env=env,
        )
    os.environ["DEV_SESSIONS_HOME"] = env["DEV_SESSIONS_HOME"]
    (world / "state").mkdir(mode=0o700)
    store = SessionStore(world / "state" / "sessions.json")
    with store.transaction() as doc:
        for session in sessions:
            doc.put(session)
    first = sessions[0]
    transcript = transcript_path(world / "claude", first.path, first.internal_id)
    transcript.parent.mkdir(parents=True, exist_ok=True)
    with transcript.open("a") as out:
        out.write(line("user", "hello", first.internal_id))
        out.write(line("assistant", "hello", first.internal_id))

    server = subprocess.Popen(
        [sys.executable, "-m", "dev_sessions", "dashboard", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
        text=True,
    )
    try:
        assert server.stdout is not None
        found = URL.search(server.stdout.readline())
        if found is None:
            print("the dashboard printed no login URL", file=sys.stderr)
            return 1
        base, login = found.group(1), found.group(0)
        with sync_playwright() as playwright:
            args = ["--no-sandbox"] if os.geteuid() == 0 else []
            browser = playwright.chromium.launch(executable_path=chromium, args=args)
            page = browser.new_page()
            page.goto(login)
            page.wait_for_selector(f"#row-{sessions[-1].id}")

            page.goto(f"{base}/s/{first.id}")
            page.wait_for_selector("#live.on")
            page.evaluate(
                """() => { window.seen = {};
                new MutationObserver(() => {
                  for (const t of document.querySelectorAll('.role-assistant .text'))
                    if (!(t.textContent in window.seen)) window.seen[t.textContent] = Date.now();
                }).observe(document.getElementById('log'), {childList: true, subtree: true}); }"""
            )
            delays = []
            for n in range(RUNS):
                text = f"reply number {n} {uuid.uuid4().hex[:8]}"
                with transcript.open("a") as out:
                    written = time.time() * 1000
                    out.write(line("assistant", text, first.internal_id))
                page.wait_for_function(f"() => {json.dumps(text)} in window.seen", timeout=10_000)
                delays.append(page.evaluate(f"() => window.seen[{json.dumps(text)}]") - written)
                time.sleep(0.2)
            delays.sort()
            p95 = delays[min(len(delays) - 1, round(0.95 * (len(delays) - 1)))]
            print(f"reply in transcript -> shown in the browser ({RUNS} replies):")
            median = statistics.median(delays)
            print(f"  median {median:6.1f} ms   p95 {p95:6.1f} ms   max {delays[-1]:6.1f} ms")

            page.goto(base + "/")
            page.wait_for_selector("#live.on")
            time.sleep(3)  # let the page's first looks pass
            before, started = cpu_seconds(server.pid), time.monotonic()
            time.sleep(IDLE_S)
            used, spent = cpu_seconds(server.pid) - before, time.monotonic() - started
            print(f"{SESSIONS} live sessions, overview open in the browser, {spent:.0f} s idle:")
            print(f"  dashboard CPU {used:.2f} s = {100 * used / spent:.2f} % of one core")
            browser.close()
        with urllib.request.urlopen(base + "/static/dashboard.css") as answer:  # still serving
            assert answer.status == 200
    finally:
        server.terminate()
        server.wait(10)
        subprocess.run(["tmux", "-L", socket_name, "kill-server"], check=False, capture_output=True)
        shutil.rmtree(world, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
