"""Every error dev-sessions raises on purpose, in one tree, and the one table of exit codes.

``DevSessionsError`` carries a one-line message that names the session id or path involved and says
what to do next; its exit code comes from ``EXIT_CODES`` (by class, nearest first), the only place an
exit code is decided. The command line prints the line and exits with the code; library callers catch
the subclasses (some also are builtins: ``SessionNotFound`` is a ``LookupError``, ``NoMessage`` a
``TimeoutError``). An error crosses a process boundary (the Codex bridge, the gateway) as
``to_wire()`` and comes back through ``revive()`` as the same class, message, fields and exit code.

Exit 2, bad input:
* ``UsageError``: bad input, such as a path that is not a directory or an empty message.
* ``BadAnswer``: ``respond``'s answer fits none of the dialog's options.

Exit 124, out of time: ``NoMessage`` (``msg wait``); a ``wait`` whose turn is still running
(see ``outcome_exit``).

Exit 130: ``Interrupted``, a long command was stopped (Ctrl-C, SIGTERM) and has cleaned up.

Exit 1, everything else:
* ``SessionNotFound``: no session with that id in the store.
* ``RecipientNotFound``: no session, agent or space has that name (or ``parent`` has none).
* ``MessageNotFound`` / ``SpaceNotFound``: no such message id, no such space.
* ``ProjectNotFound``: no such project; ``ProjectInUse``: a project spaces still belong to (not deleted).
* ``LeaseConflict``: another agent holds a resource asked for (who, why, until when); nothing was
  acquired. ``LeaseNotHeld``: a lease to renew that the agent does not hold (any more).
* ``WebhookFailed``: ``webhooks test``: the endpoint did not take the test event (its status or error).
* ``NoReply``: the session has not replied yet (``last-message``).
* ``NameInUse``: an outside agent's name is held by another agent session seen lately (``agents
  register`` / ``heartbeat`` without ``--takeover``); names the session and when it was last seen.
* ``StoreCorrupt``: ``sessions.json`` is not readable; it was moved aside, not replaced.
* ``StoreTooNew``: ``sessions.json`` was written by a newer dev-sessions.
* ``LockTimeout``: another process held a lock for too long.
* ``MessagesUnavailable``: the messages server (``DEV_SESSIONS_MESSAGES_URL``) cannot be reached or
  refused us; nothing was stored. Its URL is shown without the password.
* ``UnsafePath``: a file or directory of ours is a symbolic link, another user's, or open to others.
* ``WriteFailed``: a file could not be written (a full disk); the old file is untouched.
* ``IdsExhausted``: every session id is taken; ``IdTaken`` (exit 2): the id asked for is.
* ``ToolMissing``: tmux or an agent binary is not installed where we look.
* ``AgentConfigError``: (``install-mcp``) an agent's configuration cannot be read or changed safely
  (a corrupt file, an entry in a form we do not edit, the agent's own ``mcp`` command failing).
* ``TmuxError``: a tmux command failed.
* ``SessionExited``: the agent process of a session is gone.
* ``SessionFailed``: the agent reports an error (a turn that failed on the model API).
* ``StartFailed``: the agent exited while starting up (nothing is kept).
* ``DialogOpen``: the session sits on a dialog that must be answered with ``respond``.
* ``NotReady``: the agent did not show its input box in time.
* ``NoDialog``: ``respond`` had nothing to answer.
* ``AppServerStartFailed`` / ``AppServerUnavailable`` / ``AppServerError``: the Codex app-server did
  not start, cannot be reached, or refused a call.
* ``BridgeUnavailable``: the Codex bridge cannot be reached or broke off.
* ``GatewayUnreachable``: (sandbox mode) the gateway on the host does not answer.
* ``HostUnreachable``: ssh cannot reach a remote host, or lost it (ssh's own failure, exit 255).
* ``RemoteMissing`` / ``RemoteIncompatible``: a remote host has no dev-sessions where we look, or one
  whose version this one cannot drive.
* ``RemoteFailed``: a command on a remote host failed; its one line, and its exit code kept.
* ``BadRequest`` / ``NoSuchCall`` / ``Forbidden``: the gateway will not read a request (HTTP 400),
  the call does not exist (404), or its token may not make this call (HTTP 403).
* ``TokenUnusable`` / ``TokenNotFound``: a gateway token is missing or too weak; no such scoped token.
* ``ReportedError``: an error another dev-sessions process reported whose class this one does not
  know (an older or newer version): its message and exit code as they were.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from dev_sessions import quiet_logs

quiet_logs()  # every module that logs imports this one (or watch): the library's loggers stay quiet

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130


class DevSessionsError(Exception):
    """Base of every deliberate error; ``str(err)`` is the one line a user sees."""

    @property
    def exit_code(self) -> int:
        return exit_code_of(type(self))

    def to_wire(self) -> dict[str, object]:
        """The error as JSON for another dev-sessions process: ``revive`` makes it again."""
        fields: dict[str, object] = {}
        for name, value in vars(self).items():
            if name.startswith("_") or not isinstance(value, (str, int, float, bool, tuple, type(None))):
                continue
            fields[name] = list(value) if isinstance(value, tuple) else value
        return {"message": str(self), "exit": self.exit_code, "kind": type(self).__name__, "fields": fields}


class UsageError(DevSessionsError):
    pass


class ReportedError(DevSessionsError):
    """An error another dev-sessions process reported that this one has no class for (another
    version): its message, its exit code, and the name of its class there."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR, kind: str = "") -> None:
        super().__init__(message)
        self.reported_exit = exit_code
        self.kind = kind

    @property
    def exit_code(self) -> int:
        return self.reported_exit


