"""What the session manager needs from an agent backend, and the values backends hand back.

A Claude session (tmux + transcript) and a Codex session (app-server thread) look the same through
``Backend``; the manager never asks which one it holds except to pick the backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from dev_sessions.api import JsonObject
from dev_sessions.errors import BadAnswer, UsageError
from dev_sessions.store import Session
from dev_sessions.usage import Usage

if TYPE_CHECKING:
    from dev_sessions.follow import Rounds, Start

State = Literal["idle", "working", "waiting_for_input", "exited", "starting", "error", "unreachable"]
Outcome = Literal["completed", "interrupted", "failed", "waiting_for_input", "idle", "exited", "timeout"]
Verdict = Literal["type", "there", "later"]
BeforeTyping = Callable[[], Verdict]
"""Asked by ``Backend.deliver`` once the session can take a message, right before typing it (nothing
else types into the session meanwhile): ``type`` goes on; ``there`` types nothing, the message being in
the conversation already (``deliver`` returns True); ``later`` types nothing (it returns False)."""


@dataclass(frozen=True)
class Option:
    """One answer to a dialog. ``keys``: the keys that choose it in a terminal (tmux key names), when
    pressing its number does not (an unnumbered list, a dialog answered by its key hints)."""

    number: int
    label: str
    description: str = ""
    keys: tuple[str, ...] = ()

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

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Dialog:
        options = tuple(
            Option(
                int(o["number"]),
                str(o["label"]),
                str(o.get("description", "")),
                tuple(str(k) for k in o.get("keys", [])),
            )
            for o in data.get("options", [])
        )
        text = next((o for o in options if data.get("textOption") == o.number), None)
        return cls(str(data.get("question", "")), tuple(data.get("context", [])), options, None, text)

    def to_json(self) -> JsonObject:
        return {
            "question": self.question,
            "context": list(self.context),
            "options": [
                {"number": o.number, "label": o.label, "description": o.description, "keys": list(o.keys)}
                for o in self.options
            ],
            "takesText": self.text_option is not None,
            "textOption": self.text_option.number if self.text_option else None,
        }


Source = Literal["", "tmux", "hooks", "claude-state", "transcript", "screen", "app-server"]


@dataclass(frozen=True)
class Status:
    """What a session is doing, and ``source``: which signal decided it (structured ones first: the
    agent's hooks, its own state file, its transcript, the app-server; the screen last)."""

    state: State
    dialog: Dialog | None = None
    detail: str = ""
    source: Source = ""


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
    def reserved_ids(self) -> set[str]:
        """Session ids that are taken outside the store (a tmux session of that name), which a new
        session must not get."""
        ...

    def create(self, session: Session, env: Mapping[str, str]) -> tuple[Session, Started]: ...

    def send(
        self, session: Session, text: str, *, steer: bool = False, collaboration: str | None = None
    ) -> Session:
        """Deliver a prompt; ``collaboration`` (Codex: "plan" or "default") switches the mode first."""
        ...

    def wait(
        self, sessions: Sequence[Session], timeout: float | None, *, goal: bool = False
    ) -> list[WaitResult]: ...

    async def wait_async(
        self, sessions: Sequence[Session], timeout: float | None, *, goal: bool = False
    ) -> list[WaitResult]: ...

    def status(self, session: Session) -> Status: ...

    def statuses(self, sessions: Sequence[Session]) -> dict[str, Status]: ...

    def last_messages(self, session: Session, count: int) -> list[str]: ...

    def log(self, session: Session) -> list[LogItem]: ...

    def events(self, session: Session, start: Start, since: str | None) -> Rounds:
        """The session's events (:mod:`dev_sessions.follow`) from ``start`` on (``since``: an ISO
        time before which the backlog is left out), until the session ends."""
        ...

    def interrupt(self, session: Session) -> bool: ...

    def respond(self, session: Session, answer: str) -> str: ...

    def kill(self, session: Session) -> None: ...

    def follow(self, session: Session) -> Session:
        """The session as the agent has it now (Claude's ``/clear`` starts a new session id)."""
        ...

    def retire(self) -> None:
        """Called when the last session of this backend is gone."""

    def deliver(
        self, session: Session, text: str, *, urgent: bool = False, check: BeforeTyping | None = None
    ) -> bool:
        """Put a message into the conversation if the session is idle now (or ``urgent`` and the agent
        can take it mid-turn); False means not now. ``SessionExited`` when it never will. ``check``,
        when given, has the last word before anything is typed (see :data:`BeforeTyping`)."""
        ...

    def idle_signals(self, session: Session) -> list[Path]:
        """Directories whose changes may mean the session became idle (none: it must be polled)."""
        ...

    def goal(
        self, session: Session, action: str, objective: str | None, budget: int | None
    ) -> dict[str, Any] | None:
        """Thread goals, where the agent has them."""

    def screen(self, session: Session) -> str: ...

    def usage(self, sessions: Sequence[Session]) -> dict[str, Usage]:
        """Tokens, turns and time worked of each session (quick: for ``list --json``)."""
        ...

    def inspect(self, session: Session) -> dict[str, Any]: ...


def choose(session_id: str, dialog: Dialog, answer: str) -> tuple[Option, str | None]:
    """Which option an answer picks: its number, its label (exact, then unique prefix, any case),
    or, where the dialog takes text, the text option with the answer typed in."""
    wanted = answer.strip()
    if not wanted:
        raise UsageError("respond: the answer is empty")
    for option in dialog.options:
        if wanted == str(option.number):
            return option, None
    lowered = wanted.lower().rstrip(".")
    exact = [o for o in dialog.options if o.label.lower().rstrip(".") == lowered]
    if len(exact) == 1:
        return exact[0], None
    prefix = [o for o in dialog.options if o.label.lower().startswith(lowered)]
    if len(prefix) == 1 and len(lowered) >= 2:
        return prefix[0], None
    if dialog.text_option is not None:
        return dialog.text_option, answer
    raise BadAnswer(session_id=session_id, answer=answer, options=[str(o) for o in dialog.options])
