"""``dev-sessions selftest``: the real round trip with the user's own agent CLI, offline and isolated.

For one agent (``claude`` or ``codex``, found as every command finds it: ``DEV_SESSIONS_CLAUDE_BIN`` /
``DEV_SESSIONS_CODEX_BIN``, else ``PATH``) :func:`selftest` serves the fake model of :mod:`.fakes`
from this process, makes a sandbox in one temporary directory (``HOME``, ``CLAUDE_CONFIG_DIR``,
``CODEX_HOME``, ``DEV_SESSIONS_HOME``, ``TMPDIR``, ``XDG_RUNTIME_DIR``, the tmux socket directory and
a work directory) and drives the ``dev-sessions`` command line in subprocesses whose environment is
built from nothing but ``PATH``, the locale and the sandbox (:func:`sandbox_env`). What a user runs is
what is checked, and nothing can reach the user's home, their default tmux server, their agent
settings or a network.

It owns the sandbox from start to end: on success, failure, Ctrl-C or SIGTERM it kills the tmux server
and the Codex bridge and app-server it started, then any process still carrying the sandbox in its
environment (Linux), and removes the directory; the ``cleanup`` check says whether all of that worked.
No other command imports this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from dev_sessions.compat import TESTED, placement
from dev_sessions.errors import DevSessionsError, UsageError
from dev_sessions.poll import poll_until
from dev_sessions.selftest.fakes._server import FakeServer
from dev_sessions.selftest.offline import claude_env, prepare_claude_home, prepare_codex_home
from dev_sessions.tmux import Tmux

AGENTS = ("claude", "codex")
Result = Literal["ok", "failed", "skipped"]

# What reaches the agents besides the sandbox: where programs are, and how text is encoded.
KEPT_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TERM", "TZ", "USER", "LOGNAME", "SHELL")

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

TMUX_SOCKET = "selftest"
# The sandbox holds Unix sockets (tmux's, the Codex bridge's), whose paths may have ~100 bytes: under a
# long TMPDIR (macOS has ~50 bytes) it goes to /tmp.
_LONGEST_BASE = 60

# How long one step may take before it counts as failed (an instant fake model answers in well under a
# second; Claude Code starts in one to three).
TURN_S = 30.0
STEP_S = 20.0


@dataclass(frozen=True)
class Check:
    """One capability and how it went: ``ok``, ``failed`` (``detail`` says why) or ``skipped``."""

    name: str
    result: Result
    detail: str = ""


@dataclass(frozen=True)
class Tested:
    """Which agent binary a selftest runs (``binary`` None: not found) and what ``--version`` says."""

    agent: str
    binary: str | None
    version: str | None
    placement: str | None = None

    @property
    def tested_range(self) -> str:
        low, high = TESTED[self.agent]
        return f"{low} to {high}"


@dataclass(frozen=True)
class Report:
    tested: Tested
    checks: tuple[Check, ...]
    seconds: float
    sandbox: str | None = None
    tmux_socket: str | None = None

    @property
    def ok(self) -> bool:
        return all(c.result != "failed" for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        tested = self.tested
        return {
            "cli": tested.agent,
            "binary": tested.binary,
            "version": tested.version,
            "placement": tested.placement,
            "testedRange": list(TESTED[tested.agent]),
            "ok": self.ok,
            "seconds": round(self.seconds, 2),
            "sandbox": self.sandbox,
            "tmuxSocket": self.tmux_socket,
            "checks": [{"check": c.name, "result": c.result, "detail": c.detail} for c in self.checks],
        }


Listener = Callable[[Tested | Check], None]


class _Failed(Exception):
    """A capability check failed; the message is the one-line reason shown after ``FAILED:``."""


def find_binary(agent: str, environ: Mapping[str, str]) -> str | None:
    """The agent binary as dev-sessions finds it: its ``DEV_SESSIONS_*_BIN``, else ``PATH``."""
    name = environ.get(f"DEV_SESSIONS_{agent.upper()}_BIN") or agent
    found = shutil.which(name, path=environ.get("PATH"))
    return str(Path(found).absolute()) if found else None


def sandbox_env(root: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of everything the selftest runs: the sandbox, and only ``KEPT_ENV`` of ours."""
    env = {name: environ[name] for name in KEPT_ENV if name in environ}
    package_root = Path(__file__).resolve().parents[2]
    env.update(
        {
            "HOME": str(root / "home"),
            "CLAUDE_CONFIG_DIR": str(root / "home" / ".claude"),
            "CODEX_HOME": str(root / "codex-home"),
            "DEV_SESSIONS_HOME": str(root / "state"),
            "DEV_SESSIONS_TMUX_SOCKET": TMUX_SOCKET,
            "TMUX_TMPDIR": str(root / "tmux"),
            "TMPDIR": str(root / "tmp"),
            "XDG_RUNTIME_DIR": str(root / "run"),
            # If our cleanup is cut short, the Codex bridge still goes by itself soon.
            "DEV_SESSIONS_BRIDGE_LINGER": "60",
            # The subprocesses run this very dev-sessions, wherever it was imported from.
            "PYTHONPATH": str(package_root),
        }
    )
    return env


