"""End to end: watching a session live (issue 18) with the real Claude Code and Codex, both pinned sets.

* ``wait`` on a terminal (a real pseudo-terminal, ``pty``) keeps a progress line on stderr while a
  turn runs a slow tool call: it appears, is redrawn, names the tool call, and is gone from the final
  screen, which holds exactly what ``wait`` prints without it; through a pipe ``wait`` prints what it
  always printed and not one byte of the line.
* ``logs --follow --json`` sees each event of a two-turn conversation in order, and ends when the
  session is killed.

The turn is held by its own tool call: a shell loop that runs until the test makes a file
(``release``), so nothing here waits on a clock.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dev_sessions.selftest.fakes.anthropic import FakeAnthropic
from dev_sessions.selftest.fakes.openai_responses import FakeResponses
from tests.conftest import DevSessions, eventually

pytestmark = pytest.mark.e2e

COLUMNS = 160


class Screen:
    """The few terminal sequences the command line writes, applied to a grid of lines: printable
    text, CR, LF, erase line (``ESC[2K``), cursor up (``ESC[nA``), erase below (``ESC[J``)."""

    def __init__(self) -> None:
        self.lines: list[str] = [""]
        self.row = 0
        self.col = 0

    def feed(self, text: str) -> None:
        index = 0
        while index < len(text):
            char = text[index]
            if char == "\x1b":
                match = re.match(r"\x1b\[(\d*)([A-Za-z])", text[index:])
                assert match is not None, f"an unexpected sequence: {text[index : index + 8]!r}"
                count, code = int(match.group(1) or 1), match.group(2)
                if code == "K":
                    self.lines[self.row] = ""
                elif code == "A":
                    self.row = max(0, self.row - count)
                elif code == "J":
                    self.lines[self.row] = self.lines[self.row][: self.col]
                    del self.lines[self.row + 1 :]
                else:
                    raise AssertionError(f"an unexpected sequence: {match.group()!r}")
                index += len(match.group())
                continue
            if char == "\r":
                self.col = 0
            elif char == "\n":
                self.row += 1
                self.col = 0
                if self.row == len(self.lines):
                    self.lines.append("")
            else:
                line = self.lines[self.row].ljust(self.col)
                self.lines[self.row] = line[: self.col] + char + line[self.col + 1 :]
                self.col += 1
            index += 1

    def text(self) -> list[str]:
        found = [line.rstrip() for line in self.lines]
        while found and not found[-1]:
            found.pop()
        return found


class Terminal:
    """A command on a pseudo-terminal of its own (stdin, stdout and stderr), its output kept."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        import fcntl
        import struct
        import termios

        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, COLUMNS, 0, 0))
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.ONLCR  # the bytes as written: no CR added before each LF
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLUMNS)}
        env.pop("NO_COLOR", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dev_sessions", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self._data = b""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the command ended and its side of the terminal closed
                return
            if not chunk:
                return
            with self._lock:
                self._data += chunk

    @property
    def output(self) -> str:
        with self._lock:
            return self._data.decode("utf-8", "replace")

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        code = self.process.wait(timeout)
        self._reader.join(10)
        os.close(self.master)
        return code, self.output


def drawn_lines(output: str) -> list[str]:
    """Each line the progress line drew (what followed an erase-line)."""
    return [re.split(r"[\r\n\x1b]", part, maxsplit=1)[0] for part in output.split("\x1b[2K")[1:]]


def held_turn(tmp_path: Path) -> tuple[str, Path]:
    """A prompt whose tool call runs until ``release`` exists, and that file."""
    release = tmp_path / "go-signal"
    command = f"while [ ! -e {release} ]; do sleep 0.05; done; echo released"
    return f"run it <<bash:{command}>>", release


def create(cli: DevSessions, *args: str) -> str:
    return cli.ok("create", "-q", *args).strip()


def test_wait_on_a_terminal_shows_claude_s_progress_and_leaves_the_screen_as_it_was(
    cli: DevSessions, claude: FakeAnthropic, tmp_path: Path
) -> None:
    progress_line_shown_then_gone(cli, "claude", tmp_path)


def test_wait_on_a_terminal_shows_codex_s_progress_and_leaves_the_screen_as_it_was(
    cli: DevSessions, codex: FakeResponses, tmp_path: Path
) -> None:
    progress_line_shown_then_gone(cli, "codex", tmp_path)


def progress_line_shown_then_gone(cli: DevSessions, agent: str, tmp_path: Path) -> None:
    sid = create(cli, "--cli", agent)
    prompt, release = held_turn(tmp_path)
    cli.ok("send", sid, prompt)
    terminal = Terminal(["wait", sid, "--timeout", "120"], cli.cwd)
    tool = "Bash" if agent == "claude" else "command"
    try:
        eventually(
            lambda: any(f"{tool}: " in ln and "while [ ! -e" in ln for ln in drawn_lines(terminal.output)), 30
        )
        eventually(lambda: len(set(drawn_lines(terminal.output))) >= 2, 30)  # redrawn: the clock at least
    except AssertionError as err:
        raise AssertionError(f"{err}; the terminal got: {terminal.output!r}") from None
    lines = drawn_lines(terminal.output)
    assert all(line.startswith(f"{sid}  ") for line in lines), lines
    assert any(f"{sid}  working  " in line and "1 tool call" in line for line in lines), lines
    release.touch()
    code, output = terminal.finish()
    assert code == 0, output
    screen = Screen()
    screen.feed(output)
    final = screen.text()
    assert len(final) == 1 and re.fullmatch(rf"{re.escape(sid)}: completed in \d+\.\d s", final[0]), final

    # The same wait through pipes: what it always printed, and nothing of the line.
    prompt, release = held_turn(tmp_path / "again")
    release.parent.mkdir()
    cli.ok("send", sid, prompt)
    piped = cli.start("wait", sid, "--timeout", "120")
    release.touch()
    result = piped.finish(60)
    assert result.returncode == 0
    assert re.fullmatch(rf"{re.escape(sid)}: completed in \d+\.\d s\n", result.stdout), result.stdout
    assert result.stderr == ""
    cli.ok("kill", sid)


def test_logs_follow_json_sees_two_claude_turns_in_order_and_ends_with_the_session(
    cli: DevSessions, claude: FakeAnthropic
) -> None:
    two_turns_followed(cli, "claude")


def test_logs_follow_json_sees_two_codex_turns_in_order_and_ends_with_the_session(
    cli: DevSessions, codex: FakeResponses
) -> None:
    two_turns_followed(cli, "codex")


def two_turns_followed(cli: DevSessions, agent: str) -> None:
    sid = create(cli, "--cli", agent)
    follower = cli.start("logs", sid, "--follow", "--json")
    eventually(lambda: '"kind":"status"' in follower.stdout or '"kind":"tokens"' in follower.stdout, 30)
    cli.ok("send", sid, "first turn")
    cli.ok("wait", sid, "--timeout", "60")
    cli.ok("send", sid, "second <<bash:echo from-the-tool>>")
    cli.ok("wait", sid, "--timeout", "60")
    eventually(lambda: follower.stdout.count('"kind":"turn"') == 2, 30)
    cli.ok("kill", sid)
    result = follower.finish(30)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(e["id"] == sid for e in events)
    talk = [e for e in events if e["kind"] in ("prompt", "reply", "tool", "result", "turn")]
    kinds = [e["kind"] for e in talk]
    assert kinds == ["prompt", "reply", "turn", "prompt", "tool", "result", "reply", "turn"], talk
    assert talk[0]["text"] == "first turn" and talk[1]["text"] == "first turn"
    assert talk[2]["outcome"] == "completed" and talk[7]["outcome"] == "completed"
    assert talk[3]["text"] == "second <<bash:echo from-the-tool>>"
    assert talk[4]["tool"] == ("Bash" if agent == "claude" else "command")
    assert "echo from-the-tool" in talk[4]["target"]
    assert "from-the-tool" in talk[5]["text"]
    assert "from-the-tool" in talk[6]["text"]
    assert events[-1]["kind"] == "status" and events[-1]["state"] == "exited"
    tokens = [e["tokens"] for e in events if e["kind"] == "tokens"]
    assert tokens == sorted(tokens) and tokens[-1] > 0
