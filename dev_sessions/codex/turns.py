"""Turn state and outcomes for the Codex bridge, without any I/O: notifications in, decisions out.

``Thread`` is what the bridge knows of one thread from the app-server's notifications and server
requests; ``Thread.apply`` is the reducer. It keeps the thread's status, the requests (approvals,
questions) it waits on and the answers given so far, the turns that ended, which turn carries each
message we sent, the last error and the goal.

The decisions a command waits on are made here, over that state and the JSON the app-server returns:
which turn a ``wait`` is about (``Target``, ``TurnSearch`` over pages of turns, ``running_turn``), what
it answers (``turn_outcome``, ``goal_outcome``), what ``status`` answers, how a prompt goes in
(``send_mode``) and how ``respond``'s answers become a reply (``Thread.answer``). Where a decision needs
one more look at the app-server (the question a thread waits on, whether a queued prompt is still
queued), it says so (``AskDialog``, ``CheckQueue``) and its caller looks.

This module never blocks, sleeps, logs or touches a socket: ``connection.py`` and ``ops.py`` do the
looking, and the tests feed it recorded-shaped notifications.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dev_sessions.backend import Dialog, Option
from dev_sessions.codex import model
from dev_sessions.codex.protocol import JsonObject, Notification, ServerRequest

TURN_SCAN = 50
"""How many of the newest turns a wait looks through for the turn that carries its message."""

AT_REST = "the codex app-server is not running; the thread is at rest"
LEFT_QUEUE = "the queued prompt left the queue without running"
DECLINED = "declined by the dev-sessions user"

# Notifications that change nothing we keep but after which a waiter looks again.
_WAKE_ONLY = ("turn/started", "thread/archived", "thread/closed")


def thread_of(event: Notification | ServerRequest) -> str | None:
    """The thread an event is about: its ``threadId``, or the id of the ``thread`` it carries."""
    params = event.params
    thread_id = params.get("threadId") or (params.get("thread") or {}).get("id")
    return str(thread_id) if thread_id else None


@dataclass(frozen=True)
class Reply:
    """What ``respond`` sends back for a request: a result, or an error (a request we can only
    decline); neither while more questions of the same request wait for their answers."""

    result: JsonObject | None = None
    error: str | None = None

    @property
    def more(self) -> bool:
        return self.result is None and self.error is None


@dataclass
class Thread:
    """What the bridge knows of one thread from the notifications it received."""

    id: str
    subscribed: bool = False
    status: JsonObject = field(default_factory=lambda: {"type": "notLoaded"})
    requests: dict[Any, ServerRequest] = field(default_factory=dict)
    partial: dict[Any, list[JsonObject]] = field(default_factory=dict)
    finished: dict[str, JsonObject] = field(default_factory=dict)
    client_turns: dict[str, str] = field(default_factory=dict)
    last_error: str | None = None
    goal: JsonObject | None = None
    tokens: JsonObject | None = None  # the last thread/tokenUsage/updated total

    def apply(self, event: Notification | ServerRequest) -> bool:
        """Take in one notification or server request about this thread; True when a waiter should
        look again."""
        if isinstance(event, ServerRequest):
            self.requests[event.id] = event
            return True
        params = event.params
        method = event.method
        if method == "thread/status/changed":
            self.status = params.get("status") or self.status
        elif method == "turn/completed":
            turn = params.get("turn") or {}
            self.finished[str(turn.get("id"))] = turn
        elif method == "item/started":
            item = params.get("item") or {}
            if item.get("type") == "userMessage" and item.get("clientId"):
                self.client_turns[str(item["clientId"])] = str(params.get("turnId"))
            return False
        elif method == "serverRequest/resolved":
            self.requests.pop(params.get("requestId"), None)
        elif method == "error":
            error = params.get("error") or {}
            if not params.get("willRetry"):
                self.last_error = str(error.get("message") or "error")
            return False
        elif method == "thread/tokenUsage/updated":
            total = (params.get("tokenUsage") or {}).get("total")
            if isinstance(total, dict):
                self.tokens = total
            return False
        elif method == "thread/goal/updated":
            self.goal = params.get("goal")
        elif method == "thread/goal/cleared":
            self.goal = None
        elif method not in _WAKE_ONLY:
            return False
        return True

    def disconnected(self) -> None:
        """The connection is gone: the thread must be subscribed to again, and the requests that came
        over it are void (the app-server replays those still open on ``thread/resume``)."""
        self.subscribed = False
        self.requests.clear()

    @property
    def state(self) -> tuple[str, str]:
        """(dev-sessions state, detail) of the thread's last known status."""
        return model.thread_state(self.status)

    def pending(self) -> ServerRequest | None:
        """The request the thread waits on, the oldest first."""
        return next(iter(self.requests.values()), None)

    def dialog(self) -> Dialog | None:
        """The pending request as a dialog; a request of several questions shows the next unanswered."""
        request = self.pending()
        if request is None:
            return None
        return model.dialog_for(request, len(self.partial.get(request.id, [])))

    def answer(self, request: ServerRequest, option: Option, typed: str | None) -> Reply:
        """The reply to ``request`` for the option chosen (and the text typed, where it takes text).

        The questions of one request are answered one at a time and go back together: until the last
        one is answered the answers are kept here, and the reply is empty (``Reply.more``).
        """
        if request.method in model.APPROVALS:
            return Reply(result=model.approval_reply(option))
        if request.method == model.USER_INPUT:
            answers = self.partial.setdefault(request.id, [])
            answers.append({"answers": [typed if typed is not None else option.label]})
            questions = request.params.get("questions") or []
            if len(answers) < len(questions):
                return Reply()
            reply = {str(q.get("id")): a for q, a in zip(questions, answers, strict=False)}
            return Reply(result={"answers": reply})
        return Reply(error=DECLINED)

    def resolved(self, request: ServerRequest) -> None:
        """The reply to ``request`` went out: it no longer waits (nor do its kept answers)."""
        if request.method == model.USER_INPUT:
            self.partial.pop(request.id, None)
        self.requests.pop(request.id, None)


