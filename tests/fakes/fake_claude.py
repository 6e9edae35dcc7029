#!/usr/bin/env python3
"""A stand-in for the ``claude`` binary that only draws Claude Code's screens, for fast tests.

It lets integration tests cover what dev-sessions does around an agent (tmux, the store, id
allocation, refusals, exit reports) without paying for the real agent; everything about the real
agent's behaviour is tested end to end against the real binary. ``FAKE_CLAUDE_MODE`` picks a screen:

``ready``   the input box, idle (default)
``dialog``  the trust-this-folder dialog
``exit``    print an error and exit with status 3
``late``    nothing for ``FAKE_CLAUDE_DELAY`` seconds (default 1), then the input box

With ``FAKE_CLAUDE_RECORD`` set, it writes its argv, environment and cwd there as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time

RULE = "─" * 80

READY = f"""
 Claude Code (fake)

{RULE}
❯\u00a0
{RULE}
  ? for shortcuts
"""

DIALOG = f"""{RULE}
 Accessing workspace:
 {os.getcwd()}
 Quick safety check: Is this a project you created or one you trust?
 ❯ 1. Yes, I trust this folder
   2. No, exit
 Enter to confirm · Esc to cancel
"""


def main() -> None:
    mode = os.environ.get("FAKE_CLAUDE_MODE", "ready")
    record = os.environ.get("FAKE_CLAUDE_RECORD")
    if record:
        with open(record, "w", encoding="utf-8") as out:
            json.dump({"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd()}, out)
    if mode == "exit":
        print("Error: fake claude refuses to start (no credentials)", flush=True)
        sys.exit(3)
    if mode == "late":
        time.sleep(float(os.environ.get("FAKE_CLAUDE_DELAY", "1")))
    sys.stdout.write("\x1b[2J\x1b[H" + (DIALOG if mode == "dialog" else READY))
    sys.stdout.flush()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
