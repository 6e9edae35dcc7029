"""Printing helpers shared by the command modules: JSON, notes on stderr, message input."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dev_sessions.api import JsonObject
from dev_sessions.errors import UsageError, outcome_exit

if TYPE_CHECKING:  # the messaging and lease commands print no session: they need not load it
    from dev_sessions.backend import Dialog, Status, WaitResult
from dev_sessions.terminal import json_text


def emit_json(data: object) -> None:
    sys.stdout.write(json_text(data) + "\n")


def note(message: str) -> None:
    """A line for the person or agent reading stderr (not an error by itself)."""
    print(message, file=sys.stderr)


def read_message(session_id: str, message: str | None, file: str | None) -> str:
    """The text to send: the MESSAGE argument, or the contents of --file (``-`` is stdin)."""
    if message is not None and file is not None:
        raise UsageError(f"{session_id}: give either MESSAGE or --file, not both")
    if file is None:
        if message is None:
            raise UsageError(f"{session_id}: give a MESSAGE or --file FILE (--file - reads stdin)")
        return message
    if file == "-":
        data = sys.stdin.buffer.read()
        source = "stdin"
    else:
        try:
            data = Path(file).read_bytes()
        except FileNotFoundError:
            raise UsageError(f"--file {file}: no such file") from None
        except IsADirectoryError:
            raise UsageError(f"--file {file}: is a directory") from None
        except OSError as err:
            raise UsageError(f"--file {file}: {err.strerror}") from None
        source = file
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(f"--file {source}: not UTF-8 text (byte {err.start})") from None


def dialog_lines(dialog: Dialog) -> list[str]:
    lines = [f"  {line}" for line in dialog.context]
    lines.append(f"  {dialog.question}")
    for option in dialog.options:
        lines.append(f"    {option}" + (f" - {option.description}" if option.description else ""))
    return lines


def status_json(session_id: str, status: Status) -> JsonObject:
    return {
        "id": session_id,
        "status": status.state,
        "detail": status.detail or None,
        "dialog": status.dialog.to_json() if status.dialog else None,
        "source": status.source or None,
    }


def wait_json(result: WaitResult) -> JsonObject:
    return {
        "id": result.session_id,
        "outcome": result.outcome,
        "elapsed": round(result.elapsed, 3),
        "error": result.error,
        "dialog": result.dialog.to_json() if result.dialog else None,
    }


def exit_code(results: list[WaitResult]) -> int:
    """The exit code of a wait (``errors.outcome_exit``)."""
    return outcome_exit([r.outcome for r in results])


def report_wait(result: WaitResult) -> None:
    """One line per session: good endings on stdout, the rest on stderr with what to do next."""
    sid = result.session_id
    if result.outcome == "completed":
        print(f"{sid}: completed in {result.elapsed:.1f} s")
    elif result.outcome == "idle":
        print(f"{sid}: idle (no turn to wait for)")
    elif result.outcome == "interrupted":
        why = f" ({result.error})" if result.error else ""
        print(f"{sid}: interrupted{why}")
    elif result.outcome == "failed":
        note(f"dev-sessions: {sid}: turn failed: {result.error}")
    elif result.outcome == "exited":
        note(f"dev-sessions: {sid}: {result.error}; remove it with `dev-sessions kill {sid}`")
    elif result.outcome == "timeout":
        note(f"dev-sessions: {sid}: turn still running after {result.elapsed:.0f} s")
    elif result.outcome == "waiting_for_input":
        if result.dialog is not None:
            lines = [f"dev-sessions: {sid}: waiting for input", *dialog_lines(result.dialog)]
        else:
            lines = [f"dev-sessions: {sid}: waiting for input ({result.error or 'a dialog is open'})"]
        lines.append(f"  answer with: dev-sessions respond {sid} ANSWER, then wait again")
        note("\n".join(lines))