# -- which turn a wait is about ---------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The turn a wait follows, as the last send recorded it: the turn that carries its message (its
    client id), else the turn id ``turn/start`` gave, else, with neither (nothing was sent through
    us), whatever turn runs now. ``queued``: the send was queued behind a running turn."""

    turn_id: str | None = None
    client_id: str | None = None
    queued: bool = False

    @classmethod
    def from_json(cls, params: JsonObject) -> Target:
        """From a ``wait`` request's ``turnId``, ``clientId`` and ``mode``."""
        return cls(params.get("turnId"), params.get("clientId"), params.get("mode") == "queued")

    @property
    def follows_running(self) -> bool:
        return self.turn_id is None and self.client_id is None


class TurnSearch:
    """The turn that carries a send's message, finished or running: known from the notifications, or
    looked for in the thread's turns, newest first, a page at a time (at most ``TURN_SCAN`` turns).

    The message's client id decides: ``turn/start`` may answer with the id of a turn that was running
    (or left "in progress" by an app-server that died) rather than the turn that runs it.
    """

    def __init__(self, thread: Thread, turn_id: str | None, client_id: str | None) -> None:
        if client_id is not None:
            turn_id = thread.client_turns.get(client_id)
        self.turn_id = turn_id
        self.client_id = client_id
        self.found: JsonObject | None = thread.finished.get(turn_id) if turn_id is not None else None
        self.scanned = 0

    def feed(self, page: list[JsonObject]) -> bool:
        """Look through the next page of turns; True when no further page is needed."""
        for turn in page:
            if self._carries(turn):
                self.found = dict(turn)
                return True
        self.scanned += len(page)
        return self.scanned >= TURN_SCAN

    def _carries(self, turn: JsonObject) -> bool:
        if self.client_id is not None:
            return model.turn_carries(turn, self.client_id)
        return turn.get("id") == self.turn_id


