"""The capabilities a selftest checks, each by running the ``dev-sessions`` command line in the sandbox.

:class:`Checklist` runs the checks in order (``create``, ``send``, ``wait``, ``last-message``,
``status``, ``question``, ``permission``, ``interrupt``, ``kill``), each one command line after another
in a subprocess of :class:`~dev_sessions.selftest.sandbox.Sandbox`, against its fake model; what a user
runs is what is checked. The same checks serve both agents; where they differ (Codex asks questions
only in Plan mode, asks before a command under another approval policy, and runs in its app-server
rather than tmux) the check says so. A check that fails says why in one line and never stops the
others, except that nothing runs without ``create``.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dev_sessions.errors import DevSessionsError
from dev_sessions.poll import poll_until
from dev_sessions.selftest.report import Check
from dev_sessions.selftest.sandbox import STEP_S, TURN_S, Sandbox
from dev_sessions.tmux import Tmux

# Over 800 characters (where Claude Code 2.1.332 starts wrapping a paste) on 24 lines (more than its
# input box shows), with tabs, unicode, shell and tmux syntax, a blank line and indentation; no trailing
# newline, and no control characters but tab and line feed (README: those arrive changed, on purpose).
EXACT = "\n".join(
    [
        "dev-sessions selftest: this text must come back exactly as it was sent.",
        "Tabs:\tone\ttwo\t\tthree\t",
        "Unicode: ünïcödé ✓ 日本語 한국어 🚀 — “double” ‘single’ ½ € ß",
        "Shell: $HOME ${PATH} $(date) `uname` \\backslash\\ ; | & > < * ? ~ # 'q' \"qq\"",
        "tmux key names: C-c C-d Enter Escape M-x BSpace Tab",
        "",
        "    indented after a blank line",
        *(f"line {n:02d}:\t{'the quick brown fox jumps over the lazy dog '[: 20 + n]}" for n in range(16)),
        "the last line, with no line break after it",
    ]
)


class _Failed(Exception):
    """A capability check failed; the message is the one-line reason shown after ``FAILED:``."""


@dataclass
class _Outcome:
    code: int
    stdout: str
    stderr: str


class Checklist:
    """The capability checks, in order, each a method that drives ``dev-sessions`` in ``sandbox``."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.sessions: list[str] = []
        self.main = ""

    # -- driving dev-sessions -----------------------------------------------------------------------

    def run(self, *args: str, stdin: str | None = None, timeout: float = TURN_S + 30) -> _Outcome:
        """One ``dev-sessions`` command in a subprocess, in the sandbox."""
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "dev_sessions", *args],
                input=(stdin or "").encode(), capture_output=True, cwd=self.sandbox.work,
                env=self.sandbox.env, timeout=timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise _Failed(f"`{_shown(args)}` did not return in {timeout:g} s") from None
        return _Outcome(
            proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        done = self.run(*args, stdin=stdin)
        if done.code != 0:
            raise _Failed(f"`{_shown(args)}` exited {done.code}: {_said(done.stderr)}")
        return done.stdout

    def create(self, *args: str) -> str:
        record = json.loads(self.ok("create", "--cli", self.sandbox.agent, *args, "--json"))
        sid = str(record["championId"])
        self.sessions.append(sid)
        if record.get("ready") != "idle":
            dialog = record.get("dialog") or {}
            question = f": {dialog['question']!r}" if dialog.get("question") else ""
            raise _Failed(f"{sid} started, but is {record.get('ready')}{question}")
        return sid

    def status(self, sid: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.ok("status", sid, "--json"))
        return found

    def expect_status(self, sid: str, wanted: str, when: str) -> None:
        found = self.status(sid)
        if found["status"] != wanted:
            detail = f" ({found['detail']})" if found.get("detail") else ""
            raise _Failed(f"{when}: status {found['status']}{detail}, not {wanted}")

    def wait(self, sid: str, outcome: str = "completed") -> None:
        done = self.run("wait", sid, "--timeout", f"{TURN_S:g}")
        if done.code != 0 or not done.stdout.startswith(f"{sid}: {outcome}"):
            said = done.stdout.strip() or _said(done.stderr)
            raise _Failed(f"`dev-sessions wait` exited {done.code}, expected {outcome}: {said}")

    def last_message(self, sid: str) -> str:
        messages = json.loads(self.ok("last-message", sid, "--json"))
        if not messages:
            raise _Failed("no reply")
        return str(messages[-1])

    def held(self, name: str) -> None:
        """Until the fake model holds an answer under ``name`` (the turn runs until it is released)."""
        if not poll_until(lambda: self.sandbox.model.holding(name) > 0, STEP_S):
            raise _Failed(f"the model was not asked within {STEP_S:g} s")

    # -- the checks -----------------------------------------------------------------------------------

    def checks(self) -> Iterator[Check]:
        """Run the checks in order; a check that cannot run without an earlier one says so."""
        steps: list[tuple[str, Callable[[], None]]] = [
            ("create", self.check_create),
            ("send", self.check_send),
            ("wait", self.check_wait),
            ("last-message", self.check_last_message),
            ("status", self.check_status),
            ("question", self.check_question),
            ("permission", self.check_permission),
            ("interrupt", self.check_interrupt),
            ("kill", self.check_kill),
        ]
        created = False
        for name, step in steps:
            if name != "create" and not created:
                yield Check(name, "failed", "not run: create failed")
                continue
            try:
                step()
            except _Failed as err:
                yield Check(name, "failed", str(err))
            except (DevSessionsError, OSError, ValueError, KeyError, TypeError) as err:
                # Output we could not read (not JSON, a field missing) is a failure of that check too.
                yield Check(name, "failed", f"{type(err).__name__}: {err}")
            else:
                created = created or name == "create"
                yield Check(name, "ok")

    def check_create(self) -> None:
        self.main = self.create()

    def check_send(self) -> None:
        said = self.ok("send", self.main, "--file", "-", stdin=EXACT).strip()
        if said != f"{self.main}: sent":
            raise _Failed(f"`dev-sessions send` said {said!r}")
        if not poll_until(lambda: EXACT in self.sandbox.model.prompts(), STEP_S):
            prompts = self.sandbox.model.prompts()
            if not prompts:
                raise _Failed(f"nothing reached the model within {STEP_S:g} s")
            raise _Failed(f"the model got other text: {_difference(EXACT, prompts[-1])}")

    def check_wait(self) -> None:
        self.wait(self.main)

    def check_last_message(self) -> None:
        reply = self.last_message(self.main)
        if reply != EXACT:
            raise _Failed(f"the reply is not the text sent: {_difference(EXACT, reply)}")

    def check_status(self) -> None:
        self.expect_status(self.main, "idle", "after a turn")
        self.ok("send", self.main, "a turn that runs until released <<hold:status>>")
        self.held("status")
        self.expect_status(self.main, "working", "during a turn")
        self.sandbox.model.release("status")
        self.wait(self.main)
        self.expect_status(self.main, "idle", "after the turn")

    def check_question(self) -> None:
        # Codex asks questions (request_user_input) only in Plan mode.
        plan = ["--plan"] if self.sandbox.agent == "codex" else []
        self.ok("send", self.main, *plan, "pick a colour <<ask>>")
        done = self.run("wait", self.main, "--timeout", f"{TURN_S:g}")
        if done.code != 1 or "Which colour?" not in done.stderr:
            raise _Failed(
                f"`dev-sessions wait` did not show the question: {_said(done.stderr or done.stdout)}"
            )
        dialog = self.status(self.main).get("dialog") or {}
        labels = [o.get("label") for o in dialog.get("options", [])]
        if dialog.get("question") != "Which colour?" or "Blue" not in labels:
            raise _Failed(f"status shows {dialog.get('question')!r} with options {labels}")
        self.ok("respond", self.main, "Blue")
        self.wait(self.main)
        reply = self.last_message(self.main)
        if not reply.startswith("ANSWER: ") or "Blue" not in reply:
            raise _Failed(f"the model did not get the answer Blue: {reply[:120]!r}")

    def check_permission(self) -> None:
        # Claude asks before any Bash command with permission prompts on; Codex asks before running a
        # command outside its trusted set with approval policy untrusted (on-request lets it run
        # commands in its workspace sandbox without asking).
        approvals = "on-request" if self.sandbox.agent == "claude" else "untrusted"
        sid = self.create("--approvals", approvals)
        made = self.sandbox.work / "permitted"
        self.ok("send", sid, f"run a command <<bash:touch {shlex.quote(str(made))}>>")
        done = self.run("wait", sid, "--timeout", f"{TURN_S:g}")
        if done.code != 1 or "waiting for input" not in done.stderr:
            raise _Failed(
                f"no permission prompt: `dev-sessions wait` said {_said(done.stderr or done.stdout)}"
            )
        if made.exists():
            raise _Failed("the command ran before it was allowed")
        self.expect_status(sid, "waiting_for_input", "on the prompt")
        self.ok("respond", sid, "yes")
        self.wait(sid)
        if not made.exists():
            raise _Failed("allowed, but the command did not run")
        reply = self.last_message(sid)
        if not reply.startswith("OUTPUT:"):
            raise _Failed(f"the model did not get the command's output: {reply[:120]!r}")

    def check_interrupt(self) -> None:
        self.ok("send", self.main, "a turn to interrupt <<hold:interrupt>>")
        self.held("interrupt")
        said = self.ok("interrupt", self.main).strip()
        if said != f"{self.main}: interrupted":
            raise _Failed(f"`dev-sessions interrupt` said {said!r}")
        self.wait(self.main, "interrupted")
        self.sandbox.model.release("interrupt")
        self.expect_status(self.main, "idle", "after the interrupt")
        reply = self.ok("ask", self.main, "after the interrupt", "--timeout", f"{TURN_S:g}")
        if reply != "after the interrupt\n":
            raise _Failed(f"the next prompt came back as {reply!r}")

    def check_kill(self) -> None:
        from dev_sessions.codex.daemon import process_start

        key = "tmux" if self.sandbox.agent == "claude" else "appServer"
        pids = {int(json.loads(self.ok("inspect", sid))[key]["pid"]) for sid in self.sessions}
        said = self.ok("kill", *self.sessions).splitlines()
        if said != [f"{sid}: killed" for sid in self.sessions]:
            raise _Failed(f"`dev-sessions kill` said {' / '.join(said)!r}")
        killed, self.sessions = self.sessions, []
        if json.loads(self.ok("list", "--json")):
            raise _Failed("sessions are still listed after kill")
        what = "claude" if self.sandbox.agent == "claude" else "the codex app-server"
        if not poll_until(lambda: all(process_start(pid) is None for pid in pids), STEP_S):
            raise _Failed(f"{what} still runs after kill (pid {', '.join(map(str, sorted(pids)))})")
        if self.sandbox.agent == "claude":
            tmux = Tmux(self.sandbox.env["DEV_SESSIONS_TMUX_SOCKET"], environ=self.sandbox.env)
            alive = [sid for sid in killed if tmux.exists(f"dev-{sid}")]
            if alive:
                raise _Failed(f"tmux sessions left: {', '.join(alive)}")


# -- helpers ------------------------------------------------------------------------------------------


def _shown(args: tuple[str, ...]) -> str:
    """A command as a reason shows it, its text cut out."""
    return " ".join(["dev-sessions", *(a if len(a) <= 40 and "\n" not in a else "TEXT" for a in args)])


def _said(stderr: str) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    text = " / ".join(lines[:4]).removeprefix("dev-sessions: ")
    return (text[:300] + "...") if len(text) > 300 else text or "(nothing on stderr)"


def _difference(sent: str, got: str) -> str:
    """Where two texts first differ, shown as escapes."""
    at = next(
        (i for i, (a, b) in enumerate(zip(sent, got, strict=False)) if a != b), min(len(sent), len(got))
    )
    return (
        f"{len(got)} characters for {len(sent)}, first difference at {at}: "
        f"sent {sent[at : at + 24]!r}, got {got[at : at + 24]!r}"
    )
