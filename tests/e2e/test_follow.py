"""End to end: watching a session live (issue 18) with the real Claude Code and Codex, both pinned sets.

* ``wait`` on a terminal (a real pseudo-terminal, ``pty``) keeps a progress line on stderr while a
  turn runs a slow tool call: it appears, is redrawn, names the tool call, and is gone from the final
  screen, which holds exactly what ``wait`` prints without it; through a pipe ``wait`` prints what it
  always printed and not one byte of the line.
* The line is not drawn on a terminal with ``--json``, ``-q``, ``NO_COLOR`` or ``TERM=dumb``: the
  terminal gets exactly the plain result, while a plain ``wait`` beside it draws its line.
* ``logs --follow --json`` sees each event of a two-turn conversation in order, and ends when the
  session is killed.
* ``wait --follow`` prints the waited turn's events as they land, the same lines as ``logs --follow``
  prints of that turn (none of the turn before), then the result line and its exit code.

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

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("warm_commands")]

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
    """A command on a pseudo-terminal of its own (stdin, stdout and stderr), its output kept; ``env``
    adds to (or overrides) its environment."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        import fcntl
        import struct
        import termios

        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, COLUMNS, 0, 0))
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.ONLCR  # the bytes as written: no CR added before each LF
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        environment = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLUMNS)}
        environment.pop("NO_COLOR", None)
        environment.update(env or {})  # the caller's own settings over a colour terminal's
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dev_sessions", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=environment,
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


# The conditions in which a terminal gets no progress line: (the extra arguments, the environment).
NO_LINE = {
    "json": (["--json"], {}),
    "quiet": (["-q"], {}),
    "no-color": ([], {"NO_COLOR": "1"}),
    "term-dumb": ([], {"TERM": "dumb"}),
}


def test_no_claude_progress_line_with_json_quiet_no_color_or_a_dumb_terminal(
    cli: DevSessions, claude: FakeAnthropic, tmp_path: Path
) -> None:
    no_progress_line(cli, "claude", tmp_path)


def test_no_codex_progress_line_with_json_quiet_no_color_or_a_dumb_terminal(
    cli: DevSessions, codex: FakeResponses, tmp_path: Path
) -> None:
    no_progress_line(cli, "codex", tmp_path)


def no_progress_line(cli: DevSessions, agent: str, tmp_path: Path) -> None:
    """One held turn, waited on at once by a ``wait`` on a terminal in each condition and by a plain one
    beside them: the plain one draws its line (naming the tool call) before the turn is let go, so the
    others had the same chance to draw theirs; each of them prints exactly its plain result."""
    sid = create(cli, "--cli", agent)
    prompt, release = held_turn(tmp_path)
    cli.ok("send", sid, prompt)
    quiet = {
        name: Terminal(["wait", sid, "--timeout", "120", *args], cli.cwd, env)
        for name, (args, env) in NO_LINE.items()
    }
    control = Terminal(["wait", sid, "--timeout", "120"], cli.cwd)
    tool = "Bash" if agent == "claude" else "command"
    try:
        eventually(lambda: any(f"{tool}: " in ln for ln in drawn_lines(control.output)), 30)
    except AssertionError as err:
        raise AssertionError(f"{err}; the plain wait's terminal got: {control.output!r}") from None
    release.touch()
    code, output = control.finish()
    assert code == 0, output
    plain = rf"{re.escape(sid)}: completed in \d+\.\d s\n"
    for name, terminal in quiet.items():
        code, output = terminal.finish()
        assert code == 0, (name, output)
        if name == "json":
            assert output.startswith("[") and output.endswith("]\n"), output
            (result,) = json.loads(output)
            assert result["id"] == sid and result["outcome"] == "completed", output
        else:
            assert re.fullmatch(plain, output), (name, output)
    cli.ok("kill", sid)


def test_wait_follow_prints_a_claude_turn_s_events_then_the_result(
    cli: DevSessions, claude: FakeAnthropic, tmp_path: Path
) -> None:
    wait_follow_prints_the_turn(cli, "claude", tmp_path)


def test_wait_follow_prints_a_codex_turn_s_events_then_the_result(
    cli: DevSessions, codex: FakeResponses, tmp_path: Path
) -> None:
    wait_follow_prints_the_turn(cli, "codex", tmp_path)


def wait_follow_prints_the_turn(cli: DevSessions, agent: str, tmp_path: Path) -> None:
    sid = create(cli, "--cli", agent)
    cli.ok("send", sid, "the turn before")
    cli.ok("wait", sid, "--timeout", "60")
    logs = cli.start("logs", sid, "--follow")
    eventually(lambda: "turn: turn completed" in logs.stdout, 30)  # following, live from here on
    prompt, release = held_turn(tmp_path)
    cli.ok("send", sid, prompt)
    waiting = cli.start("wait", sid, "--follow", "--timeout", "120")
    tool = "Bash" if agent == "claude" else "command"
    # printed as they land: the tool call is there while the turn is still held
    eventually(lambda: f"tool: {tool}(" in waiting.stdout, 30)
    assert "turn: turn completed" not in waiting.stdout
    release.touch()
    result = waiting.finish(60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    *events, last = result.stdout.splitlines()
    assert re.fullmatch(rf"{re.escape(sid)}: completed in \d+\.\d s", last), result.stdout
    eventually(lambda: logs.stdout.count("turn: turn completed") == 2, 30)
    cli.ok("kill", sid)
    followed = logs.finish(30)
    assert followed.returncode == 0, followed.stderr
    lines = followed.stdout.splitlines()
    first_end = next(i for i, ln in enumerate(lines) if "turn: turn completed" in ln)
    second_end = next(i for i, ln in enumerate(lines) if i > first_end and "turn: turn completed" in ln)
    assert events == lines[first_end + 1 : second_end + 1], (events, lines)
    kinds = [re.sub(r"^\[\d\d:\d\d:\d\d\] (\w+): .*", r"\1", ln) for ln in events if ln.startswith("[")]
    assert kinds == ["user", "tool", "result", "assistant", "turn"], events
    assert "released" in "\n".join(events)
    assert "the turn before" not in "\n".join(events)
