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

Text goes into the input box through Claude's external-editor key (see :mod:`.wiring`), never as a
paste, which Claude rewrites; sessions started by an older dev-sessions still get a paste.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dev_sessions import files, ids
from dev_sessions.backend import Dialog, LogItem, Started, Status, WaitResult, choose
from dev_sessions.claude import events as ev
from dev_sessions.claude import screen as screens
from dev_sessions.claude import transcript as tx
from dev_sessions.claude import wiring
from dev_sessions.claude.status import exit_detail, status_from
from dev_sessions.config import Settings, claude_config_dir
from dev_sessions.errors import (
    DialogOpen,
    NoDialog,
    NotReady,
    SessionExited,
    StartFailed,
    ToolMissing,
    UsageError,
)
from dev_sessions.lock import FileLock
from dev_sessions.poll import poll_until
from dev_sessions.store import LastSend, Session, now_iso, parse_iso
from dev_sessions.terminal import neutralise
from dev_sessions.tmux import Pane, Tmux
from dev_sessions.watch import Tail, Watcher, line_aligned_size, run_steps, run_steps_async

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
_SLUG = re.compile(r"[^a-zA-Z0-9]")
_SLUG_LIMIT = 200
_SCREEN_POLL = 0.05
_INPUT_POLL = 0.005
_PASTE_SHOWS = 5.0
_ENTER_TAKEN = 1.0
_SETTLE = 3.0
_ABANDON_GRACE = 0.5
_RENDER_GRACE = 1.0


def project_slug(cwd: str) -> str:
    return _SLUG.sub("-", cwd)


def transcript_path(config_dir: Path, cwd: str, uuid: str) -> Path:
    """Where Claude writes the transcript of session ``uuid`` started in ``cwd``.

    Claude cuts slugs over 200 characters and adds a hash of its own; for those we look the file up
    by its (unique) uuid, and fall back to the cut slug while it does not exist yet.
    """
    slug = project_slug(cwd)
    projects = config_dir / "projects"
    expected = projects / slug[:_SLUG_LIMIT] / f"{uuid}.jsonl"
    if expected.exists():
        return expected
    # Cut slugs get a hash suffix, and Claude in a container sees another cwd: the uuid is unique.
    for found in projects.glob(f"*/{uuid}.jsonl"):
        return found
    return expected


# What a paste changes (docs/claude-code.md): 2.1.332 wraps one of over 800 characters or with more
# newlines than the pane's rows allow (none on a small pane) in <pasted_content> tags, and so it does
# one mentioning "ultraplan"; every version turns a tab into spaces, a leading "!" into shell mode, a
# path to an image into an image, and applies NFC (2.1.197). A leading "#", "&" or "@" may switch
# modes too. Anything else, on one line, arrives exactly.
_PASTE_LIMIT = 800
_MODE_CHARS = "!#&@"
_IMAGE = re.compile(r"\.(png|jpe?g|gif|webp|bmp|svg|heic|tiff?)\b", re.IGNORECASE)


def paste_is_exact(text: str) -> bool:
    """Whether a bracketed paste delivers ``text`` exactly on every Claude Code version we know."""
    import unicodedata

    first = text.lstrip()[:1]
    return (
        len(text) <= _PASTE_LIMIT
        and "\n" not in text
        and "\t" not in text
        and first not in _MODE_CHARS
        and "ultraplan" not in text.lower()
        and not _IMAGE.search(text)
        and unicodedata.is_normalized("NFC", text)
    )


def agent_env(caller: Mapping[str, str], session_id: str) -> dict[str, str]:
    env = {k: v for k, v in caller.items() if k not in DROPPED_ENV}
    env["DEV_SESSIONS_ID"] = session_id
    env["IS_SANDBOX"] = "1"
    return env


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class _Live:
    """A session as seen right now: its pane and what the screen says."""

    pane: Pane | None
    screen: screens.Screen


