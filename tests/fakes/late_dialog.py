#!/usr/bin/env python3
"""A Claude whose question dialog is drawn late: the screen of a Claude Code on a loaded machine, where
the hooks and the state file say a question waits seconds before the screen shows it.

argv: the dialog's screen (a file), the delay in seconds, a log of the keys read, and the folder of
Claude's state files (this process's is ``PID.json`` there). It shows an empty input box, then the
dialog after the delay. Each key read is logged as ``box:KEY`` (read while the box showed: a key
that would have gone into the prompt) or ``dialog:KEY``; a digit read while the dialog shows answers
it: the box again, and the state ``idle``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import tty

RULE = "─" * 80


def main() -> None:
    screen, delay, keys = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    state = os.path.join(sys.argv[4], f"{os.getpid()}.json")
    with open(screen, encoding="utf-8") as f:
        dialog = f.read().replace("\n", "\r\n")
    box = "\x1b[2J\x1b[H Claude Code (late dialog)\r\n\r\n"
    box += f"{RULE}\r\n❯\u00a0\r\n{RULE}\r\n  ? for shortcuts\r\n"
    tty.setraw(0)
    sys.stdout.write(box)
    sys.stdout.flush()
    os.set_blocking(0, False)
    shows_at, showing = time.monotonic() + delay, None
    while True:
        if showing is None and time.monotonic() >= shows_at:
            showing = "dialog"
            sys.stdout.write("\x1b[2J\x1b[H" + dialog)
            sys.stdout.flush()
        try:
            data = os.read(0, 4096).decode("utf-8", "replace")
        except BlockingIOError:
            data = ""
        for char in data:
            with open(keys, "a", encoding="utf-8") as out:
                out.write(f"{showing or 'box'}:{char!r}\n")
            if showing == "dialog" and char.isdigit():
                showing = "answered"
                with open(state, encoding="utf-8") as f:
                    said = json.load(f)
                with open(state, "w", encoding="utf-8") as out:
                    json.dump({**said, "status": "idle", "waitingFor": ""}, out)
                sys.stdout.write(box)
                sys.stdout.flush()
        time.sleep(0.02)


if __name__ == "__main__":
    main()