class SessionNotFound(DevSessionsError, LookupError):
    def __init__(self, *, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"{session_id}: no such session (see `dev-sessions list`)")


class RecipientNotFound(DevSessionsError, LookupError):
    def __init__(self, *, name: str, detail: str) -> None:
        self.name = name
        super().__init__(f"{name}: {detail}")


class MessageNotFound(DevSessionsError, LookupError):
    def __init__(self, *, message_id: object) -> None:
        super().__init__(f"message {message_id}: no such message")


class SpaceNotFound(DevSessionsError, LookupError):
    def __init__(self, *, name: str) -> None:
        self.name = name
        super().__init__(f"space {name}: no such space (see `dev-sessions space list`)")


class NameInUse(DevSessionsError):
    def __init__(self, *, name: str, holder: str, machine: str | None, seconds: int) -> None:
        from dev_sessions.durations import format_age

        self.name = name
        self.holder = holder
        self.machine = machine
        self.seconds = seconds
        where = f" on {machine}" if machine else ""
        super().__init__(
            f"{name}: in use by session {holder}{where}, last seen {format_age(seconds)} ago; "
            f"take it over with `dev-sessions agents register {name} --takeover`, or choose another name"
        )


class ProjectNotFound(DevSessionsError, LookupError):
    def __init__(self, *, name: str) -> None:
        self.name = name
        super().__init__(f"project {name}: no such project (see `dev-sessions project list`)")


class ProjectInUse(DevSessionsError):
    def __init__(self, *, name: str, spaces: Sequence[str]) -> None:
        self.name = name
        self.spaces = tuple(spaces)
        listed = ", ".join(spaces[:5]) + (f" and {len(spaces) - 5} more" if len(spaces) > 5 else "")
        super().__init__(
            f"project {name}: spaces belong to it ({listed}); nothing was deleted (take them out with "
            "`dev-sessions space update SPACE --no-project`)"
        )


class LeaseConflict(DevSessionsError):
    """Resources another agent holds: ``conflicts`` says each (resource, holder, mode, reason, expiry)."""

    def __init__(
        self, *, conflicts: Sequence[Mapping[str, object]], what: str = "nothing was acquired"
    ) -> None:
        self.conflicts = tuple(dict(c) for c in conflicts)
        self.what = what
        parts = []
        for c in self.conflicts[:3]:
            why = f": {c['reason']}" if c.get("reason") else ""
            parts.append(f"{c['resource']} is held {c['mode']} by {c['holder']} until {c['expiresAt']}{why}")
        more = f" (and {len(self.conflicts) - 3} more)" if len(self.conflicts) > 3 else ""
        super().__init__(f"{'; '.join(parts)}{more}; {what}")


