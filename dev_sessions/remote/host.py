"""A remote host as a backend: sessions on another machine, reached through its own dev-sessions over ssh.

``HostBackend`` implements :class:`~dev_sessions.backend.Backend` for the sessions recorded with a
``host``: each operation is the same API call made on the host (``dev-sessions call`` over ssh,
:class:`SshTransport`), on the host's own record of the session, which has the same id. So the
library routes a remote session like any other (``wait a b c`` across hosts, ``list`` with one call
per host), and the host's dev-sessions does the work: its tmux, its agents, its store.

Following a remote session (``logs --follow``, ``wait --follow``, the progress line) is the host's own
``follow``, streamed: each event is a line as it happens there (through the warm socket, else over
ssh), and the stream ends when the host's does (the session ended). A connection lost meanwhile is
one line, :class:`HostUnreachable`, which says from when to follow again (``--since``); it is not
made again by itself, so that no event is printed twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from dev_sessions import __version__, ids
from dev_sessions.backend import BeforeTyping, LogItem, Started, Status, WaitResult
from dev_sessions.config import Settings
from dev_sessions.errors import (
    DevSessionsError,
    HostUnreachable,
    NoSuchCall,
    RemoteFailed,
    RemoteIncompatible,
    revive,
)
from dev_sessions.remote.calls import Remote
from dev_sessions.remote.ssh import Ssh
from dev_sessions.store import Session
from dev_sessions.usage import Usage

if TYPE_CHECKING:
    from dev_sessions.api import SessionsAPI
    from dev_sessions.follow import Event, Rounds, Start
    from dev_sessions.results import Created, Killed
    from dev_sessions.sessions import SessionManager

QUICK_TIMEOUT_S = 120.0  # a call that does not block on an agent's turn


class SshTransport:
    """API calls on a host: its warm call server when it answers (:mod:`dev_sessions.remote.warm`),
    else ``dev-sessions call`` there over ssh, the request on stdin, the answer on stdout (and then
    the warm path is made for the next call)."""

    def __init__(self, settings: Settings, target: str) -> None:
        from dev_sessions.remote.warm import WarmPath

        self.ssh = Ssh(settings, target)
        self.warm = WarmPath(self.ssh)

    def call(
        self,
        api: str,
        method: str,
        args: dict[str, object],
        *,
        long: bool = False,
        timeout: float | None = None,
    ) -> object:
        from dev_sessions.gateway.protocol import decode

        request = json.dumps({"api": api, "method": method, "args": args}, ensure_ascii=False).encode()
        limit = timeout if timeout is not None else (None if long else QUICK_TIMEOUT_S)
        started = time.monotonic()
        answer = self.warm.call(request, limit)
        if answer is not None:
            if not ("result" in answer or "error" in answer):
                self.explain("no answer it could read, from its call server")
        else:
            left = None if limit is None else max(0.001, limit - (time.monotonic() - started))
            result = self.ssh.run(["call"], stdin=request, timeout=left)
            try:
                answer = json.loads(result.stdout) if result.ok else None
            except ValueError:
                answer = None
            if not isinstance(answer, dict) or not ("result" in answer or "error" in answer):
                self.explain(result.error_line() or "no answer it could read")
            assert isinstance(answer, dict)
            self.warm.arrange()
        if "error" in answer:
            error = revive(answer["error"])
            if isinstance(error, NoSuchCall):
                self.explain(str(error))
            raise error
        return decode(answer["result"])

    def stream(self, api: str, method: str, args: dict[str, object]) -> Iterator[object]:
        """A streamed call (``@call(stream=True)``) on the host: each item as the host sends it, until
        its last line. Through the warm socket when the host's server streams, else over ssh; a
        connection lost before the last line is :class:`HostUnreachable`."""
        from dev_sessions.gateway.protocol import decode

        request = json.dumps({"api": api, "method": method, "args": args}, ensure_ascii=False).encode()
        answers = self._answers(request)
        try:
            for answer in answers:
                if "item" in answer:
                    yield decode(answer["item"])
                elif "error" in answer:
                    error = revive(answer["error"])
                    if isinstance(error, NoSuchCall):
                        self.explain(str(error))
                    raise error
                elif "result" in answer:
                    return
                else:
                    self.explain("a line it could not read, in a streamed answer")
        except RemoteFailed as err:  # the host's `call` failed before its last line: an older one
            self.explain(str(err))
        finally:
            answers.close()
        raise HostUnreachable(host=self.ssh.target, detail="the connection was lost during the call")

    def _answers(self, request: bytes) -> Generator[dict[str, Any], None, None]:
        """A streamed call's answer lines: through the warm socket, unless it is not there (or the
        host's server did not run the call: ``retry``), else over ssh."""
        warm = self.warm.stream(request)
        if warm is not None:
            try:
                first = next(warm, None)
                if first is None or "retry" not in first:
                    if first is not None:
                        yield first
                    yield from warm
                    return
            finally:
                warm.close()
        for line in self.ssh.stream(["call"], stdin=request):
            yield _parsed(line)

    def explain(self, detail: str) -> None:
        """An answer this version cannot use: the host's dev-sessions lacks a call, or is too old or
        new. Says which version it found."""
        version = self.ssh.remote_version()
        raise RemoteIncompatible(host=self.ssh.target, found=version, wanted=f"{__version__} ({detail})")

    def api(self) -> SessionsAPI:
        return cast("SessionsAPI", Remote("sessions", self.ssh.settings, self))


