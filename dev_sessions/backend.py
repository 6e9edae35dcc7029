"""What the session manager needs from an agent backend, and the values backends hand back.

A Claude session (tmux + transcript) and a Codex session (app-server thread) look the same through
``Backend``; the manager never asks which one it holds except to pick the backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from dev_sessions.store import Session

State = Literal["idle", "working", "waiting_for_input", "exited", "starting"]
Outcome = Literal["completed", "interrupted", "failed", "waiting_for_input", "idle", "exited", "timeout"]


@dataclass(frozen=True)
class Option:
    number: int
    label: str
    description: str = ""

    def __str__(self) -> str:
        return f"{self.number}. {self.label}"


@dataclass(frozen=True)
class Dialog:
    """A question the agent waits on: a permission prompt, an AskUserQuestion, a first-run screen."""

    question: str
    context: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()
    selected: int | None = None
    text_option: Option | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "context": list(self.context),
            "options": [
                {"number": o.number, "label": o.label, "description": o.description} for o in self.options
            ],
            "takesText": self.text_option is not None,
        }


@dataclass(frozen=True)
class Status:
    state: State
    dialog: Dialog | None = None
    detail: str = ""


@dataclass(frozen=True)
class WaitResult:
    session_id: str
    outcome: Outcome
    elapsed: float
    error: str | None = None
    dialog: Dialog | None = None


@dataclass(frozen=True)
class LogItem:
    timestamp: str
    role: str
    text: str


@dataclass(frozen=True)
class Started:
    """What ``create`` found once the agent came up: ready, or waiting on a dialog."""

    status: Status
    facts: Mapping[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    def create(self, session: Session, env: Mapping[str, str]) -> tuple[Session, Started]: ...

    def send(self, session: Session, text: str) -> Session: ...

    def wait(self, sessions: Sequence[Session], timeout: float | None) -> list[WaitResult]: ...

    def status(self, session: Session) -> Status: ...

    def statuses(self, sessions: Sequence[Session]) -> dict[str, Status]: ...

    def last_messages(self, session: Session, count: int) -> list[str]: ...

    def log(self, session: Session) -> list[LogItem]: ...

    def interrupt(self, session: Session) -> bool: ...

    def respond(self, session: Session, answer: str) -> str: ...

    def kill(self, session: Session) -> None: ...

    def screen(self, session: Session) -> str: ...

    def inspect(self, session: Session) -> dict[str, Any]: ...