def running_turn(newest: list[JsonObject]) -> str | None:
    """The id of the turn that runs now, from a page of the newest turn (newest first)."""
    for turn in newest[:1]:
        if turn.get("status") == "inProgress":
            return str(turn.get("id"))
    return None


def in_queue(listed: JsonObject, client_id: str) -> bool:
    """Whether the prompt sent with ``client_id`` is in a ``thread/queue/list`` answer."""
    return any(entry.get("clientUserMessageId") == client_id for entry in listed.get("data") or [])


def send_mode(running: str | None, *, steer: bool) -> str:
    """How a prompt goes in: ``steered`` into the running turn, ``queued`` as the next turn behind it,
    or ``started`` as a turn of its own."""
    if steer:
        return "steered"
    return "queued" if running is not None else "started"


# -- what a wait answers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AskDialog:
    """The thread waits for input: the answer shows the question, which the caller fetches (after a
    resume, the app-server replays it a moment later)."""

    detail: str

    def outcome(self, dialog: Dialog | None) -> JsonObject:
        return {"outcome": "waiting_for_input", "dialog": dialog_json(dialog), "error": self.detail}


@dataclass(frozen=True)
class CheckQueue:
    """A queued prompt shows in no turn and the thread is idle: it is still queued, or it runs and
    does not show yet, or it left the queue without running. Only the queue can tell; between leaving
    it and showing as a turn a prompt is in neither, so the caller looks twice, a moment apart, before
    answering ``left_queue()``."""

    client_id: str


def idle() -> JsonObject:
    """No turn to wait for."""
    return {"outcome": "idle"}


def left_queue() -> JsonObject:
    return {"outcome": "interrupted", "error": LEFT_QUEUE}


def timed_out() -> JsonObject:
    return {"outcome": "timeout"}


def turn_outcome(
    thread: Thread, turn: JsonObject | None, target: Target
) -> JsonObject | AskDialog | CheckQueue | None:
    """What a wait for ``target`` answers, given the turn found for it (None: none found yet), or what
    to look at first; None while the turn runs."""
    if turn is not None:
        ended = model.turn_outcome(turn)
        if ended is not None:
            outcome, error = ended
            if outcome == "failed" and thread.last_error and not error:
                error = thread.last_error
            return {"outcome": outcome, "error": error}
    state, detail = thread.state
    if state == "waiting_for_input":
        return AskDialog(detail)
    if state == "error":
        return {"outcome": "failed", "error": thread.last_error or detail}
    if (
        turn is None
        and target.queued  # only a queued prompt can leave without running
        and state == "idle"
        and target.client_id is not None
    ):
        return CheckQueue(target.client_id)
    return None


def goal_outcome(thread: Thread, goal: JsonObject | None) -> JsonObject | AskDialog | None:
    """What ``wait --goal`` answers, given the thread's goal (``thread/goal/get``); None while it is
    active."""
    if goal is None:
        return {"outcome": "completed", "goal": None}
    if goal.get("status") != "active":
        return {"outcome": "completed" if goal.get("status") == "complete" else "interrupted", "goal": goal}
    state, detail = thread.state
    if state == "waiting_for_input":
        return AskDialog(detail)
    return None


# -- what status answers ----------------------------------------------------------------------------


def status(thread: Thread) -> JsonObject:
    """``status``'s answer from the thread's last known status; the caller adds the dialog of a
    thread that waits for input."""
    state, detail = thread.state
    if state == "error":
        detail = thread.last_error or detail
    return {"state": state, "detail": detail}


def at_rest() -> JsonObject:
    """``status`` of a thread whose app-server is not running."""
    return {"state": "idle", "detail": AT_REST}


def unknown_thread(detail: str) -> JsonObject:
    """``status`` of a thread the app-server cannot read: archived, or its rollout gone."""
    return {"state": "exited", "detail": f"the app-server does not know the thread ({detail})"}


def dialog_json(dialog: Dialog | None) -> JsonObject | None:
    return dialog.to_json() if dialog is not None else None
