"""A scripted agent backend, for testing the library in process (no tmux, no agent, no subprocess).

``FakeBackend`` implements ``dev_sessions.backend.Backend``. Its agent answers each prompt with the
next reply the test ``enqueue``d (the llm manner: script what the model says, then drive the code):
a string is a turn that completes with that text; ``Turn(...)`` is any other ending (failed, a dialog,
still running). Every call is recorded in ``calls`` as ``(method, session id, ...)``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dev_sessions.backend import BeforeTyping, Dialog, LogItem, Outcome, Started, Status, WaitResult, choose
from dev_sessions.errors import NoDialog, SessionExited
from dev_sessions.follow import Event, Rounds, Start, of_log, since_filter
from dev_sessions.store import Session
from dev_sessions.usage import ModelTokens, Usage


@dataclass(frozen=True)
class Turn:
    """How the agent's turn for one prompt ends: ``outcome`` (``running``: it has not ended), with
    ``reply`` (its last message), ``error``, or the ``dialog`` it waits on."""

    reply: str = ""
    outcome: Outcome | str = "completed"
    error: str | None = None
    dialog: Dialog | None = None


@dataclass
class _Agent:
    prompts: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    turn: Turn | None = None
    goal: dict[str, Any] | None = None
    alive: bool = True


class FakeBackend:
    def __init__(self, cli: str = "claude") -> None:
        self.cli = cli
        self.script: list[Turn] = []
        self.agents: dict[str, _Agent] = {}
        self.calls: list[tuple[object, ...]] = []
        self.retired = 0
        self.failing_status: str | None = None
        self.fail_create: BaseException | None = None
        self.reserved: set[str] = set()

    # -- scripting --------------------------------------------------------------------------------------

    def enqueue(self, *turns: str | Turn) -> None:
        """The agent's next turns, in order: one per prompt sent."""
        self.script += [Turn(t) if isinstance(t, str) else t for t in turns]

    def agent(self, session: Session) -> _Agent:
        if session.id not in self.agents or not self.agents[session.id].alive:
            raise SessionExited(session_id=session.id, detail="the fake agent is gone")
        return self.agents[session.id]

    # -- the Backend protocol --------------------------------------------------------------------------------

    def reserved_ids(self) -> set[str]:
        return set(self.reserved)

    def create(self, session: Session, env: Mapping[str, str]) -> tuple[Session, Started]:
        self.calls.append(("create", session.id, env.get("DEV_SESSIONS_ID")))
        if self.fail_create is not None:
            raise self.fail_create
        self.agents[session.id] = _Agent()
        return session, Started(Status("idle", source="tmux"), {"tmux": f"dev-{session.id}"})

    def send(
        self, session: Session, text: str, *, steer: bool = False, collaboration: str | None = None
    ) -> Session:
        self.calls.append(("send", session.id, text, steer, collaboration))
        agent = self.agent(session)
        agent.prompts.append(text)
        turn = self.script.pop(0) if self.script else Turn("")
        agent.turn = turn
        if turn.reply and turn.outcome != "running":
            agent.replies.append(turn.reply)
        return session.evolve(last_send={"offset": len(agent.prompts)})

    def _result(self, session: Session, started: float, timeout: float | None) -> WaitResult:
        agent = self.agent(session)
        turn = agent.turn
        elapsed = time.monotonic() - started
        if turn is None:
            return WaitResult(session.id, "idle", elapsed)
        if turn.outcome == "running":
            return WaitResult(session.id, "timeout", timeout or 0.0)
        outcome: Any = turn.outcome
        return WaitResult(session.id, outcome, elapsed, error=turn.error, dialog=turn.dialog)

    def wait(
        self, sessions: Sequence[Session], timeout: float | None, *, goal: bool = False
    ) -> list[WaitResult]:
        self.calls.append(("wait", tuple(s.id for s in sessions), timeout, goal))
        started = time.monotonic()
        return [self._result(s, started, timeout) for s in sessions]

    async def wait_async(
        self, sessions: Sequence[Session], timeout: float | None, *, goal: bool = False
    ) -> list[WaitResult]:
        return self.wait(sessions, timeout, goal=goal)

    def status(self, session: Session) -> Status:
        if self.failing_status is not None:
            from dev_sessions.errors import TmuxError

            raise TmuxError(args=["list-panes"], detail=self.failing_status)
        agent = self.agents.get(session.id)
        if agent is None or not agent.alive:
            return Status("exited", source="tmux")
        turn = agent.turn
        if turn is not None and turn.outcome == "running":
            return Status("working", source="hooks")
        if turn is not None and turn.outcome == "waiting_for_input":
            return Status("waiting_for_input", dialog=turn.dialog, source="hooks")
        return Status("idle", source="hooks")

    def statuses(self, sessions: Sequence[Session]) -> dict[str, Status]:
        return {s.id: self.status(s) for s in sessions}

    def last_messages(self, session: Session, count: int) -> list[str]:
        return self.agent(session).replies[-count:]

    def log(self, session: Session) -> list[LogItem]:
        agent = self.agent(session)
        items = []
        for index, prompt in enumerate(agent.prompts):
            items.append(LogItem(f"2026-11-29T10:00:{index:02d}Z", "user", prompt))
            if index < len(agent.replies):
                items.append(LogItem(f"2026-11-29T10:00:{index:02d}Z", "assistant", agent.replies[index]))
        return items

    def events(self, session: Session, start: Start, since: str | None) -> Rounds:
        """The conversation so far as events (all of it, whatever ``start``), then the session's end:
        a scripted agent has nothing more to say once its turns are played."""
        yield since_filter(of_log(session.id, self.log(session)), since)
        yield [Event("status", session.id, "2026-11-29T10:01:00Z", state="exited")]

    def interrupt(self, session: Session) -> bool:
        agent = self.agent(session)
        running = agent.turn is not None and agent.turn.outcome == "running"
        if running:
            agent.turn = Turn(outcome="interrupted")
        return running

    def respond(self, session: Session, answer: str) -> str:
        agent = self.agent(session)
        turn = agent.turn
        if turn is None or turn.dialog is None or turn.outcome != "waiting_for_input":
            raise NoDialog(session_id=session.id, status=self.status(session).state)
        option, text = choose(session.id, turn.dialog, answer)
        agent.turn = Turn(turn.reply, "completed")
        return str(option) if text is None else f"{option}: {text}"

    def kill(self, session: Session) -> None:
        self.calls.append(("kill", session.id))
        if session.id in self.agents:
            self.agents[session.id].alive = False

    def follow(self, session: Session) -> Session:
        return session

    def retire(self) -> None:
        self.retired += 1

    def deliver(
        self, session: Session, text: str, *, urgent: bool = False, check: BeforeTyping | None = None
    ) -> bool:
        agent = self.agent(session)
        if agent.turn is not None and agent.turn.outcome == "running" and not urgent:
            return False
        verdict = check() if check is not None else "type"
        if verdict != "type":
            return verdict == "there"
        agent.prompts.append(text)
        return True

    def idle_signals(self, session: Session) -> list[Path]:
        return []

    def goal(
        self, session: Session, action: str, objective: str | None, budget: int | None
    ) -> dict[str, Any] | None:
        agent = self.agent(session)
        if action == "set":
            agent.goal = {"objective": objective, "status": "active", "tokenBudget": budget, "tokensUsed": 0}
        elif action == "clear":
            agent.goal = None
        elif action in ("pause", "resume") and agent.goal is not None:
            agent.goal = {**agent.goal, "status": "paused" if action == "pause" else "active"}
        return agent.goal

    def screen(self, session: Session) -> str:
        return f"> {self.agent(session).prompts[-1] if self.agents[session.id].prompts else ''}\n"

    def usage(self, sessions: Sequence[Session]) -> dict[str, Usage]:
        """A token per character: input the prompts, output the replies; a turn per reply, a second each."""
        found = {}
        for s in sessions:
            agent = self.agents.get(s.id, _Agent())
            tokens = ModelTokens(
                "fake-model", sum(len(p) for p in agent.prompts), sum(len(r) for r in agent.replies)
            )
            n = len(agent.replies)
            found[s.id] = Usage(tokens.input, tokens.output, turns=n, seconds=float(n), models=(tokens,))
        return found

    def inspect(self, session: Session) -> dict[str, Any]:
        return {"tmux": {"session": f"dev-{session.id}", "pane": "%1"}, "status": self.status(session)}
