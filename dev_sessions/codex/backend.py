"""Codex sessions: threads on the shared ``codex app-server``, reached through the Codex bridge.

The session's ``internalId`` is its thread id. Each command is one request to the bridge
(``link.py``); the bridge owns the app-server connection (``bridge.py``). Looking (``status``,
``list``) never starts the app-server: a thread whose server is not running is at rest, and is
brought back by the next command that needs it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dev_sessions.backend import BeforeTyping, Dialog, LogItem, Started, Status, WaitResult
from dev_sessions.codex.daemon import AppServer
from dev_sessions.codex.link import BridgeLink
from dev_sessions.config import Settings
from dev_sessions.errors import DevSessionsError, SessionExited, UsageError
from dev_sessions.store import LastSend, Session, now_iso
from dev_sessions.usage import Usage, from_codex

if TYPE_CHECKING:
    from dev_sessions.follow import Rounds, Start

log = logging.getLogger(__name__)

_AT_REST = "the codex app-server is not running; the thread is at rest until the next send"


class CodexBackend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.environ = dict(settings.environ)
        self.link = BridgeLink(settings, self.environ)
        self.app = AppServer(settings.home, settings.codex_bin, self.environ)

    def reserved_ids(self) -> set[str]:
        return set()  # a Codex session is a thread: nothing outside the store holds its id

    @staticmethod
    def spec(session: Session) -> dict[str, Any]:
        return {
            "id": session.internal_id,
            "cwd": session.path,
            "approvals": session.approvals,
            "model": session.model,
            "session": session.id,
        }

    def _call(self, op: str, session: Session, **params: Any) -> dict[str, Any]:
        result = self.link.call(op, {"thread": self.spec(session), "session": session.id, **params})
        assert result is not None
        return result

    def _server_up(self) -> bool:
        return self.app.running() is not None

    # -- lifecycle --------------------------------------------------------------------------------------

    def create(self, session: Session, env: Mapping[str, str]) -> tuple[Session, Started]:
        params = {
            "cwd": session.path,
            "approvals": session.approvals,
            "model": session.model,
            "session": session.id,
            "collaboration": session.collaboration,
            "name": f"dev-sessions {session.id}"
            + (f": {session.description}" if session.description else ""),
        }
        result = self.link.call("create", params, timeout=60)
        assert result is not None
        session = session.evolve(
            internal_id=str(result["threadId"]), model=result.get("model") or session.model
        )
        return session, Started(
            Status("idle"), {"thread": result["threadId"], "rollout": result.get("rollout")}
        )

    def kill(self, session: Session) -> None:
        self._call("archive", session)

    def deliver(
        self, session: Session, text: str, *, urgent: bool = False, check: BeforeTyping | None = None
    ) -> bool:
        """A Codex turn when the thread is idle; an urgent message is steered into a running turn."""
        status = self.status(session)
        if status.state == "exited":
            raise SessionExited(session_id=session.id, detail=status.detail)
        steer = status.state == "working" and urgent
        if status.state != "idle" and not steer:
            return False
        verdict = check() if check is not None else "type"
        if verdict != "type":
            return verdict == "there"
        self._call("send", session, text=text, steer=steer)
        return True

    def idle_signals(self, session: Session) -> list[Path]:
        return []

    def follow(self, session: Session) -> Session:
        """A thread keeps its id."""
        return session

    def retire(self) -> None:
        """The last Codex session is gone: stop the app-server (and the bridge with it)."""
        try:
            stopped = self.link.call("shutdown", start=False, timeout=30)
        except DevSessionsError as err:
            log.warning("bridge shutdown failed: %s", err)
            stopped = None
        if stopped is None:
            self.app.stop()

    # -- talking --------------------------------------------------------------------------------------

    def send(
        self, session: Session, text: str, *, steer: bool = False, collaboration: str | None = None
    ) -> Session:
        result = self._call("send", session, text=text, steer=steer, collaboration=collaboration)
        mark = LastSend(at=now_iso(), mode=str(result["mode"]), clientId=str(result["clientId"]))
        if result.get("turnId"):
            mark["turnId"] = str(result["turnId"])
        return session.evolve(last_send=mark)

    def wait(
        self, sessions: Sequence[Session], timeout: float | None, *, goal: bool = False
    ) -> list[WaitResult]:
        started = time.monotonic()

        def one(session: Session) -> WaitResult:
            try:
                result = self.link.call(
                    "wait", self._wait_params(session, timeout, goal), timeout=_socket(timeout)
                )
            except DevSessionsError as err:
                return WaitResult(session.id, "exited", time.monotonic() - started, error=str(err))
            return _wait_result(session, result or {}, started)

        if len(sessions) == 1:
            return [one(sessions[0])]
        with ThreadPoolExecutor(len(sessions)) as pool:
            return list(pool.map(one, sessions))

    async def wait_async(
        self, sessions: Sequence[Session], timeout: float | None, *, goal: bool = False
    ) -> list[WaitResult]:
        import asyncio

        started = time.monotonic()

        async def one(session: Session) -> WaitResult:
            params = self._wait_params(session, timeout, goal)
            try:
                result = await self.link.call_async("wait", params, timeout=_socket(timeout))
            except DevSessionsError as err:
                return WaitResult(session.id, "exited", time.monotonic() - started, error=str(err))
            return _wait_result(session, result, started)

        return list(await asyncio.gather(*(one(s) for s in sessions)))

    def _wait_params(self, session: Session, timeout: float | None, goal: bool) -> dict[str, Any]:
        params: dict[str, Any] = {
            "thread": self.spec(session),
            "session": session.id,
            "timeout": timeout,
            "goal": goal,
        }
        if not goal:
            mark = session.last_send or {}
            params.update(turnId=mark.get("turnId"), clientId=mark.get("clientId"), mode=mark.get("mode"))
        return params

    def interrupt(self, session: Session) -> bool:
        if not self._server_up():
            return False
        return bool(self._call("interrupt", session).get("interrupted"))

    def respond(self, session: Session, answer: str) -> str:
        result = self._call("respond", session, answer=answer)
        chosen = str(result["chosen"])
        return chosen + (" (more questions follow: see status)" if result.get("more") else "")

    def goal(
        self, session: Session, action: str, objective: str | None, budget: int | None
    ) -> dict[str, Any] | None:
        result = self._call("goal", session, action=action, objective=objective, budget=budget)
        goal: dict[str, Any] | None = result.get("goal")
        return goal

    # -- looking --------------------------------------------------------------------------------------

    def status(self, session: Session) -> Status:
        if not self._server_up():
            return Status("idle", detail=_AT_REST, source="app-server")
        result = self._call("status", session)
        dialog = Dialog.from_json(result["dialog"]) if result.get("dialog") else None
        return Status(
            result["state"], dialog=dialog, detail=str(result.get("detail") or ""), source="app-server"
        )

    def statuses(self, sessions: Sequence[Session]) -> dict[str, Status]:
        if not self._server_up():
            return {s.id: Status("idle", detail=_AT_REST, source="app-server") for s in sessions}
        return {s.id: self.status(s) for s in sessions}

    def last_messages(self, session: Session, count: int) -> list[str]:
        return [str(m) for m in self._call("messages", session, count=count)["messages"]]

    def log(self, session: Session) -> list[LogItem]:
        return [LogItem(**item) for item in self._call("log", session)["items"]]

    def events(self, session: Session, start: Start, since: str | None) -> Rounds:
        """The thread's events: the backlog the bridge gives (the conversation so far, the last turn's,
        or none), then what it records from the app-server's notifications, asked for with a long
        poll (op ``follow``), less what the backlog had (the bridge reads the thread's turns after
        the point the stream starts from: an item done meanwhile is in both, with the same key)."""
        from dev_sessions.follow import Event, since_filter

        first = self._call("follow", session, start=start)
        if first.get("gone"):
            yield [Event("status", session.id, now_iso(), state="exited")]
            return
        seq = int(first.get("seq") or 0)
        listed = [e for e in first.get("events") or [] if isinstance(e, dict)]
        had = {key for e in listed if (key := e.get("key"))}
        backlog = since_filter([Event.from_json({**e, "id": session.id}) for e in listed], since)
        now = now_iso()
        backlog.append(Event("status", session.id, now, state=str(first.get("state") or "idle")))
        if isinstance(first.get("tokens"), dict):
            tokens = from_codex({"tokens": first["tokens"]}).tokens
            backlog.append(Event("tokens", session.id, now, tokens=tokens))
        yield backlog
        while True:
            params = {
                "thread": self.spec(session),
                "session": session.id,
                "after": seq,
                "timeout": FOLLOW_POLL_S,
            }
            answer = yield BridgePause(self.link, params)
            seq = int(answer.get("seq") or seq)
            found = [
                Event.from_json({**e, "id": session.id})
                for e in answer.get("events") or []
                if isinstance(e, dict) and e.get("key") not in had
            ]
            if found:
                yield found
            if answer.get("gone"):
                if not any(e.kind == "status" and e.state == "exited" for e in found):
                    yield [Event("status", session.id, now_iso(), state="exited")]
                return

    def screen(self, session: Session) -> str:
        raise UsageError(
            f"{session.id}: a Codex session has no terminal; use `dev-sessions logs {session.id}`"
        )

    def usage(self, sessions: Sequence[Session]) -> dict[str, Usage]:
        """The app-server's token totals and finished turns of each thread, through the bridge. The
        last answer is kept (``cache/usage/codex-<thread>.json``), so that a thread at rest, or one
        whose bridge was replaced since its last turn, still shows what it used."""
        up = self._server_up()
        return {s.id: self._usage(s, up) for s in sessions}

    def _usage(self, session: Session, up: bool) -> Usage:
        import json

        from dev_sessions import files
        from dev_sessions.usage import from_codex

        kept = self.settings.home / "cache" / "usage" / f"codex-{session.internal_id}.json"
        before: dict[str, Any] = {}
        with contextlib.suppress(ValueError, TypeError):
            before = json.loads(files.read_bytes(kept) or b"{}")
        if not isinstance(before, dict):
            before = {}
        found = dict(before)
        if up:
            try:
                now = self._call("usage", session)
            except DevSessionsError as err:
                log.info("%s: usage: %s", session.id, err)
            else:
                found["tokens"] = now.get("tokens") or before.get("tokens")
                if now.get("turns") or not before.get("turns"):
                    found.update(turns=now.get("turns"), seconds=now.get("seconds"))
        found["model"] = session.model or "unknown"
        if found != before:
            with contextlib.suppress(OSError):
                files.private_dir(kept.parent)
                files.write_atomic(kept, json.dumps(found).encode())
        return from_codex(found)

    def inspect(self, session: Session) -> dict[str, Any]:
        state = self.app.running()
        bridge = self.link.call("ping", start=False, timeout=5) if self.link.running() else None
        return {
            "appServer": state.__dict__ if state else None,
            "bridge": {"socket": str(self.link.path), **(bridge or {})} if bridge else None,
            "status": self.status(session),
        }


FOLLOW_POLL_S = 5.0
"""How long one ``follow`` call waits in the bridge for an event before the follower asks again."""


class BridgePause:
    """One long poll of the bridge (op ``follow``): sleeps until the thread has new events."""

    def __init__(self, link: BridgeLink, params: dict[str, Any]) -> None:
        self.link = link
        self.params = params

    def block(self) -> Any:
        return self.link.call("follow", self.params, timeout=FOLLOW_POLL_S + 30)

    async def block_async(self) -> Any:
        return await self.link.call_async("follow", self.params, timeout=FOLLOW_POLL_S + 30)


def _socket(timeout: float | None) -> float | None:
    """How long to read the bridge's answer: the wait's own timeout and a margin, or forever."""
    return None if timeout is None else timeout + 30


def _wait_result(session: Session, result: dict[str, Any], started: float) -> WaitResult:
    dialog = Dialog.from_json(result["dialog"]) if result.get("dialog") else None
    elapsed = time.monotonic() - started
    return WaitResult(session.id, result["outcome"], elapsed, error=result.get("error"), dialog=dialog)