def selftest(
    agent: str, environ: Mapping[str, str] | None = None, listener: Listener | None = None
) -> Report:
    """Check every capability of dev-sessions with the installed ``agent`` (``claude`` or ``codex``).

    ``listener`` hears which binary is tested, then each check as it ends. A KeyboardInterrupt (Ctrl-C,
    or SIGTERM when called from the main thread) stops the run; everything is cleaned up first.
    """
    if agent not in AGENTS:
        raise UsageError(f"--cli {agent!r}: choose claude, codex or all")
    env = dict(os.environ if environ is None else environ)
    hear = listener or (lambda _: None)
    started = time.monotonic()
    binary = find_binary(agent, env)
    if binary is None:
        tested = Tested(agent, None, None)
        hear(tested)
        variable = f"DEV_SESSIONS_{agent.upper()}_BIN"
        if env.get(variable):
            why = f"{variable}={env[variable]}: not found"
        else:
            why = f"{agent} is not on PATH; install it or set {variable}"
        check = Check("binary", "failed", why)
        hear(check)
        return Report(tested, (check,), time.monotonic() - started)
    with _sigterm_interrupts(), Sandbox(agent, binary, env) as sandbox:
        version = sandbox.version()
        tested = Tested(agent, binary, version, placement(agent, version) if version else None)
        hear(tested)
        checks = []
        for check in sandbox.checks():
            hear(check)
            checks.append(check)
    cleanup = sandbox.cleaned
    hear(cleanup)
    checks.append(cleanup)
    return Report(
        tested,
        tuple(checks),
        time.monotonic() - started,
        str(sandbox.root),
        sandbox.tmux_socket,
    )


@dataclass
class _Outcome:
    code: int
    stdout: str
    stderr: str


