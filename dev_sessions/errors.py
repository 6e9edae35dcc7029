"""Every error dev-sessions raises on purpose, in one tree.

``DevSessionsError`` carries the process exit code and a one-line message that names the session id
or path involved and says what to do next. The command line prints that line and exits with that code;
library callers catch the subclasses (some also are builtins: ``SessionNotFound`` is a ``LookupError``,
``WaitTimeout`` a ``TimeoutError``).

* ``UsageError`` (exit 2): bad input, such as a path that is not a directory or an empty message.
* ``ReportedError``: an error the Codex bridge or the gateway reported, with its own exit code.
* ``SessionNotFound``: no session with that id in the store.
* ``RecipientNotFound``: no session, agent or space has that name (or ``parent`` has none).
* ``StoreCorrupt``: ``sessions.json`` is not readable; it was moved aside, not replaced.
* ``StoreTooNew``: ``sessions.json`` was written by a newer dev-sessions.
* ``LockTimeout``: another process held the store lock for too long.
* ``UnsafePath``: a file or directory of ours is a symbolic link, another user's, or open to others.
* ``WriteFailed``: a file could not be written (a full disk); the old file is untouched.
* ``ToolMissing``: tmux or an agent binary is not installed where we look.
* ``TmuxError``: a tmux command failed.
* ``SessionExited``: the agent process of a session is gone.
* ``StartFailed``: the agent exited while starting up (nothing is kept).
* ``DialogOpen``: the session sits on a dialog that must be answered with ``respond``.
* ``NotReady``: the agent did not show its input box in time.
* ``NoDialog`` / ``BadAnswer``: ``respond`` had nothing to answer, or the answer fits no option.
* ``TurnFailed``: the turn ended with an error from the model API.
* ``WaitTimeout`` (exit 124): ``wait`` ran out of time.
* ``NoMessage`` (exit 124): ``msg wait`` ran out of time.
* ``Interrupted`` (exit 130): a long command was stopped (Ctrl-C, SIGTERM) and has cleaned up.
"""

from __future__ import annotations

from collections.abc import Sequence


class DevSessionsError(Exception):
    """Base of every deliberate error; ``str(err)`` is the one line a user sees."""

    exit_code = 1


class UsageError(DevSessionsError):
    exit_code = 2


class ReportedError(DevSessionsError):
    """An error another dev-sessions process reported (the Codex bridge, the gateway), as it was:
    its message, its exit code, and the name of its class there."""

    def __init__(self, message: str, exit_code: int = 1, kind: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.kind = kind


class SessionNotFound(DevSessionsError, LookupError):
    def __init__(self, *, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"{session_id}: no such session (see `dev-sessions list`)")


class RecipientNotFound(DevSessionsError, LookupError):
    def __init__(self, *, name: str, detail: str) -> None:
        self.name = name
        super().__init__(f"{name}: {detail}")


class StoreCorrupt(DevSessionsError):
    def __init__(self, *, path: str, detail: str, kept_at: str | None) -> None:
        self.path = path
        self.detail = detail
        self.kept_at = kept_at
        where = f"; it was moved to {kept_at} and a new store starts empty" if kept_at else ""
        super().__init__(f"{path}: unreadable session store ({detail}){where}")


class StoreTooNew(DevSessionsError):
    def __init__(self, *, path: str, version: object) -> None:
        super().__init__(
            f"{path}: written by a newer dev-sessions (store version {version}); upgrade dev-sessions"
        )


class LockTimeout(DevSessionsError, TimeoutError):
    def __init__(self, *, path: str, holder: str, waited: float) -> None:
        super().__init__(f"{path}: lock still held after {waited:.0f} s by {holder}")


class UnsafePath(DevSessionsError):
    def __init__(self, *, path: str, detail: str) -> None:
        self.path = path
        super().__init__(f"{path}: {detail}; dev-sessions will not use it (remove or fix it, then retry)")


class WriteFailed(DevSessionsError):
    def __init__(self, *, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: could not write it ({reason}); nothing was changed")


class ToolMissing(DevSessionsError):
    def __init__(self, *, tool: str, hint: str) -> None:
        self.tool = tool
        super().__init__(f"{tool}: not found; {hint}")


class TmuxError(DevSessionsError):
    def __init__(self, *, args: Sequence[str], detail: str) -> None:
        self.args_ = tuple(args)
        super().__init__(f"tmux {args[0] if args else ''} failed: {detail}")


class SessionExited(DevSessionsError):
    def __init__(self, *, session_id: str, detail: str) -> None:
        self.session_id = session_id
        super().__init__(f"{session_id}: {detail}; remove it with `dev-sessions kill {session_id}`")


class SessionFailed(DevSessionsError):
    def __init__(self, *, session_id: str, detail: str) -> None:
        super().__init__(f"{session_id}: the agent reports an error: {detail}")


class StartFailed(DevSessionsError):
    def __init__(self, *, agent: str, detail: str) -> None:
        super().__init__(f"{agent} did not start: {detail}")


class DialogOpen(DevSessionsError):
    def __init__(self, *, session_id: str, question: str, options: Sequence[str]) -> None:
        self.session_id = session_id
        choices = "; ".join(options)
        super().__init__(
            f"{session_id}: waiting for an answer to {question!r} ({choices}); "
            f"answer with `dev-sessions respond {session_id} ANSWER`"
        )


class NotReady(DevSessionsError, TimeoutError):
    def __init__(self, *, session_id: str, waited: float, screen_hint: str) -> None:
        hint = f" (screen shows: {screen_hint})" if screen_hint else ""
        super().__init__(
            f"{session_id}: input box not ready after {waited:.0f} s{hint}; "
            f"look with `dev-sessions inspect {session_id}`"
        )


class NoDialog(DevSessionsError):
    def __init__(self, *, session_id: str, status: str) -> None:
        super().__init__(f"{session_id}: nothing to answer (status {status})")


class BadAnswer(DevSessionsError):
    def __init__(self, *, session_id: str, answer: str, options: Sequence[str]) -> None:
        super().__init__(f"{session_id}: {answer!r} matches none of: {'; '.join(options)}")
        self.exit_code = 2


class TurnFailed(DevSessionsError):
    def __init__(self, *, session_id: str, message: str) -> None:
        self.session_id = session_id
        super().__init__(f"{session_id}: turn failed: {message}")


class WaitTimeout(DevSessionsError, TimeoutError):
    exit_code = 124

    def __init__(self, *, session_ids: Sequence[str], timeout: float) -> None:
        self.session_ids = tuple(session_ids)
        super().__init__(f"{', '.join(session_ids)}: turn still running after {timeout:g} s")


class NoMessage(DevSessionsError, TimeoutError):
    exit_code = 124

    def __init__(self, *, reader: str, timeout: float) -> None:
        super().__init__(f"{reader}: no message within {timeout:g} s")


class Interrupted(DevSessionsError):
    exit_code = 130

    def __init__(self, *, what: str, detail: str) -> None:
        super().__init__(f"{what}: interrupted; {detail}")