class ClaudeBackend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tmux: dict[str | None, Tmux] = {}

    def tmux(self, session: Session) -> Tmux:
        socket = session.tmux_socket
        if socket not in self._tmux:
            self._tmux[socket] = Tmux(socket)
        return self._tmux[socket]

    # -- paths and facts -----------------------------------------------------------------------------

    def config_dir(self, session: Session) -> Path:
        if session.claude_config_dir:
            return Path(session.claude_config_dir)
        return claude_config_dir(os.environ)

    def transcript(self, session: Session) -> Path:
        return transcript_path(self.config_dir(session), session.path, session.internal_id)

    def _claude_state(self, session: Session, pid: int) -> dict[str, Any] | None:
        """Claude's own status file for the process, if this Claude version writes one."""
        state = _read_json(self.config_dir(session) / "sessions" / f"{pid}.json")
        if state is None or state.get("sessionId") not in (None, session.internal_id):
            return None
        return state

    def _live(self, session: Session) -> _Live:
        snap = self.tmux(session).snapshot(ids.tmux_name(session.id))
        if snap is None:
            return _Live(None, screens.Screen("starting"))
        pane, text = snap
        return _Live(pane, screens.classify(text))

    def events_since(self, session: Session, offset: int = 0) -> tuple[list[ev.Event], int]:
        """The hook events of a session from ``offset`` on, and the offset after them."""
        path = wiring.events_path(self.settings.home, session.id)
        try:
            fd = files.open_private(path, os.O_RDONLY)
        except FileNotFoundError:
            return [], offset
        try:
            size = os.fstat(fd).st_size
            data = os.pread(fd, max(0, size - offset), offset) if size > offset else b""
        finally:
            os.close(fd)
        return list(ev.parse(data)), offset + len(data)

    def _dialog_shown(self, session: Session) -> Dialog | None:
        """The dialog on the screen, given a moment to draw: Claude says it waits a little before the
        dialog shows. None when the screen shows none that can be read (a layout never seen)."""
        return poll_until(
            lambda: self._live(session).screen.dialog, _RENDER_GRACE, _SCREEN_POLL / 2, wait_first=True
        )

    def _status_of(self, session: Session, live: _Live) -> Status:
        """Read what :func:`.status.status_from` needs, and no more: the hooks only while Claude's
        state file says it waits, the screen again only for a dialog the hooks announce but the
        screen did not show yet."""
        pane, screen = live.pane, live.screen
        state = announced = shown = None
        if pane is not None and not pane.dead:
            state = self._claude_state(session, pane.pid)
            if state and state.get("status") == "waiting":
                mark = session.last_send or {}
                announced = ev.fold(self.events_since(session, int(mark.get("events", 0)))[0])
                if announced.dialog is not None and screen.dialog is None:
                    shown = self._dialog_shown(session)
        return status_from(pane, state, screen, announced, shown)

    # -- create --------------------------------------------------------------------------------------

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
            live = self._live(session)
            seen = live.screen
            if live.pane is None or live.pane.dead:
                pane = self._settled(session, live.pane)
                last = self._last_words(session)
                self.tmux(session).kill(ids.tmux_name(session.id))
                raise StartFailed(agent="claude", detail=exit_detail(pane) + (f": {last}" if last else ""))
            if live.screen.state == "dialog":
                return Status("waiting_for_input", dialog=live.screen.dialog)
            if live.screen.state in ("ready", "busy"):
                return self._status_of(session, live)
            return None

        status = poll_until(came_up, self.settings.ready_timeout, _SCREEN_POLL)
        return status or Status("starting", detail=seen.hint)

    def _settled(self, session: Session, pane: Pane | None) -> Pane | None:
        """A dead pane once tmux knows its exit status (it marks the pane dead a moment before)."""

        def unsettled(found: Pane | None) -> bool:
            return found is not None and found.dead and found.dead_status is None

        def settled() -> bool:
            nonlocal pane
            pane = self._live(session).pane
            return not unsettled(pane)

        if unsettled(pane):
            poll_until(settled, 1.0, _INPUT_POLL, wait_first=True)
        return pane

    def _last_words(self, session: Session) -> str:
        text = self.tmux(session).scrollback(ids.tmux_name(session.id), lines=200)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        lines = [line for line in lines if not line.startswith("Pane is dead")]
        return " / ".join(lines[-3:])[:300]

    # -- send ----------------------------------------------------------------------------------------

    def send(
        self, session: Session, text: str, *, steer: bool = False, collaboration: str | None = None
    ) -> Session:
        if steer:
            raise UsageError(
                f"{session.id}: --steer is for Codex sessions (Claude folds a busy send in by itself)"
            )
        if collaboration is not None:
            raise UsageError(f"{session.id}: --plan and --no-plan are for Codex sessions (Plan mode)")
        with self._input_lock(session):
            live = self._ready_for_input(session)
            path = self.transcript(session)
            queued = live.screen.state == "busy"
            ahead = 0
            if queued:
                with contextlib.suppress(FileNotFoundError):
                    ahead = tx.queue_depth(path.read_bytes())
            events = self.events_since(session, 0)[1] if session.delivery else 0
            mark = LastSend(
                offset=line_aligned_size(path), queued=queued, ahead=ahead, at=now_iso(), events=events
            )
            self._deliver(session, text, before=live.screen.prompt)
        return session.evolve(last_send=mark)

    def _deliver(self, session: Session, text: str, before: str | None) -> None:
        """Put the text into the input box, see it land, press Enter once, and see the box take it.

        The text goes in through Claude's external-editor key (:mod:`.wiring`): Claude takes it as typed
        text, exactly (a paste would be rewritten). A text that a paste delivers exactly on every version
        (:func:`paste_is_exact`) is pasted instead, which is quicker. Enter goes on its own once the text
        shows, and is pressed a second time only when the screen still shows our text sitting in the
        input box: never when anything else, such as a dialog, has come up.
        """
        tmux, name = self.tmux(session), ids.tmux_name(session.id)
        clean = neutralise(text)
        editor = session.delivery == "editor" and not paste_is_exact(clean)
        if editor:
            self._through_editor(session, clean)
        else:
            tmux.paste(name, clean.encode("utf-8"), enter=False)
        pasted = self._poll_screen(
            session,
            lambda sc: sc.prompt is not None and sc.prompt != before,
            _PASTE_SHOWS,
            through_other_screens=editor,
        )
        if pasted is None or pasted.prompt is None:
            raise NotReady(
                session_id=session.id, waited=_PASTE_SHOWS, screen_hint="the text never showed in the box"
            )
        for attempt in range(2):
            tmux.send_keys(name, ["Enter"])
            taken = self._poll_screen(session, lambda sc: sc.prompt != pasted.prompt, _ENTER_TAKEN)
            if taken is not None:
                return
            log.info("%s: Enter not taken (attempt %d)", session.id, attempt + 1)
        raise NotReady(
            session_id=session.id, waited=2 * _ENTER_TAKEN, screen_hint="the prompt is still in the input box"
        )

    def _through_editor(self, session: Session, text: str) -> None:
        """Leave the text in the spool, press the editor key, and see our editor take the spool."""
        spool = wiring.spool_path(self.settings.home, session.id)
        files.write_atomic(spool, text.encode("utf-8"))
        self.tmux(session).send_keys(ids.tmux_name(session.id), ["C-g"])
        if not poll_until(lambda: not spool.exists(), _PASTE_SHOWS, _INPUT_POLL):
            spool.unlink(missing_ok=True)
            raise NotReady(
                session_id=session.id,
                waited=_PASTE_SHOWS,
                screen_hint="Claude did not run its external editor (ctrl+g) to take the text",
            )

    def _poll_screen(
        self,
        session: Session,
        done: Callable[[screens.Screen], bool],
        timeout: float,
        *,
        through_other_screens: bool = False,
    ) -> screens.Screen | None:
        """The first screen for which ``done`` holds, or that is not the input box any more (unless
        ``through_other_screens``: the editor key shows another screen a moment before the box)."""

        def landed() -> screens.Screen | None:
            live = self._live(session)
            if live.pane is None or live.pane.dead:
                raise SessionExited(session_id=session.id, detail=exit_detail(live.pane))
            if done(live.screen) or (live.screen.prompt is None and not through_other_screens):
                return live.screen
            return None

        return poll_until(landed, timeout, _INPUT_POLL)

    def _ready_for_input(self, session: Session) -> _Live:
        seen = screens.Screen("starting")

        def ready() -> _Live | None:
            nonlocal seen
            live = self._live(session)
            seen = live.screen
            if live.pane is None or live.pane.dead:
                raise SessionExited(session_id=session.id, detail=exit_detail(live.pane))
            if live.screen.state == "dialog" and live.screen.dialog is not None:
                dialog = live.screen.dialog
                raise DialogOpen(
                    session_id=session.id, question=dialog.question, options=[str(o) for o in dialog.options]
                )
            return live if live.screen.state in ("ready", "busy") else None

        live = poll_until(ready, self.settings.ready_timeout, _SCREEN_POLL)
        if live is None:
            raise NotReady(session_id=session.id, waited=self.settings.ready_timeout, screen_hint=seen.hint)
        return live

    # -- wait ----------------------------------------------------------------------------------------

    def wait(
        self, sessions: Sequence[Session], timeout: float | None, *, goal: bool = False
    ) -> list[WaitResult]:
        return run_steps(self._wait_steps(sessions, timeout, goal))

    async def wait_async(
        self, sessions: Sequence[Session], timeout: float | None, *, goal: bool = False
    ) -> list[WaitResult]:
        """``wait`` for an asyncio loop (the gateway): many waits, no thread each."""
        return await run_steps_async(self._wait_steps(sessions, timeout, goal))

    def _wait_steps(
        self, sessions: Sequence[Session], timeout: float | None, goal: bool
    ) -> Generator[tuple[Watcher, float], None, list[WaitResult]]:
        """The waiting, as rounds: each round looks at every session and yields how long to sleep;
        the caller sleeps (blocking or asynchronously) and resumes it."""
        if goal:
            raise UsageError("wait --goal is for Codex sessions")
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        results: dict[str, WaitResult] = {}
        with Watcher() as watcher:
            waiters: dict[str, _TurnWaiter] = {}
            for session in sessions:
                waiter = _TurnWaiter(self, session, watcher, started)
                result = waiter.begin()
                if result is None:
                    waiters[session.id] = waiter
                else:
                    results[session.id] = result
            announced = False
            try:
                while waiters:
                    for sid, waiter in list(waiters.items()):
                        result = waiter.check()
                        if result is not None:
                            results[sid] = result
                            del waiters[sid]
                    if not waiters:
                        break
                    remaining = 2.0 if deadline is None else deadline - time.monotonic()
                    soon = [w.recheck_in for w in waiters.values() if w.recheck_in is not None]
                    if remaining <= 0:
                        elapsed = time.monotonic() - started
                        for sid in waiters:
                            results[sid] = WaitResult(sid, "timeout", elapsed)
                        break
                    if not announced:
                        # Said once, as the wait starts to block: tests wait for it before they act.
                        for sid in waiters:
                            log.debug("%s: waiting for the turn to end", sid)
                        announced = True
                    yield watcher, min([remaining, 2.0, *soon])
            finally:
                for waiter in waiters.values():
                    waiter.close()
        return [results[s.id] for s in sessions]

    # -- reading -------------------------------------------------------------------------------------

    def last_messages(self, session: Session, count: int) -> list[str]:
        path = self.transcript(session)
        messages = _tail_messages(path, count)
        return [m.text for m in messages[-count:]] if count > 0 else []

    def log(self, session: Session) -> list[LogItem]:
        try:
            data = self.transcript(session).read_bytes()
        except FileNotFoundError:
            return []
        return tx.conversation(tx.parse_lines(data.split(b"\n")))

    def status(self, session: Session) -> Status:
        return self._status_of(session, self._live(session))

    def statuses(self, sessions: Sequence[Session]) -> dict[str, Status]:
        """Status of many sessions from one tmux call, plus a screen capture only where Claude's own
        status file does not tell (first-run screens, other Claude versions)."""
        found: dict[str, Status] = {}
        by_socket: dict[str | None, dict[str, Pane]] = {}
        for session in sessions:
            socket = session.tmux_socket
            if socket not in by_socket:
                by_socket[socket] = self.tmux(session).panes()
            pane = by_socket[socket].get(ids.tmux_name(session.id))
            state = self._claude_state(session, pane.pid) if pane is not None and not pane.dead else None
            quick = status_from(pane, state, screen=None)
            # list has never said which signal decided (status does): kept so.
            found[session.id] = replace(quick, source="") if quick else self.status(session)
        return found

    def screen(self, session: Session) -> str:
        """The pane's scrollback and screen, as a person attached to it would have seen them."""
        return self.tmux(session).scrollback(ids.tmux_name(session.id))

    def inspect(self, session: Session) -> dict[str, Any]:
        live = self._live(session)
        status = self._status_of(session, live)
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
            "claudeState": self._claude_state(session, pane.pid) if pane else None,
            "screen": live.screen.state,
            "status": status,
        }

    # -- actions -------------------------------------------------------------------------------------

    def interrupt(self, session: Session) -> bool:
        live = self._live(session)
        status = self._status_of(session, live)
        if status.state == "exited":
            raise SessionExited(session_id=session.id, detail=status.detail)
        if status.state not in ("working", "waiting_for_input"):
            return False
        name = ids.tmux_name(session.id)
        self.tmux(session).send_keys(name, ["Escape"])
        after = live

        def stopped() -> bool:
            nonlocal after
            after = self._live(session)
            return self._status_of(session, after).state != "working"

        poll_until(stopped, _SETTLE, _SCREEN_POLL)
        # Stopped before any reply, Claude puts the prompt (and any queued ones) back into its input box,
        # where the next send would be appended to it: clear it. One Ctrl-C clears a non-empty box.
        restored = after.screen.prompt
        if after.screen.state == "ready" and restored not in (None, "❯", live.screen.prompt):
            self.tmux(session).send_keys(name, ["C-c"])
            self._poll_screen(session, lambda sc: sc.prompt == "❯", _ENTER_TAKEN)
        return True

    def respond(self, session: Session, answer: str) -> str:
        live = self._live(session)
        status = self._status_of(session, live)
        dialog = status.dialog
        if dialog is None:
            raise NoDialog(session_id=session.id, status=status.state)
        option, typed = choose(session.id, dialog, answer)
        name = ids.tmux_name(session.id)
        tmux = self.tmux(session)
        if option.keys:  # an unnumbered list (the arrows, then Enter) or a dialog of key hints
            tmux.send_keys(name, list(option.keys))
        else:
            tmux.send_keys(name, [str(option.number)], literal=True)
        if typed is not None:
            # The digit opens the text field; the text goes in as a paste and Enter follows on its
            # own once the text shows (see _deliver for why).
            clean = neutralise(typed)
            tmux.paste(name, clean.encode(), enter=False)
            probe = next((line.strip() for line in clean.splitlines() if line.strip()), "")[:40]

            def shows() -> bool:
                snap = tmux.snapshot(name)
                return snap is None or probe in snap[1].replace("\xa0", " ")

            if probe:
                poll_until(shows, _PASTE_SHOWS, _INPUT_POLL)
            tmux.send_keys(name, ["Enter"])
        # Return once the answer is taken: the dialog gone from the screen and Claude's own state no
        # longer "waiting" (it lags the screen a little), so that a wait right after this one does
        # not see the answered dialog again.
        shown = live.screen.dialog

        def taken() -> bool:
            after = self._live(session)
            state = self._claude_state(session, after.pane.pid) if after.pane else None
            still_waiting = state is not None and state.get("status") == "waiting"
            return (shown is None or after.screen.dialog != shown) and not still_waiting

        poll_until(taken, _SETTLE, _SCREEN_POLL)
        return f"{option.number}. {typed if typed is not None else option.label}"

    def retire(self) -> None:
        """Nothing is shared between Claude sessions."""

    def deliver(self, session: Session, text: str, *, urgent: bool = False) -> bool:
        """Paste a message into the input box, but only while Claude is idle (urgent or not: a prompt
        typed during a turn would be folded into it at Claude's own pace)."""
        with self._input_lock(session):
            live = self._live(session)
            status = self._status_of(session, live)
            if status.state == "exited":
                raise SessionExited(session_id=session.id, detail=status.detail)
            if status.state != "idle" or live.screen.state != "ready":
                return False
            self._deliver(session, text, before=live.screen.prompt)
            return True

    def idle_signals(self, session: Session) -> list[Path]:
        return [self.config_dir(session) / "sessions"]

    def _input_lock(self, session: Session) -> FileLock:
        """One writer at a time into a session's input box (a send and a message delivery)."""
        return FileLock(
            self.settings.home / "locks" / f"{session.id}.lock", timeout=self.settings.ready_timeout + 10
        )

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
        started = ev.last_start(list(ev.parse(raw)))
        if started is None or started.session_id in (session.internal_id, *session.previous_ids):
            return session
        log.info("%s: Claude now writes session %s (%s)", session.id, started.session_id, started.source)
        return session.evolve(
            internal_id=started.session_id,
            previous_ids=(*session.previous_ids, session.internal_id),
            last_send=None,
        )


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


