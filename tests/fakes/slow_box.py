#!/usr/bin/env python3
"""A Claude input box that takes a prompt at once but is slow to show it taken: the screen of a Claude
Code on a loaded machine. It echoes typed (or pasted) text into the box; at an Enter it records the
prompt in the transcript (argv[1]) at once, counts the Enter (argv[2]), and only after ``argv[3]``
seconds draws the box empty."""

from __future__ import annotations

import json
import os
import sys
import time
import tty

RULE = "─" * 80


def draw(text: str) -> None:
    sys.stdout.write(
        f"\x1b[2J\x1b[H Claude Code (slow)\r\n\r\n{RULE}\r\n❯\u00a0{text}\r\n{RULE}\r\n  ? for shortcuts\r\n"
    )
    sys.stdout.flush()


def main() -> None:
    transcript, enters, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    tty.setraw(0)
    text, pressed, empty_at = "", 0, None
    draw("")
    os.set_blocking(0, False)
    while True:
        try:
            data = os.read(0, 4096).decode("utf-8", "replace")
        except BlockingIOError:
            data = ""
        # What came at once is drawn at once, as Claude draws a paste: a screen read between two
        # characters of it would show a box that changes again with no key pressed.
        typed = False
        for char in data.replace("\x1b[200~", "").replace("\x1b[201~", ""):
            if char == "\r":
                if typed:
                    draw(text)
                    typed = False
                pressed += 1
                with open(enters, "w") as out:
                    out.write(str(pressed))
                if text:
                    with open(transcript, "a") as out:
                        out.write(
                            json.dumps({"type": "user", "message": {"role": "user", "content": text}}) + "\n"
                        )
                    text, empty_at = "", time.monotonic() + delay
            elif char.isprintable():
                text += char
                typed = True
        if typed:
            draw(text)
        if empty_at is not None and time.monotonic() >= empty_at:
            empty_at = None
            draw("")
        time.sleep(0.02)


if __name__ == "__main__":
    main()
