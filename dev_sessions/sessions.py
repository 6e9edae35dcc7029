"""The sessions API: every session command as a method of ``SessionManager`` (``@call``: see
:mod:`dev_sessions.api`).

The manager owns the store and picks the backend for each session; it validates input, keeps the store
in step with what the backends did, and never prints. The command line calls it, and the gateway and
sandbox mode serve it as it is.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from dev_sessions import choices, ids
from dev_sessions.api import JsonObject, call
from dev_sessions.backend import Backend, LogItem, Status, WaitResult
from dev_sessions.config import Settings
from dev_sessions.errors import DevSessionsError, HostUnreachable, IdTaken, SessionNotFound, UsageError
from dev_sessions.store import Session, SessionStore, now_iso, parse_iso

if TYPE_CHECKING:  # loaded by the commands that need them (see dev_sessions.results)
    from dev_sessions.follow import Event, Rounds, Start
    from dev_sessions.results import Created, Goal, Inspection, Killed
    from dev_sessions.usage import UsageReport
    from dev_sessions.worktrees import Plan

MAX_TEXT = 64 * 1024 * 1024


class SessionManager:
    def __init__(
        self, settings: Settings | None = None, backends: Mapping[str, Backend] | None = None
    ) -> None:
        """``backends``: the backend of each cli, when not the real ones (tests)."""
        self.settings = settings or Settings.from_env()
        self.environ = dict(self.settings.environ)
        self.store = SessionStore(self.settings.store_path)
        self.backends = choices.Backends(self.settings, backends or {})

    def backend(self, cli: str) -> Backend:
        return self.backends.of_cli(cli)

    def backend_of(self, session: Session) -> Backend:
        """The backend of a session: its host's (``create --host``), else its agent's."""
        return self.backends.of(session)

    # -- lookups ------------------------------------------------------------------------------------

    @call(
        owns="session_id",
        tool="session",
        about="The stored record of a session: its cli, path, parent, worktree, host.",
    )
    def get(self, session_id: str) -> Session:
        if not ids.is_valid(session_id):
            raise SessionNotFound(session_id=session_id)
        session = self.store.get(session_id)
        followed = self.backend_of(session).follow(session)
        if followed is session:
            return session
        with self.store.transaction() as doc:  # the agent moved on (Claude's /clear): record it once
            current = doc.get(session_id)
            if current.internal_id == session.internal_id:
                doc.put(followed)
        return followed

    def sessions(self, parent: str | None = None) -> list[Session]:
        """Every session, or those created by ``parent`` (and the session named ``parent`` itself)."""
        found = self.store.sessions()
        if parent is None:
            return found
        return [s for s in found if parent in (s.parent, s.id)]

    def _update(self, session_id: str, **changes: Any) -> Session:
        with self.store.transaction() as doc:
            session = doc.get(session_id).evolve(**changes)
            doc.put(session)
        return session

    # -- create -------------------------------------------------------------------------------------

    @call(
        paths=("path",),
        identity="parent",
        about="Start a Claude Code (cli=claude) or Codex (cli=codex) session in a directory; returns its id.",
    )
    def create(
        self,
        *,
        cli: str = "claude",
        path: str | None = None,
        description: str = "",
        mode: str = "native",
        approvals: str = "never",
        model: str | None = None,
        parent: str | None = None,
        plan: bool = False,
        worktree: str | None = None,
        host: str | None = None,
        session_id: str | None = None,
    ) -> Created:
        """Start a session. ``plan`` (Codex): the thread starts in Plan mode, where the agent plans
        instead of changing files and may ask questions (answered with ``respond``). ``worktree``: the
        agent works in a git worktree of its own (:mod:`dev_sessions.worktrees`), on that branch
        (``""``: a new ``dev-sessions/<id>``). ``host``: on that machine, through its own dev-sessions
        over ssh (``path`` is the host's; none: its home). ``session_id``: this id, not a new one
        (how a host is asked for an id free on both machines)."""
        mode = choices.check_create(cli, mode, approvals, plan, session_id)
        if host is not None:
            from dev_sessions.remote.host import create_on

            wanted = {"description": description, "mode": mode, "approvals": approvals, "model": model}
            parent = parent or self.creator()
            return create_on(
                self, host, path=path, cli=cli, parent=parent, plan=plan, worktree=worktree, **wanted
            )
        workdir = choices.workdir(path)
        backend = self.backend(cli)
        with self.store.transaction() as doc:
            in_use = set(doc.sessions) | backend.reserved_ids()
            if session_id in in_use:
                raise IdTaken(session_id=session_id)
            stamp = now_iso()
            session = Session(
                id=session_id or ids.allocate(in_use),
                internal_id=str(uuid.uuid4()),
                cli=choices.as_cli(cli),
                path=workdir,
                mode=mode,
                description=description,
                created_at=stamp,
                last_used=stamp,
                model=model,
                approvals=approvals,
                collaboration="plan" if plan else None,
                parent=parent or self.creator(),
                tmux_socket=self.settings.tmux_socket,
            )
            doc.put(session)
        from dev_sessions import worktrees
        from dev_sessions.results import Created

        planned: Plan | None = None
        try:
            if worktree is not None:
                planned = worktrees.plan(Path(workdir), session.id, worktree or None, self.settings.worktrees)
                worktrees.make(planned)
                where = {"path": str(planned.workdir), "worktree": str(planned.directory)}
                session = session.evolve(**where, branch=planned.branch)
            session, started = backend.create(session, self.environ)
        except BaseException:
            if planned is not None:
                worktrees.undo(planned)
            with self.store.transaction() as doc:
                doc.sessions.pop(session.id, None)
            raise
        with self.store.transaction() as doc:
            doc.put(session)
        if self.settings.messages_url and not session.host:
            from dev_sessions.messaging.machines import announce

            announce(self.settings, self)  # other machines sharing the message store may write to it
        return Created(session, started, planned.notes if planned else ())

    def creator(self) -> str:
        """Who is creating a session: an outside agent, a session (from inside it), or the user.

        Recorded as the session's parent, so that a child can write to it with `msg send --to parent`.
        """
        return self.settings.me()

    # -- talking to a session -------------------------------------------------------------------------

    @call(
        owns="session_id",
        about="Send a prompt to a session; returns at once (use wait, or ask, for the reply).",
    )
    def send(self, session_id: str, text: str, *, steer: bool = False, plan: bool | None = None) -> Session:
        """Deliver a prompt. ``plan`` (Codex): True puts the thread in Plan mode from this prompt on,
        False back in Default mode; None leaves the mode as it is."""
        if not text.strip():
            raise UsageError(f"{session_id}: the message is empty")
        if len(text) > MAX_TEXT:
            raise UsageError(f"{session_id}: the message is over {MAX_TEXT // (1024 * 1024)} MB")
        if plan is not None and steer:
            raise UsageError(
                f"{session_id}: --steer adds to the running turn, which keeps its mode; "
                "send --plan or --no-plan without --steer"
            )
        session = self.get(session_id)
        collaboration = None if plan is None else ("plan" if plan else "default")
        sent = self.backend_of(session).send(session, text, steer=steer, collaboration=collaboration)
        changes: dict[str, Any] = {"last_send": sent.last_send, "last_used": now_iso()}
        if collaboration is not None:
            changes["collaboration"] = collaboration
        return self._update(session_id, **changes)

    def _wait_groups(
        self, session_ids: Sequence[str], timeout: float | None
    ) -> tuple[list[str], dict[str, list[Session]]]:
        unique = list(dict.fromkeys(session_ids))
        if not unique:
            raise UsageError("wait: name at least one session")
        if timeout is not None and timeout < 0:
            raise UsageError("--timeout cannot be negative")
        groups: dict[str, list[Session]] = {}
        for session in (self.get(sid) for sid in unique):
            groups.setdefault(session.host or session.cli, []).append(session)
        return unique, groups

    @call(
        long=True,
        owns="session_ids",
        about="Wait until each session's turn ends (or `timeout` seconds pass); says how each ended.",
    )
    def wait(
        self, session_ids: Sequence[str], timeout: float | None = None, *, goal: bool = False
    ) -> list[WaitResult]:
        unique, groups = self._wait_groups(session_ids, timeout)
        if len(groups) == 1:
            ((_, group),) = groups.items()
            found = self.backend_of(group[0]).wait(group, timeout, goal=goal)
        else:
            with ThreadPoolExecutor(len(groups)) as pool:
                futures = [
                    pool.submit(self.backend_of(group[0]).wait, group, timeout, goal=goal)
                    for group in groups.values()
                ]
                found = [r for f in futures for r in f.result()]
        by_id = {r.session_id: r for r in found}
        return [by_id[sid] for sid in unique]

    async def wait_async(
        self, session_ids: Sequence[str], timeout: float | None = None, *, goal: bool = False
    ) -> list[WaitResult]:
        """``wait`` for an asyncio loop (the gateway serves many waits without a thread each)."""
        import asyncio

        unique, groups = self._wait_groups(session_ids, timeout)
        batches = await asyncio.gather(
            *(self.backend_of(group[0]).wait_async(group, timeout, goal=goal) for group in groups.values())
        )
        by_id = {r.session_id: r for batch in batches for r in batch}
        return [by_id[sid] for sid in unique]

    @call(
        long=True,
        owns="session_id",
        about="Send a prompt and wait for the turn to end; returns the outcome and the reply.",
    )
    def ask(self, session_id: str, text: str, timeout: float | None = None) -> tuple[WaitResult, list[str]]:
        self.send(session_id, text)
        (result,) = self.wait([session_id], timeout)
        return result, self._answer(session_id, result)

    async def ask_async(
        self, session_id: str, text: str, timeout: float | None = None
    ) -> tuple[WaitResult, list[str]]:
        import asyncio

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.send, session_id, text)
        (result,) = await self.wait_async([session_id], timeout)
        return result, await loop.run_in_executor(None, self._answer, session_id, result)

    def _answer(self, session_id: str, result: WaitResult) -> list[str]:
        if result.outcome in ("completed", "interrupted", "failed"):
            return self.last_messages(session_id, 1)
        return []

    @call(
        owns="session_id",
        tool="last_message",
        about="The last reply (or the last `count` replies) of a session, as text.",
    )
    def last_messages(self, session_id: str, count: int = 1) -> list[str]:
        if count < 1:
            raise UsageError("-n must be at least 1")
        session = self.get(session_id)
        return self.backend_of(session).last_messages(session, count)

    @call(
        owns="session_id",
        about="One word: idle, working, waiting_for_input, exited or starting, with any open question.",
    )
    def status(self, session_id: str) -> Status:
        session = self.get(session_id)
        return self.backend_of(session).status(session)

    @call(
        owns="session_id",
        about="Codex: get, set, pause, resume or clear a session's thread goal (objective, token budget).",
    )
    def goal(
        self, session_id: str, action: str = "get", objective: str | None = None, budget: int | None = None
    ) -> Goal | None:
        """Show, set, pause, resume or clear a thread goal (Codex)."""
        if action not in ("get", "set", "pause", "resume", "clear"):
            raise UsageError(f"goal: unknown action {action!r}")
        if action == "set" and not (objective or "").strip():
            raise UsageError(f"{session_id}: the goal's objective is empty")
        if budget is not None and budget <= 0:
            raise UsageError("--budget must be a positive number of tokens")
        session = self.get(session_id)
        record = self.backend_of(session).goal(session, action, objective, budget)
        from dev_sessions.results import Goal

        return None if record is None else Goal.from_record(cast(JsonObject, record))

    @call(owns="session_id", about="Stop the session's current turn (like Esc); the session stays.")
    def interrupt(self, session_id: str) -> bool:
        session = self.get(session_id)
        return self.backend_of(session).interrupt(session)

    @call(
        owns="session_id",
        about="Answer the question or permission prompt a session waits on (an option's number or label).",
    )
    def respond(self, session_id: str, answer: str) -> str:
        session = self.get(session_id)
        chosen = self.backend_of(session).respond(session, answer)
        self._update(session_id, last_used=now_iso())
        return chosen

    @call(owns="session_id", about="The session's conversation so far: prompts, replies and tool calls.")
    def logs(self, session_id: str) -> list[LogItem]:
        session = self.get(session_id)
        return self.backend_of(session).log(session)

    @call(
        long=True,
        stream=True,
        owns="session_ids",
        about="The sessions' events as they happen (prompts, replies, tool calls, turn ends, status).",
    )
    def follow(
        self, session_ids: Sequence[str], start: str = "all", since: str | None = None
    ) -> Iterator[Event]:
        """Each session's events (:mod:`dev_sessions.follow`): from the start of the conversation
        (``start="all"``), of the turn of the last send (``"turn"``) or from now (``"now"``), then as
        they land, until every session has ended. ``since``: leave out the backlog before then (an age
        such as 30m, or an ISO time)."""
        from dev_sessions.follow import drive, merged

        rounds = self._follow_rounds(session_ids, start, since)
        return merged([drive(r) for r in rounds])

    async def follow_async(
        self, session_ids: Sequence[str], start: str = "all", since: str | None = None
    ) -> AsyncIterator[Event]:
        """``follow`` for an asyncio loop (the gateway streams it)."""
        import asyncio

        from dev_sessions.follow import drive_async

        loop = asyncio.get_running_loop()
        rounds = await loop.run_in_executor(None, self._follow_rounds, session_ids, start, since)
        box: asyncio.Queue[Event | None] = asyncio.Queue()

        async def pump(stream: AsyncIterator[Event]) -> None:
            try:
                async for event in stream:
                    await box.put(event)
            finally:
                await box.put(None)

        tasks = [asyncio.ensure_future(pump(drive_async(r))) for r in rounds]
        running = len(tasks)
        try:
            while running:
                got = await box.get()
                if got is None:
                    running -= 1
                else:
                    yield got
            for task in tasks:
                task.result()  # a follower's error is the stream's
        finally:
            for task in tasks:
                task.cancel()

    def _follow_rounds(self, session_ids: Sequence[str], start: str, since: str | None) -> list[Rounds]:
        from dev_sessions.follow import since_iso

        if start not in ("all", "turn", "now"):
            raise UsageError(f"follow: start is all, turn or now, not {start!r}")
        if not session_ids:
            raise UsageError("follow: give at least one session id")
        cutoff = since_iso(since)
        sessions = [self.get(sid) for sid in dict.fromkeys(session_ids)]
        return [self.backend_of(s).events(s, cast("Start", start), cutoff) for s in sessions]

    @call(owns="session_id", about="What the session's terminal shows now (Claude sessions), as text.")
    def screen(self, session_id: str) -> str:
        session = self.get(session_id)
        return self.backend_of(session).screen(session)

    @call(
        owns="session_id",
        about="Everything known about a session: record, live status, transcript, tmux, worktree.",
    )
    def inspect(self, session_id: str) -> Inspection:
        session = self.get(session_id)
        facts = dict(self.backend_of(session).inspect(session))
        status = facts.pop("status")
        if not isinstance(status, Status):
            status = self.backend_of(session).status(session)
        from dev_sessions.results import Inspection, json_safe

        (row,) = self.usage([session.id]).sessions
        facts["usage"] = row.to_json()
        return Inspection(session, status, cast(JsonObject, json_safe(facts)))

    @call(
        scope=("parent",),
        about="Tokens (input, output, cache read/write), turns and time worked, per session and in total.",
    )
    def usage(
        self, session_ids: Sequence[str] = (), parent: str | None = None, *, remote: bool = True
    ) -> UsageReport:
        """Each session's usage (``session_ids``, or every session, or ``parent``'s) and the total.
        Claude's from its transcript, Codex's from the app-server; a cost only when
        ``$DEV_SESSIONS_HOME/prices.json`` exists (:mod:`dev_sessions.usage`). A host that does not
        answer gives its sessions an ``error`` and leaves them out of the total. ``remote=False``
        leaves out the sessions on other hosts (no ssh call: what the text ``list`` shows)."""
        from dev_sessions import usage as usages

        if session_ids:
            known = {s.id: s for s in self.sessions(parent)}
            for sid in session_ids:
                if sid not in known:
                    raise SessionNotFound(session_id=sid)
            sessions = [known[sid] for sid in dict.fromkeys(session_ids)]
        else:
            sessions = self.sessions(parent)
        if not remote:
            sessions = [s for s in sessions if not s.host]
        prices = usages.load_prices(self.settings.home)
        groups: dict[str, list[Session]] = {}
        for session in sessions:
            groups.setdefault(session.host or session.cli, []).append(session)

        def of(group: list[Session]) -> dict[str, usages.Usage | str]:
            try:
                return dict(self.backend_of(group[0]).usage(group))
            except DevSessionsError as err:
                return {s.id: str(err) for s in group}

        found: dict[str, usages.Usage | str] = {}
        if any(s.host for s in sessions):
            with ThreadPoolExecutor(len(groups)) as pool:
                for part in pool.map(of, groups.values()):
                    found.update(part)
        else:
            for group in groups.values():
                found.update(of(group))
        rows = []
        for s in sessions:
            got = found.get(s.id, f"{s.host or s.cli} did not report {s.id}")
            if isinstance(got, str):
                rows.append(usages.SessionUsage(s.id, s.cli, usages.Usage(), error=got))
            else:
                rows.append(usages.SessionUsage(s.id, s.cli, got))
        return usages.report(rows, prices)

    @call(scope=("parent",), tool="list", about="Every session with its live status.")
    def list_sessions(self, parent: str | None = None) -> list[tuple[Session, Status]]:
        sessions = self.sessions(parent)
        groups: dict[str, list[Session]] = {}
        for session in sessions:
            groups.setdefault(session.host or session.cli, []).append(session)

        def statuses_of(group: list[Session]) -> dict[str, Status]:
            try:
                return self.backend_of(group[0]).statuses(group)
            except DevSessionsError as err:
                return {s.id: Status("starting", detail=str(err)) for s in group}

        statuses: dict[str, Status] = {}
        if any(s.host for s in sessions):  # a host each, at once: one slow host costs its own time only
            with ThreadPoolExecutor(len(groups)) as pool:
                for found in pool.map(statuses_of, groups.values()):
                    statuses.update(found)
        else:
            for group in groups.values():
                statuses.update(statuses_of(group))
        return [(s, statuses[s.id]) for s in sessions]

    # -- kill ---------------------------------------------------------------------------------------

    @call(
        owns="session_ids",
        about="Stop sessions and forget them (a clean worktree is removed, one with changes kept).",
    )
    def kill(
        self, session_ids: Sequence[str], *, keep_worktree: bool = False, forget: bool = False
    ) -> list[Killed]:
        """Stop sessions; a session's worktree goes too, unless it holds uncommitted changes or
        ``keep_worktree``. ``forget``: a session whose host does not answer is dropped from the store
        all the same (it may still run there). Of several, one that cannot be killed does not stop the
        others (it comes back with its ``error``, as in ``kill_all``)."""
        sessions = [self.get(sid) for sid in dict.fromkeys(session_ids)]
        # One id: its error is the command's. Several: each is killed if it can be, as with --all.
        return self._kill(sessions, keep_worktree, forget, go_on=len(sessions) > 1)

    @call(scope=("parent",), about="Stop every session (only yours when called from a session).")
    def kill_all(self, parent: str | None = None, *, keep_worktree: bool = False) -> list[Killed]:
        """Stop every session (or ``parent``'s). One that cannot be killed (its host does not
        answer) does not stop the others: it comes back with its ``error``, and its record stays."""
        return self._kill(self.sessions(parent), keep_worktree, go_on=True)

    @call(scope=("parent",), about="Stop the sessions created more than `seconds` ago.")
    def kill_older_than(
        self, seconds: float, parent: str | None = None, *, keep_worktree: bool = False
    ) -> list[Killed]:
        """``kill_all`` for the sessions created more than ``seconds`` ago."""
        now = datetime.now(timezone.utc)
        old = []
        for session in self.sessions(parent):
            created = parse_iso(session.created_at)
            if created is not None and (now - created).total_seconds() > seconds:
                old.append(session)
        return self._kill(old, keep_worktree, go_on=True)

    def _kill(
        self, sessions: Sequence[Session], keep_worktree: bool, forget: bool = False, *, go_on: bool = False
    ) -> list[Killed]:
        """Kill each session; ``go_on``: past one that fails, which is returned with its error (else
        the error is raised)."""
        from dev_sessions.results import Killed

        killed = []
        silent: dict[str, HostUnreachable] = {}  # hosts that did not answer: not asked again here
        for session in sessions:
            try:
                killed.append(self._kill_one(session, keep_worktree, forget, silent))
            except DevSessionsError as err:
                if not go_on:
                    raise
                line = str(err)
                if isinstance(err, HostUnreachable):
                    line += f"; its record is kept (`dev-sessions kill --forget {session.id}` drops it)"
                killed.append(Killed(session.id, host=session.host, error=line, exit_code=err.exit_code))
        return killed

    def _kill_one(
        self, session: Session, keep_worktree: bool, forget: bool, silent: dict[str, HostUnreachable]
    ) -> Killed:
        from dev_sessions import worktrees
        from dev_sessions.results import Killed

        backend = self.backend_of(session)
        note = None
        there: Killed | None = None
        try:
            if session.host:  # the host's own kill, which takes care of the worktree there
                if session.host in silent:
                    raise silent[session.host]
                try:
                    there = self.backends.host(session.host).kill_there(session, keep_worktree=keep_worktree)
                except HostUnreachable as err:
                    silent[session.host] = err
                    raise
            else:
                backend.kill(session)
        except HostUnreachable as err:
            if not forget:
                raise
            note = f"forgotten here; {err.host} did not answer, and the session may still run there"
        with self.store.transaction() as doc:
            doc.sessions.pop(session.id, None)
            # Decided under the lock, so that a create racing with this kill either comes first
            # (and keeps what it needs) or starts afresh after.
            if not any(s.cli == session.cli and s.host == session.host for s in doc.sessions.values()):
                backend.retire()
        kept = False
        if there is not None:
            kept = there.worktree_kept
            note = f"{session.host}: {there.note}" if there.note else None
        elif session.worktree and not session.host:
            note = worktrees.release(Path(session.worktree), session.branch, keep=keep_worktree)
            kept = note is not None
        elif session.worktree:
            kept = note is not None  # forgotten, or gone there already: not known to be removed
        worktree = (there.worktree if there else None) or session.worktree
        return Killed(session.id, note or "", session.host, worktree, kept)