class Sandbox:
    """One selftest's temporary world, its fake model server, and the checks run in it."""

    def __init__(self, agent: str, binary: str, caller_env: Mapping[str, str]) -> None:
        self.agent = agent
        self.binary = binary
        self.caller_env = dict(caller_env)
        base = tempfile.gettempdir()
        self.root = Path(
            tempfile.mkdtemp(prefix="ds-selftest-", dir=base if len(base) <= _LONGEST_BASE else "/tmp")
        )
        self.work = self.root / "work"
        self.env = sandbox_env(self.root, self.caller_env)
        self.fake: FakeServer | None = None
        self.cleaned = Check("cleanup", "skipped", "not done yet")
        self.sessions: list[str] = []
        self.main = ""

    # -- the sandbox ------------------------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        try:
            self._build()
        except BaseException:
            self.cleaned = self._clean()
            raise
        return self

    def _build(self) -> None:
        for name in ("home", "work", "state", "tmp", "tmux", "run"):
            (self.root / name).mkdir(mode=0o700)
        if self.agent == "claude":
            from dev_sessions.selftest.fakes.anthropic import FakeAnthropic

            self.fake = FakeAnthropic().start()
            home = self.root / "home"
            prepare_claude_home(home, trusted=self.root)
            # With CLAUDE_CONFIG_DIR set, Claude Code reads its state file there.
            shutil.copy(home / ".claude.json", home / ".claude" / ".claude.json")
            self.env.update(claude_env(home, self.fake.address))
            self.env["DEV_SESSIONS_CLAUDE_BIN"] = self.binary
        else:
            from dev_sessions.selftest.fakes.openai_responses import FakeResponses

            self.fake = FakeResponses().start()
            self.env.update(prepare_codex_home(self.root / "codex-home", f"{self.fake.address}/v1"))
            self.env["DEV_SESSIONS_CODEX_BIN"] = self.binary

    @property
    def tmux_socket(self) -> str:
        """The path of the sandbox's tmux socket (``-L selftest`` under its ``TMUX_TMPDIR``)."""
        return str(self.root / "tmux" / f"tmux-{os.getuid()}" / TMUX_SOCKET)

    @property
    def model(self) -> FakeServer:
        assert self.fake is not None, "the sandbox is not entered"
        return self.fake

    def __exit__(self, *exc: object) -> None:
        self.cleaned = self._clean()

    def _clean(self) -> Check:
        """Stop everything the sandbox started and remove it; what could not be, as a failed check."""
        left: list[str] = []
        with _uninterrupted():
            env = self.env
            with contextlib.suppress(DevSessionsError):  # no tmux installed: no server to stop
                Tmux(env["DEV_SESSIONS_TMUX_SOCKET"], environ=env).kill_server()
            if self.agent == "codex":
                left += _stop_codex(env)
            left += [f"pid {pid} ({name})" for pid, name in _reap(env["DEV_SESSIONS_HOME"])]
            if self.fake is not None:
                self.fake.stop()
            try:
                shutil.rmtree(self.root)
            except FileNotFoundError:
                pass
            except OSError as err:
                left.append(f"{self.root} ({err.strerror})")
        if left:
            return Check("cleanup", "failed", "left behind: " + ", ".join(left))
        return Check("cleanup", "ok")

    def version(self) -> str | None:
        try:
            proc = subprocess.run(
                [self.binary, "--version"],
                capture_output=True, text=True, env=self.env, cwd=self.work, timeout=STEP_S, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return None
        lines = (proc.stdout or proc.stderr).strip().splitlines()
        return lines[0].strip() if proc.returncode == 0 and lines else None

    # -- driving dev-sessions -----------------------------------------------------------------------

    def run(self, *args: str, stdin: str | None = None, timeout: float = TURN_S + 30) -> _Outcome:
        """One ``dev-sessions`` command in a subprocess, in the sandbox."""
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "dev_sessions", *args],
                input=(stdin or "").encode(), capture_output=True, cwd=self.work, env=self.env,
                timeout=timeout, check=False,
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
        record = json.loads(self.ok("create", "--cli", self.agent, *args, "--json"))
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
        if not poll_until(lambda: self.model.holding(name) > 0, STEP_S):
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
        if not poll_until(lambda: EXACT in self.model.prompts(), STEP_S):
            prompts = self.model.prompts()
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
        self.model.release("status")
        self.wait(self.main)
        self.expect_status(self.main, "idle", "after the turn")

    def check_question(self) -> None:
        # Codex asks questions (request_user_input) only in Plan mode.
        plan = ["--plan"] if self.agent == "codex" else []
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
        approvals = "on-request" if self.agent == "claude" else "untrusted"
        sid = self.create("--approvals", approvals)
        made = self.work / "permitted"
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
        self.model.release("interrupt")
        self.expect_status(self.main, "idle", "after the interrupt")
        reply = self.ok("ask", self.main, "after the interrupt", "--timeout", f"{TURN_S:g}")
        if reply != "after the interrupt\n":
            raise _Failed(f"the next prompt came back as {reply!r}")

    def check_kill(self) -> None:
        from dev_sessions.codex.daemon import process_start

        key = "tmux" if self.agent == "claude" else "appServer"
        pids = {int(json.loads(self.ok("inspect", sid))[key]["pid"]) for sid in self.sessions}
        said = self.ok("kill", *self.sessions).splitlines()
        if said != [f"{sid}: killed" for sid in self.sessions]:
            raise _Failed(f"`dev-sessions kill` said {' / '.join(said)!r}")
        killed, self.sessions = self.sessions, []
        if json.loads(self.ok("list", "--json")):
            raise _Failed("sessions are still listed after kill")
        what = "claude" if self.agent == "claude" else "the codex app-server"
        if not poll_until(lambda: all(process_start(pid) is None for pid in pids), STEP_S):
            raise _Failed(f"{what} still runs after kill (pid {', '.join(map(str, sorted(pids)))})")
        if self.agent == "claude":
            tmux = Tmux(self.env["DEV_SESSIONS_TMUX_SOCKET"], environ=self.env)
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


def _stop_codex(env: dict[str, str]) -> list[str]:
    """Stop the bridge and the app-server the sandbox's Codex sessions used."""
    from dev_sessions.codex.daemon import AppServer
    from dev_sessions.codex.link import BridgeLink
    from dev_sessions.config import Settings

    settings = Settings.from_env(env)
    left = []
    link = BridgeLink(settings, env)
    with contextlib.suppress(DevSessionsError, OSError):
        if link.running():
            link.call("shutdown", start=False, timeout=10)
    try:
        AppServer(settings.home, env["DEV_SESSIONS_CODEX_BIN"], env).stop()
    except (DevSessionsError, OSError) as err:
        left.append(f"the codex app-server ({err})")
    return left


def _carriers(marker: bytes) -> dict[int, str]:
    """Processes whose environment holds ``marker`` (Linux; elsewhere none are found)."""
    found: dict[int, str] = {}
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found[int(entry.name)] = (entry / "comm").read_text().strip()
            except OSError:
                continue
    return found


def _reap(state_dir: str) -> list[tuple[int, str]]:
    """End what the sandbox started and is still running (a pane's child, a hook, a stuck agent):
    every process whose environment names the sandbox's state dir. Returns the ones that survived."""
    marker = f"DEV_SESSIONS_HOME={state_dir}".encode()
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        found = _carriers(marker)
        if not found:
            return []
        if sig is not None:
            for pid in found:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
        poll_until(lambda: not _carriers(marker), 3.0, 0.1)
    return sorted(_carriers(marker).items())


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Cleanup runs to its end: a second Ctrl-C must not leave a tmux server or an app-server behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the run like Ctrl-C does (so that the sandbox is cleaned up)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
