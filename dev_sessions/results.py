"""What the session commands return besides the backends' values: a new session, a Codex goal, all that
is known about a session, a session killed.

Loaded only by the commands that return them (``create``, ``goal``, ``inspect``, ``kill``): a dataclass
costs about a millisecond to make, and the quick commands (``status``, ``list``, ``send``) need none of
these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dev_sessions.api import JsonObject
from dev_sessions.backend import Started, Status
from dev_sessions.store import Session


@dataclass(frozen=True)
class Created:
    """A new session, what its agent showed once up, and notes for the user (a worktree that starts
    without the repository's uncommitted changes)."""

    session: Session
    started: Started
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Goal:
    """A Codex thread goal: what the agent works towards until it is met, and what it has used.
    ``record`` is the app-server's own record of it (printed by ``goal --json``)."""

    objective: str
    status: str
    token_budget: int | None
    tokens_used: int
    time_used_seconds: float
    record: JsonObject = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: JsonObject) -> Goal:
        def number(key: str) -> float:
            value = record.get(key)
            return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0

        budget = record.get("tokenBudget")
        return cls(
            objective=str(record.get("objective") or ""),
            status=str(record.get("status") or ""),
            token_budget=budget if isinstance(budget, int) and not isinstance(budget, bool) else None,
            tokens_used=int(number("tokensUsed")),
            time_used_seconds=number("timeUsedSeconds"),
            record=record,
        )


@dataclass(frozen=True)
class Inspection:
    """Everything known about a session: its record, its status, and what its backend adds (the tmux
    pane, the transcript, the app-server and bridge) as JSON."""

    session: Session
    status: Status
    facts: JsonObject = field(default_factory=dict)


@dataclass(frozen=True)
class Killed:
    """A session ``kill`` stopped, and ``note``: what it left (a worktree kept, and why).

    ``host``: where it ran (its host's own kill did the work there, and a note names the host).
    ``worktree``: its git worktree, if it had one, and ``worktree_kept`` whether it is still there.
    ``error``: not killed (``kill --all`` and ``--older-than`` go on past a session they cannot
    kill), the one line why, and ``exit_code`` that error's; its record is kept."""

    id: str
    note: str = ""
    host: str | None = None
    worktree: str | None = None
    worktree_kept: bool = False
    error: str = ""
    exit_code: int = 0

    @property
    def killed(self) -> bool:
        return not self.error

    def to_json(self) -> JsonObject:
        """``kill --json``'s entry for this session."""
        if self.error:
            return {"id": self.id, "killed": False, "host": self.host, "error": self.error}
        worktree: JsonObject | None = (
            None if self.worktree is None else {"path": self.worktree, "kept": self.worktree_kept}
        )
        return {
            "id": self.id,
            "killed": True,
            "host": self.host,
            "worktree": worktree,
            "note": self.note or None,
        }


def json_safe(value: object) -> object:
    """A backend's facts as plain JSON values (paths as strings, dataclasses as their fields)."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_safe(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