def _parsed(line: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(line)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


class HostBackend:
    """The sessions of one remote host (``create --host TARGET``)."""

    def __init__(self, settings: Settings, target: str) -> None:
        self.settings = settings
        self.target = target
        self.transport = SshTransport(settings, target)
        self.remote = self.transport.api()

    def reserved_ids(self) -> set[str]:
        return set()  # the host refuses an id it has (IdTaken), and create tries another

    def create(self, session: Session, env: Mapping[str, str]) -> tuple[Session, Started]:
        raise NotImplementedError("a remote session is made by create_on")

    def send(
        self, session: Session, text: str, *, steer: bool = False, collaboration: str | None = None
    ) -> Session:
        plan = None if collaboration is None else collaboration == "plan"
        sent = self.remote.send(session.id, text, steer=steer, plan=plan)
        return session.evolve(last_send=sent.last_send)

    def wait(
        self, sessions: Sequence[Session], timeout: float | None, *, goal: bool = False
    ) -> list[WaitResult]:
        return self.remote.wait([s.id for s in sessions], timeout, goal=goal)

    async def wait_async(
        self, sessions: Sequence[Session], timeout: float | None, *, goal: bool = False
    ) -> list[WaitResult]:
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.wait(sessions, timeout, goal=goal)
        )

    def status(self, session: Session) -> Status:
        return self.remote.status(session.id)

    def statuses(self, sessions: Sequence[Session]) -> dict[str, Status]:
        """One call for all of them, given a short time: an unreachable host is said, never waited on."""
        wanted = {s.id for s in sessions}
        limit = self.settings.ssh_connect_timeout + 5
        try:
            rows = self.transport.call("sessions", "list_sessions", {}, timeout=limit)
        except DevSessionsError as err:
            return {sid: Status("unreachable", detail=str(err)) for sid in wanted}
        found = {s.id: st for s, st in cast("list[tuple[Session, Status]]", rows) if s.id in wanted}
        gone = f"{self.target} has no such session any more"
        return {sid: found.get(sid, Status("exited", detail=gone)) for sid in wanted}

    def last_messages(self, session: Session, count: int) -> list[str]:
        return self.remote.last_messages(session.id, count)

    def log(self, session: Session) -> list[LogItem]:
        return self.remote.logs(session.id)

    def events(self, session: Session, start: Start, since: str | None) -> Rounds:
        """The host's own ``follow`` of the session, streamed (``since`` is already a time)."""
        events: Iterator[Event] = self.remote.follow([session.id], start, since)
        pause = NextEvent(events)
        last = ""
        try:
            while True:
                got = yield pause
                if isinstance(got, HostUnreachable):
                    since_last = f" --since {last}" if last else ""
                    again = f"`dev-sessions logs --follow {session.id}{since_last}`"
                    raise HostUnreachable(host=self.target, detail=f"{got.detail}; follow again with {again}")
                if got is None:
                    return
                if got.kind not in ("status", "tokens"):  # what a backlog holds, and --since leaves out
                    last = got.timestamp or last
                yield [got]
        finally:
            pause.close()

    def interrupt(self, session: Session) -> bool:
        return self.remote.interrupt(session.id)

    def respond(self, session: Session, answer: str) -> str:
        return self.remote.respond(session.id, answer)

    def kill(self, session: Session) -> None:
        self.kill_there(session)

    def kill_there(self, session: Session, *, keep_worktree: bool = False) -> Killed | None:
        """The host's own kill of the session (it stops the agent and takes care of the worktree
        there), and what it answered: its worktree removed or kept, and why. None when the host has
        no such session any more (the record here goes too)."""
        from dev_sessions.errors import SessionNotFound

        try:
            found = self.remote.kill([session.id], keep_worktree=keep_worktree)
        except SessionNotFound:
            return None
        return next((k for k in found if k.id == session.id), None)

    def follow(self, session: Session) -> Session:
        return session  # the host follows its own sessions

    def retire(self) -> None:
        pass

    def deliver(
        self, session: Session, text: str, *, urgent: bool = False, check: BeforeTyping | None = None
    ) -> bool:
        return False  # messages reach a remote session through the host's own deliverer

    def idle_signals(self, session: Session) -> list[Path]:
        return []

    def goal(
        self, session: Session, action: str, objective: str | None, budget: int | None
    ) -> dict[str, Any] | None:
        found = self.remote.goal(session.id, action, objective, budget)
        return None if found is None else dict(found.record)

    def screen(self, session: Session) -> str:
        return self.remote.screen(session.id)

    def usage(self, sessions: Sequence[Session]) -> dict[str, Usage]:
        """One call for all of them (the host's own ``usage``)."""
        found = self.remote.usage([s.id for s in sessions])
        return {row.id: row.usage for row in found.sessions if row.error is None}

    def inspect(self, session: Session) -> dict[str, Any]:
        found = self.remote.inspect(session.id)
        return {
            **found.facts,
            "host": {"target": self.target, "record": dict(found.session.to_record())},
            "status": found.status,
        }


