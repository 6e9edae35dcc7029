"""Claude Code sessions: the real ``claude`` in a tmux session ``dev-<id>``, followed through its transcript.

Where each fact comes from, structured signals first (``Status.source`` says which one decided):

* alive or not, exit status, pid: tmux (the pane runs ``claude`` directly and stays after it exits);
* what happened in the conversation, and when a turn ended: the JSONL transcript
  (``<config>/projects/<cwd slug>/<uuid>.jsonl``; the uuid is ours, given with ``--session-id``), and,
  for a failed turn, the ``StopFailure`` hook;
* idle / busy / waiting: Claude's own ``<config>/sessions/<pid>.json``;
* what a waiting session asks: the ``PermissionRequest`` hook (tool, question, options), rendered with
  the screen's option labels when the screen can be read;
* the session id Claude writes to now (it changes on ``/clear``): the ``SessionStart`` hook;
* the screen, last: first-run dialogs (before Claude runs any hook), and any state nothing else names.

:class:`ClaudeBackend` is the :class:`~dev_sessions.backend.Backend` for them. It starts and stops
Claude itself, and hands the rest on: reading what a session shows to :mod:`.facts`, deciding its
status to :mod:`.status`, typing into it to :mod:`.delivery`, waiting on its turns to :mod:`.waiting`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dev_sessions import files, ids
from dev_sessions.backend import BeforeTyping, LogItem, Started, Status, WaitResult
from dev_sessions.claude import delivery, waiting, wiring
from dev_sessions.claude import events as ev
from dev_sessions.claude import screen as screens
from dev_sessions.claude import transcript as tx
from dev_sessions.claude.facts import INPUT_POLL, SCREEN_POLL, Facts, tail_messages
from dev_sessions.claude.status import exit_detail
from dev_sessions.config import Settings, claude_config_dir
from dev_sessions.errors import StartFailed, ToolMissing, UsageError
from dev_sessions.poll import poll_until
from dev_sessions.store import Session
from dev_sessions.tmux import Pane, Tmux
from dev_sessions.usage import Usage, of_transcript
from dev_sessions.watch import Watcher, run_steps, run_steps_async

if TYPE_CHECKING:
    from dev_sessions.follow import Rounds, Start

log = logging.getLogger(__name__)

# Removed from the agent's environment: they would make Claude believe it runs inside another Claude
# (CLAUDECODE, CLAUDE_CODE_CHILD_SESSION), point at the caller's own tmux pane (TMUX, TMUX_PANE),
# give the session its creator's name instead of its own (DEV_SESSIONS_AGENT; DEV_SESSIONS_ID is set),
# or hand it the gateway's owner token (DEV_SESSIONS_GATEWAY_TOKEN).
DROPPED_ENV = (
    "CLAUDECODE",
    "CLAUDE_CODE_CHILD_SESSION",
    "TMUX",
    "TMUX_PANE",
    "DEV_SESSIONS_AGENT",
    "DEV_SESSIONS_GATEWAY_TOKEN",
)


def agent_env(caller: Mapping[str, str], session_id: str) -> dict[str, str]:
    env = {k: v for k, v in caller.items() if k not in DROPPED_ENV}
    env["DEV_SESSIONS_ID"] = session_id
    env["IS_SANDBOX"] = "1"
    return env


class ClaudeBackend:
    """The :class:`~dev_sessions.backend.Backend` of Claude Code sessions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.facts = Facts(settings)

    def tmux(self, session: Session) -> Tmux:
        return self.facts.tmux(session)

    # -- paths and facts -----------------------------------------------------------------------------

    def config_dir(self, session: Session) -> Path:
        return self.facts.config_dir(session)

    def transcript(self, session: Session) -> Path:
        return self.facts.transcript(session)

    def events_since(self, session: Session, offset: int = 0) -> tuple[list[ev.Event], int]:
        """The hook events of a session from ``offset`` on, and the offset after them."""
        return self.facts.events_since(session, offset)

    # -- create --------------------------------------------------------------------------------------

    def reserved_ids(self) -> set[str]:
        """The ids of dev-sessions' tmux sessions on our server, recorded or not."""
        panes = Tmux(self.settings.tmux_socket).panes()
        return {sid for name in panes if (sid := ids.from_tmux_name(name))}

    def create(self, session: Session, env: Mapping[str, str]) -> tuple[Session, Started]:
        docker = session.mode == "docker"
        wanted = self.settings.docker_claude if docker else self.settings.claude_bin
        binary = shutil.which(wanted, path=env.get("PATH"))
        if binary is None:
            hint = (
                "it runs Claude Code in a container; set DEV_SESSIONS_DOCKER_CLAUDE to your wrapper"
                if docker
                else "install it (npm install -g @anthropic-ai/claude-code) or set DEV_SESSIONS_CLAUDE_BIN"
            )
            raise ToolMissing(tool=wanted, hint=hint)
        child_env = agent_env(env, session.id)
        session = session.evolve(claude_config_dir=str(claude_config_dir(child_env)))
        argv = [binary, "--session-id", session.internal_id]
        if session.model:
            argv += ["--model", session.model]
        if session.approvals == "never":
            argv.append("--dangerously-skip-permissions")
        else:
            # Claude 2.1.332's default mode is "auto" (no prompts): ask for the classic prompts.
            argv += ["--permission-mode", "default"]
        if not docker:
            # The container runs its own Claude with its own environment: screens and pastes there.
            child_env.update(wiring.agent_environment(self.settings.home, session.id, env))
            argv += ["--settings", str(wiring.hooks_file(self.settings.home))]
            session = session.evolve(delivery="editor")
        name = ids.tmux_name(session.id)
        from dev_sessions import launch

        command, spec = launch.prepare(self.settings.home / "launch", argv, child_env)
        try:
            self.tmux(session).new_session(name, cwd=session.path, command=command)
        except BaseException:
            spec.unlink(missing_ok=True)
            raise
        status = self._await_ready(session)
        return session, Started(status, {"tmux": name, "binary": binary})

    def _await_ready(self, session: Session) -> Status:
        """Wait until the input box shows, a dialog shows, or Claude dies; no fixed sleeps."""
        seen = screens.Screen("starting")

        def came_up() -> Status | None:
            nonlocal seen
            live = self.facts.live(session)
            seen = live.screen
            if live.pane is None or live.pane.dead:
                pane = self._settled(session, live.pane)
                last = self._last_words(session)
                self.tmux(session).kill(ids.tmux_name(session.id))
                raise StartFailed(agent="claude", detail=exit_detail(pane) + (f": {last}" if last else ""))
            if live.screen.state == "dialog":
                return Status("waiting_for_input", dialog=live.screen.dialog)
            if live.screen.state in ("ready", "busy"):
                return self.facts.status(session, live)
            return None

        status = poll_until(came_up, self.settings.ready_timeout, SCREEN_POLL)
        return status or Status("starting", detail=seen.hint)

    def _settled(self, session: Session, pane: Pane | None) -> Pane | None:
        """A dead pane once tmux knows its exit status (it marks the pane dead a moment before)."""

        def unsettled(found: Pane | None) -> bool:
            return found is not None and found.dead and found.dead_status is None

        def settled() -> bool:
            nonlocal pane
            pane = self.facts.live(session).pane
            return not unsettled(pane)

        if unsettled(pane):
            poll_until(settled, 1.0, INPUT_POLL, wait_first=True)
        return pane

    def _last_words(self, session: Session) -> str:
        text = self.tmux(session).scrollback(ids.tmux_name(session.id), lines=200)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        lines = [line for line in lines if not line.startswith("Pane is dead")]
        return " / ".join(lines[-3:])[:300]

    # -- send, wait, respond, interrupt --------------------------------------------------------------

    def send(
        self, session: Session, text: str, *, steer: bool = False, collaboration: str | None = None
    ) -> Session:
        if steer:
            raise UsageError(
                f"{session.id}: --steer is for Codex sessions (Claude folds a busy send in by itself)"
            )
        if collaboration is not None:
            raise UsageError(f"{session.id}: --plan and --no-plan are for Codex sessions (Plan mode)")
        return session.evolve(last_send=delivery.send(self.facts, session, text))

    def deliver(
        self, session: Session, text: str, *, urgent: bool = False, check: BeforeTyping | None = None
    ) -> bool:
        """Paste a message into the input box, but only while Claude is idle (urgent or not: a prompt
        typed during a turn would be folded into it at Claude's own pace)."""
        return delivery.deliver(self.facts, session, text, check)

    def wait(
        self, sessions: Sequence[Session], timeout: float | None, *, goal: bool = False
    ) -> list[WaitResult]:
        _no_goal(goal)
        return run_steps(waiting.turn_ends(self.facts, sessions, timeout))

    async def wait_async(
        self, sessions: Sequence[Session], timeout: float | None, *, goal: bool = False
    ) -> list[WaitResult]:
        """``wait`` for an asyncio loop (the gateway): many waits, no thread each."""
        _no_goal(goal)
        return await run_steps_async(waiting.turn_ends(self.facts, sessions, timeout))

    def respond(self, session: Session, answer: str) -> str:
        return delivery.respond(self.facts, session, answer)

    def interrupt(self, session: Session) -> bool:
        return delivery.interrupt(self.facts, session)

    # -- reading -------------------------------------------------------------------------------------

    def last_messages(self, session: Session, count: int) -> list[str]:
        path = self.transcript(session)
        messages = tail_messages(path, count)
        return [m.text for m in messages[-count:]] if count > 0 else []

    def log(self, session: Session) -> list[LogItem]:
        try:
            data = self.transcript(session).read_bytes()
        except FileNotFoundError:
            return []
        return tx.conversation(tx.parse_lines(data.split(b"\n")))

    def events(self, session: Session, start: Start, since: str | None) -> Rounds:
        from dev_sessions.claude import following

        return following.rounds(self.facts, session, start, since)

    def status(self, session: Session) -> Status:
        return self.facts.status(session)

    def statuses(self, sessions: Sequence[Session]) -> dict[str, Status]:
        """Status of many sessions from one tmux call, plus a screen capture only where Claude's own
        status file does not tell (first-run screens, other Claude versions)."""
        return self.facts.statuses(sessions)

    def screen(self, session: Session) -> str:
        """The pane's scrollback and screen, as a person attached to it would have seen them."""
        return self.tmux(session).scrollback(ids.tmux_name(session.id))

    def usage(self, sessions: Sequence[Session]) -> dict[str, Usage]:
        """From each transcript, read on from where the last read stopped (``usage.of_transcript``).
        A transcript that cannot be read leaves its session out (the library reports it unread)."""
        cache = self.settings.home / "cache" / "usage"
        found = {}
        for session in sessions:
            path = self.transcript(session)
            try:
                found[session.id] = of_transcript(path, cache)
            except OSError as err:
                log.info("%s: usage: cannot read %s: %s", session.id, path, err.strerror or err)
        return found

    def inspect(self, session: Session) -> dict[str, Any]:
        live = self.facts.live(session)
        status = self.facts.status(session, live)
        path = self.transcript(session)
        data = b""
        with contextlib.suppress(FileNotFoundError):
            data = path.read_bytes()
        pane = live.pane
        return {
            "tmux": {
                "session": ids.tmux_name(session.id),
                "socket": session.tmux_socket,
                "alive": pane is not None and not pane.dead,
                "pid": pane.pid if pane else None,
                "exitStatus": pane.dead_status if pane and pane.dead else None,
                "command": pane.command if pane else None,
                "attach": " ".join(
                    [
                        "tmux",
                        *(["-L", session.tmux_socket] if session.tmux_socket else []),
                        "attach",
                        "-t",
                        ids.tmux_name(session.id),
                    ]
                ),
            },
            "transcript": {
                "path": str(path),
                "exists": path.exists(),
                "bytes": len(data),
                "turns": tx.count_turn_ends(data),
            },
            "claudeState": self.facts.claude_state(session, pane.pid) if pane else None,
            "screen": live.screen.state,
            "status": status,
        }

    # -- the rest of the protocol --------------------------------------------------------------------

    def retire(self) -> None:
        """Nothing is shared between Claude sessions."""

    def idle_signals(self, session: Session) -> list[Path]:
        return [self.config_dir(session) / "sessions"]

    def goal(
        self, session: Session, action: str, objective: str | None, budget: int | None
    ) -> dict[str, Any] | None:
        raise UsageError(f"{session.id}: goals are a Codex feature")

    def kill(self, session: Session) -> None:
        tmux = self.tmux(session)
        name = ids.tmux_name(session.id)
        snap = tmux.snapshot(name)
        tmux.kill(name)
        if snap is not None and not snap[0].dead:
            _reap(snap[0].pid)
        wiring.forget(self.settings.home, session.id)

    def follow(self, session: Session) -> Session:
        """After ``/clear`` Claude writes under a new session id (its ``SessionStart`` hook says which):
        follow it, keeping the old ids. A send before the clear has no turn to follow any more."""
        if not session.delivery:
            return session
        raw = files.read_bytes(wiring.events_path(self.settings.home, session.id)) or b""
        if raw.count(b'"SessionStart"') < 2:  # only the start we made it with: nothing to parse
            return session
        from dev_sessions.claude.following import after_clear

        cleared = after_clear(session, list(ev.parse(raw)))
        if cleared is None:
            return session
        log.info("%s: Claude now writes session %s", session.id, cleared.internal_id)
        return cleared


def _reap(pid: int) -> None:
    """Make sure a killed session's agent process is gone: SIGHUP from tmux, then TERM, then KILL."""
    with Watcher() as watcher:
        watcher.watch_pid(pid)
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    return
            if poll_until(lambda: watcher.exited(pid), 2.0, 0.2, sleep=watcher.wait):
                return


def _no_goal(goal: bool) -> None:
    if goal:
        raise UsageError("wait --goal is for Codex sessions")