class LeaseNotHeld(DevSessionsError, LookupError):
    def __init__(self, *, resource: str, holder: str) -> None:
        self.resource = resource
        super().__init__(
            f"{resource}: {holder} holds no lease on it (it may have expired); acquire it with "
            "`dev-sessions lease acquire`"
        )


class WebhookFailed(DevSessionsError):
    def __init__(self, *, url: str, detail: str) -> None:
        self.url = url
        self.detail = detail
        super().__init__(f"webhook {url}: {detail}")


class NoReply(DevSessionsError):
    def __init__(self, *, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"{session_id}: no reply yet")


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


class MessagesUnavailable(DevSessionsError):
    def __init__(self, *, where: str, detail: str) -> None:
        self.where = where
        self.detail = detail
        super().__init__(f"{where}: {detail}")


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


class IdTaken(UsageError):
    def __init__(self, *, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"{session_id}: that session id is in use")


class IdsExhausted(DevSessionsError):
    def __init__(self, *, in_use: int) -> None:
        super().__init__(f"all {in_use} session ids are in use; kill some sessions first")


class ToolMissing(DevSessionsError):
    def __init__(self, *, tool: str, hint: str) -> None:
        self.tool = tool
        super().__init__(f"{tool}: not found; {hint}")


class AgentConfigError(DevSessionsError):
    def __init__(self, *, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


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
        self.session_id = session_id
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


class BadAnswer(UsageError):
    def __init__(self, *, session_id: str, answer: str, options: Sequence[str]) -> None:
        super().__init__(f"{session_id}: {answer!r} matches none of: {'; '.join(options)}")


class NoMessage(DevSessionsError, TimeoutError):
    def __init__(self, *, reader: str, timeout: float) -> None:
        super().__init__(f"{reader}: no message within {timeout:g} s")


class Interrupted(DevSessionsError):
    def __init__(self, *, what: str, detail: str) -> None:
        super().__init__(f"{what}: interrupted; {detail}")


class AppServerStartFailed(DevSessionsError):
    def __init__(self, *, binary: str, detail: str) -> None:
        super().__init__(f"codex app-server ({binary}) did not start: {detail}")


class AppServerUnavailable(DevSessionsError):
    def __init__(self, *, url: str, detail: str) -> None:
        self.url = url
        super().__init__(f"codex app-server at {url}: {detail}")


class AppServerError(DevSessionsError):
    """The app-server answered a call with an error."""

    def __init__(self, *, method: str, code: int, message: str) -> None:
        self.method = method
        self.code = code
        self.detail = message
        super().__init__(f"codex app-server refused {method}: {message}")


class BridgeUnavailable(DevSessionsError):
    def __init__(self, *, path: Path, detail: str) -> None:
        super().__init__(f"codex bridge ({path}): {detail}")


class GatewayUnreachable(DevSessionsError):
    def __init__(self, *, url: str, detail: str) -> None:
        super().__init__(
            f"gateway {url} does not answer ({detail}): is `dev-sessions gateway` running on the host, "
            "and was the container started with --add-host=host.docker.internal:host-gateway?"
        )


class HostUnreachable(DevSessionsError, ConnectionError):
    def __init__(self, *, host: str, detail: str) -> None:
        self.host = host
        self.detail = detail
        super().__init__(
            f"{host}: no ssh connection ({detail}); check the host name and try `ssh {host}` by hand: "
            "it must log in without a prompt (a key, or your ssh agent; dev-sessions runs ssh in BatchMode)"
        )


class RemoteMissing(DevSessionsError):
    def __init__(self, *, host: str, binary: str, detail: str) -> None:
        self.host = host
        super().__init__(
            f"{host}: {binary}: {detail}; install dev-sessions there, or set DEV_SESSIONS_REMOTE_BIN to "
            "its path (e.g. ~/.local/bin/dev-sessions: ssh's commands do not read a login profile)"
        )


class RemoteIncompatible(DevSessionsError):
    def __init__(self, *, host: str, found: str, wanted: str) -> None:
        self.host = host
        self.found = found
        super().__init__(f"{host}: its dev-sessions is {found!r}, this one needs {wanted}; upgrade it there")


class RemoteFailed(ReportedError):
    """A command on a remote host failed: its own one line, after the host, and its own exit code."""

    def __init__(self, *, host: str, message: str, exit_code: int) -> None:
        super().__init__(f"{host}: {message}", exit_code)
        self.host = host


class BadRequest(DevSessionsError):
    """A request the gateway will not read any further (HTTP 400)."""


class NoSuchCall(BadRequest):
    """A request for a call the API does not have (HTTP 404)."""


class Forbidden(DevSessionsError):
    """A call this token may not make (HTTP 403)."""


class TokenUnusable(DevSessionsError):
    def __init__(self, *, source: str, detail: str, fix: str) -> None:
        super().__init__(f"gateway token {source}: {detail}; {fix}")


class TokenNotFound(DevSessionsError, LookupError):
    def __init__(self, *, which: str) -> None:
        super().__init__(f"gateway token {which}: no such scoped token (see `dev-sessions gateway tokens`)")


# The one table of exit codes: the nearest class in an error's MRO decides; anything else is 1.
EXIT_CODES: Mapping[type[DevSessionsError], int] = {
    UsageError: EXIT_USAGE,
    NoMessage: EXIT_TIMEOUT,
    Interrupted: EXIT_INTERRUPTED,
}

# What a ``wait`` ends with, as an exit code (the worst of several sessions wins: a timeout, then a
# turn that did not end well).
OUTCOME_EXIT: Mapping[str, int] = {
    "completed": EXIT_OK,
    "idle": EXIT_OK,
    "interrupted": EXIT_OK,
    "failed": EXIT_ERROR,
    "waiting_for_input": EXIT_ERROR,
    "exited": EXIT_ERROR,
    "timeout": EXIT_TIMEOUT,
}


def exit_code_of(cls: type[DevSessionsError]) -> int:
    for klass in cls.__mro__:
        code = EXIT_CODES.get(klass)
        if code is not None:
            return code
    return EXIT_ERROR


def outcome_exit(outcomes: Sequence[str]) -> int:
    """The exit code of a wait on several sessions: 124 if any timed out, else 1 if any turn did not
    end well, else 0."""
    codes = {OUTCOME_EXIT.get(outcome, EXIT_ERROR) for outcome in outcomes}
    if EXIT_TIMEOUT in codes:
        return EXIT_TIMEOUT
    return max(codes, default=EXIT_OK)


def _kinds() -> dict[str, type[DevSessionsError]]:
    found: dict[str, type[DevSessionsError]] = {}
    pending: list[type[DevSessionsError]] = [DevSessionsError]
    while pending:
        cls = pending.pop()
        if cls.__module__ == __name__:
            found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def revive(error: Mapping[str, object]) -> DevSessionsError:
    """The error another dev-sessions process sent (``to_wire``), as the same class, message and
    fields; an unknown class comes back as ``ReportedError`` with the message and exit code sent."""
    message = str(error.get("message") or "error")
    raw_exit = error.get("exit", EXIT_ERROR)
    exit_code = raw_exit if isinstance(raw_exit, int) and not isinstance(raw_exit, bool) else EXIT_ERROR
    kind = str(error.get("kind") or "")
    cls = _kinds().get(kind)
    if cls is None or cls is ReportedError or exit_code_of(cls) != exit_code:
        return ReportedError(message, exit_code, kind)
    revived = cls.__new__(cls)
    Exception.__init__(revived, message)
    fields = error.get("fields")
    if isinstance(fields, Mapping):
        for name, value in fields.items():
            if isinstance(name, str) and not name.startswith("_"):
                setattr(revived, name, tuple(value) if isinstance(value, list) else value)
    return revived