class NextEvent:
    """A follower's pause on a remote stream: the next event (None at its end, or the connection's
    loss as a value, for the follower to say from when to follow again)."""

    def __init__(self, events: Iterator[Event]) -> None:
        self.events = events

    def block(self) -> Event | HostUnreachable | None:
        try:
            return next(self.events, None)
        except HostUnreachable as err:
            return err

    async def block_async(self) -> Event | HostUnreachable | None:
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(None, self.block)

    def close(self) -> None:
        close = getattr(self.events, "close", None)
        if close is not None:
            close()


def create_on(manager: SessionManager, host: str, *, path: str | None, **wanted: Any) -> Created:
    """Start a session on ``host`` (its dev-sessions does it) and record it here, with its host.

    The id is chosen here, free in this store, and asked of the host, which refuses one it has
    (``IdTaken``): then another is tried, so that ids never collide between machines.
    """
    from dev_sessions.errors import IdTaken
    from dev_sessions.results import Created

    backend = manager.backends.host(host)
    backend.transport.ssh.check_version()
    for _ in range(8):
        with manager.store.transaction() as doc:
            session_id = ids.allocate(set(doc.sessions))
            doc.put(Session(id=session_id, internal_id="", cli="claude", path=path or "", host=host))
        try:
            created = backend.remote.create(path=path, session_id=session_id, **wanted)
        except IdTaken:
            continue
        finally:
            with manager.store.transaction() as doc:
                doc.sessions.pop(session_id, None)
        session = created.session.evolve(host=host, tmux_socket=None)
        with manager.store.transaction() as doc:
            doc.put(session)
            parent = doc.sessions.get(session.parent or "")
        if parent is not None and not parent.host:
            # A session here made it: its answers (`msg send --to parent` there) are brought into it.
            from dev_sessions.messaging.deliver import ensure_deliverer

            ensure_deliverer(manager.settings, manager.settings.environ)
        return Created(session, created.started, created.notes)
    raise IdTaken(session_id=f"{host}: no free id after 8 tries")