def _tail_messages(path: Path, count: int) -> list[tx.AssistantMessage]:
    """The last ``count`` assistant messages, reading the transcript from its end as far as needed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    try:
        size = os.fstat(fd).st_size
        window = 1 << 18
        while True:
            start = max(0, size - window)
            data = os.pread(fd, size - start, start)
            lines = data.split(b"\n")
            if start > 0:
                lines = lines[1:]  # the first line may be cut
            messages = tx.assistant_messages(tx.parse_lines(lines))
            # One more message than asked for proves the earliest wanted one is complete.
            if start == 0 or len(messages) > count:
                return messages
            window *= 4
    finally:
        os.close(fd)


class _TurnWaiter:
    """Follows one session until the turn of its last send ends, it needs an answer, or it dies."""

    def __init__(self, backend: ClaudeBackend, session: Session, watcher: Watcher, started: float) -> None:
        self.backend = backend
        self.session = session
        self.watcher = watcher
        self.started = started
        self.pid = 0
        self.tail: Tail | None = None
        self.tracker: tx.TurnTracker | None = None
        self.state_path: Path | None = None
        self.state_mtime: float | None = None
        self.sent_ms = 0.0
        self.idle_since: float | None = None
        self.events_offset: int | None = None

    def _result(self, outcome: Any, **extra: Any) -> WaitResult:
        return WaitResult(self.session.id, outcome, time.monotonic() - self.started, **extra)

    def begin(self) -> WaitResult | None:
        backend, session = self.backend, self.session
        live = backend._live(session)
        if live.pane is None or live.pane.dead:
            return self._result("exited", error=exit_detail(live.pane))
        self.pid = live.pane.pid
        self.watcher.watch_pid(self.pid)
        path = backend.transcript(session)
        mark = session.last_send
        if mark is None:
            # Nothing sent through us: follow a turn someone started by hand, if one runs.
            status = backend._status_of(session, live)
            if status.state == "waiting_for_input":
                return self._result("waiting_for_input", dialog=status.dialog, error=status.detail or None)
            if status.state != "working":
                return self._result("idle")
            mark = LastSend(offset=line_aligned_size(path), queued=False, ahead=0, at=now_iso())
        sent = parse_iso(mark.get("at", ""))
        self.sent_ms = sent.timestamp() * 1000 if sent else 0.0
        self.tail = Tail(path, int(mark.get("offset", 0)))
        self.tracker = tx.TurnTracker(queued=bool(mark.get("queued")), ahead=int(mark.get("ahead", 0)))
        self.watcher.watch_dir(path.parent)
        if session.delivery:
            self.events_offset = int(mark.get("events", backend.events_since(session, 0)[1]))
            self.watcher.watch_dir(wiring.events_path(backend.settings.home, session.id).parent)
        sessions_dir = backend.config_dir(session) / "sessions"
        self.watcher.watch_dir(sessions_dir)
        self.state_path = sessions_dir / f"{self.pid}.json"
        return None

    @property
    def recheck_in(self) -> float | None:
        """How soon to look again without any event (while an idle agent is given its grace)."""
        return None if self.idle_since is None else _ABANDON_GRACE / 2

    def check(self) -> WaitResult | None:
        assert self.tail is not None and self.tracker is not None
        if not self.tail.path.exists():
            # Claude creates the transcript (and maybe its directory) at the first prompt.
            self.tail.path = self.backend.transcript(self.session)
            self.watcher.watch_dir(self.tail.path.parent)
        result = self.tracker.feed(tx.parse_lines(self.tail.read_lines()))
        if result is not None:
            return self._result(result.outcome, error=result.error)
        announced = self._check_events()
        if announced is not None:
            return announced
        if self.watcher.exited(self.pid):
            result = self.tracker.feed(tx.parse_lines(self.tail.read_lines()))
            if result is not None:
                return self._result(result.outcome, error=result.error)
            live = self.backend._live(self.session)
            return self._result("exited", error=exit_detail(live.pane))
        return self._check_state()

    def _check_events(self) -> WaitResult | None:
        """A failed turn, as the ``StopFailure`` hook announces it. (A dialog the hooks announce is
        taken up once Claude's state file says it waits: an answered one must not count again.)"""
        if self.events_offset is None:
            return None
        found, self.events_offset = self.backend.events_since(self.session, self.events_offset)
        failure = ev.fold(found).failure if found else None
        if failure is not None:
            return self._result("failed", error=failure)
        return None

    def _check_state(self) -> WaitResult | None:
        """What Claude's own status file adds: a question the turn waits on, or a turn that was dropped.

        An interrupt before any reply arrived writes nothing to the transcript (Claude puts the prompt
        back into its input box), so an agent that went idle after our send, and stays idle with no turn
        end for a moment, has dropped the turn.
        """
        assert self.state_path is not None
        try:
            mtime = self.state_path.stat().st_mtime
        except FileNotFoundError:
            return None
        if mtime != self.state_mtime:
            self.state_mtime = mtime
            state = self.backend._claude_state(self.session, self.pid) or {}
            own = state.get("status")
            if own == "waiting":
                status = self.backend.status(self.session)
                if status.state == "waiting_for_input":
                    return self._result(
                        "waiting_for_input", dialog=status.dialog, error=status.detail or None
                    )
            changed = float(state.get("statusUpdatedAt") or state.get("updatedAt") or 0)
            if own == "idle" and changed >= self.sent_ms:
                self.idle_since = self.idle_since or time.monotonic()
            else:
                self.idle_since = None
        if self.idle_since is not None and time.monotonic() - self.idle_since >= _ABANDON_GRACE:
            return self._result(
                "interrupted", error="stopped before any reply; the prompt went back to the input box"
            )
        return None

    def close(self) -> None:
        if self.tail is not None:
            self.tail.close()
