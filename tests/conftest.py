"""Shared fixtures: every test runs with its own state dir, home and private tmux server.

Tests never touch the real ``~``, the default tmux server, the user's own systemd or a real agent
login: the autouse fixture points ``HOME``, ``DEV_SESSIONS_HOME``, ``DEV_SESSIONS_TMUX_SOCKET`` and
``XDG_RUNTIME_DIR`` into the test's temp dir and libtmux's ``server`` fixture (a private socket, killed
afterwards), and removes the variables that would tie a run to the caller's own agent or session bus.

A requirement a test cannot do without (an agent binary, a system tool) skips it on a developer's
machine and fails it under ``CI=true``: see ``need``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NoReturn

import pytest
from libtmux.server import Server

from dev_sessions.messaging.store import MessageStore, open_store
from dev_sessions.selftest.fakes.anthropic import FakeAnthropic
from dev_sessions.selftest.fakes.openai_responses import FakeResponses
from dev_sessions.selftest.offline import claude_env, prepare_claude_home, prepare_codex_home
from tests.fakes.agents import AgentSet, agent_sets
from tests.fakes.postgres import Postgres, binaries, running_postgres
from tests.fakes.sshd import Sshd, missing_tools, start_sshd

ROOT = Path(__file__).resolve().parents[1]
# One knob for slow machines: every deadline in the tests is multiplied by it.
SLOW = float(os.environ.get("DEV_SESSIONS_TEST_SLOW", "1"))

_FOREIGN = (
    "CLAUDECODE",
    "CLAUDE_CODE_CHILD_SESSION",
    # Which agent session runs the tests (Settings.holder): a test says so itself when it matters.
    "CLAUDE_CODE_SESSION_ID",
    "CODEX_THREAD_ID",
    "CLAUDE_CONFIG_DIR",
    "CODEX_HOME",
    "DEV_SESSIONS_CODEX_BIN",
    "DEV_SESSIONS_BRIDGE_LINGER",
    "OPENAI_API_KEY",
    "DEV_SESSIONS_ID",
    "DEV_SESSIONS_AGENT",
    "DEV_SESSIONS_MESSAGES_RETENTION",
    "DEV_SESSIONS_CLAUDE_BIN",
    "DEV_SESSIONS_DEBUG",
    "TMUX",
    "TMUX_PANE",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    # The user's session bus: `systemctl --user` (gateway install/uninstall/status) must never reach
    # the real user manager and stop or replace a gateway service someone runs.
    "DBUS_SESSION_BUS_ADDRESS",
    # The user's ssh agent: the remote-host tests log in with their own throwaway key only.
    "SSH_AUTH_SOCK",
)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    for name in _FOREIGN:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DEV_SESSIONS_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("DEV_SESSIONS_TMUX_SOCKET", "ds-never-started")
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    # The quick commands run in this process, each test's own, unless the test asks for the warm command
    # server (``warm_commands``): left on, every state dir would get one, lingering after its test.
    monkeypatch.setenv("DEV_SESSIONS_WARM", "0")
    return tmp_path


@pytest.fixture
def warm_commands(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The quick commands answered by the warm command server (issue 17), as they are for a user: on for
    this test, and its server stopped at the end."""
    from dev_sessions.cli.warm_server import stop

    monkeypatch.setenv("DEV_SESSIONS_WARM", "1")
    homes = {Path(os.environ["DEV_SESSIONS_HOME"])}
    yield
    homes.add(Path(os.environ["DEV_SESSIONS_HOME"]))
    for home in homes:
        stop(home)


def need(what: str) -> NoReturn:
    """Something the test cannot run without is missing: skip it here, fail it under CI=true."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI=true: a test that cannot run fails)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """A real PostgreSQL server for this test process (each xdist worker has its own), on a private
    socket, stopped at the end (tests/fakes/postgres.py)."""
    bindir = binaries()
    if bindir is None:
        need("PostgreSQL is not installed (scripts/test installs Debian's postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        need("psycopg is not installed (scripts/test installs the test extra, which has it)")
    with running_postgres(bindir) as server:
        yield server


ENGINES = ("sqlite", "postgres")


@pytest.fixture(params=ENGINES)
def messages_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """Each messaging test runs once per engine: None for SQLite (the default, ``messages.db`` in the
    test's state dir), else the URL of a new database on the tests' PostgreSQL server, also set as
    ``DEV_SESSIONS_MESSAGES_URL`` for the library and every command the test runs."""
    if request.param == "sqlite":
        yield None
        return
    server: Postgres = request.getfixturevalue("postgres_server")
    url = server.database()
    monkeypatch.setenv("DEV_SESSIONS_MESSAGES_URL", url)
    yield url
    stop_deliverer()
    server.drop(url)


def stop_deliverer() -> None:
    """Stop the deliverer of this test's state dir, if one runs (by the pid in the lock it holds). On a
    shared store it stays while ``sessions.json`` lists sessions of this machine, which it does after
    the test's tmux server is gone: left alone, it would outlive the test, its database and the server."""
    import signal

    from dev_sessions.config import Settings
    from dev_sessions.messaging.deliver import running

    settings = Settings.from_env()
    if running(settings):
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((settings.home / "deliverer.lock").read_text().strip()), signal.SIGTERM)


@pytest.fixture
def message_store(messages_url: str | None, isolated: Path) -> Iterator[MessageStore]:
    """The message store of the engine under test (see ``messages_url``), closed afterwards."""
    store = open_store(messages_url or isolated / "state" / "messages.db")
    yield store
    store.close()


@pytest.fixture
def tmux_server(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """A private tmux server (libtmux's fixture, reaped after the test) that dev-sessions will use."""
    assert server.socket_name
    monkeypatch.setenv("DEV_SESSIONS_TMUX_SOCKET", server.socket_name)
    return server


def eventually(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05) -> object:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` (times SLOW)."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout * SLOW:.1f} s: {predicate}")
        time.sleep(interval)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class DevSessions:
    """Runs the real command line in a subprocess, with the test's environment."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def __call__(self, *args: str, stdin: str | bytes | None = None, timeout: float = 60.0) -> Result:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        proc = subprocess.run(
            [sys.executable, "-m", "dev_sessions", *args],
            input=data,
            capture_output=True,
            cwd=self.cwd,
            timeout=timeout * SLOW,
            check=False,
        )
        return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    def ok(self, *args: str, stdin: str | bytes | None = None, timeout: float = 60.0) -> str:
        result = self(*args, stdin=stdin, timeout=timeout)
        assert result.returncode == 0, (
            f"dev-sessions {' '.join(args)} -> {result.returncode}: {result.stderr}"
        )
        return result.stdout

    def start(self, *args: str, debug: bool = False) -> Running:
        """The command left running in the background (a ``wait`` to race against).

        With ``debug``, it runs with ``DEV_SESSIONS_DEBUG=1`` and its debug log comes on stderr as it
        goes: ``wait`` logs ``<id>: waiting for the turn to end`` and ``msg wait`` ``<name>: waiting
        for a message`` once they block (see ``Running.said``).
        """
        env = {**os.environ, "DEV_SESSIONS_DEBUG": "1"} if debug else None
        argv = [sys.executable, "-m", "dev_sessions", *args]
        pipe = subprocess.PIPE
        return Running(subprocess.Popen(argv, stdout=pipe, stderr=pipe, text=True, cwd=self.cwd, env=env))


class Running:
    """A command running in the background; its output is read as it comes, so that a test can wait
    for a line it prints (a waiter saying that it blocks) before acting."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self._out: list[str] = []
        self._err: list[str] = []
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._pump, args=(process.stdout, self._out), daemon=True),
            threading.Thread(target=self._pump, args=(process.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _pump(self, stream: IO[str], into: list[str]) -> None:
        for line in stream:
            with self._lock:
                into.append(line)

    @property
    def stderr(self) -> str:
        with self._lock:
            return "".join(self._err)

    @property
    def stdout(self) -> str:
        with self._lock:
            return "".join(self._out)

    def said(self, needle: str, timeout: float = 20.0) -> None:
        """Wait until ``needle`` shows on its stderr; fail at once if it ends without saying it."""

        def spoken() -> bool:
            if needle in self.stderr:
                return True
            if self.process.poll() is not None:
                for reader in self._readers:
                    reader.join(5)
                if needle not in self.stderr:
                    ended = f"it ended ({self.process.returncode}) without saying {needle!r}"
                    raise AssertionError(f"{ended}: {self.stderr[-2000:]}")
                return True
            return False

        eventually(spoken, timeout)

    def finish(self, timeout: float = 20.0) -> Result:
        """Its exit status and whole output, once it ends (within ``timeout``, times SLOW)."""
        self.process.wait(timeout * SLOW)
        for reader in self._readers:
            reader.join(5)
        with self._lock:
            return Result(self.process.returncode, "".join(self._out), "".join(self._err))


FAKE_CLAUDE = ROOT / "tests" / "fakes" / "fake_claude.py"


@pytest.fixture
def fake_claude(tmux_server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """tests/fakes/fake_claude.py as the agent: it draws Claude Code's screens (FAKE_CLAUDE_MODE picks
    one) and writes its argv, environment and cwd to the returned path."""
    monkeypatch.setenv("DEV_SESSIONS_CLAUDE_BIN", str(FAKE_CLAUDE))
    record = tmp_path / "fake-claude.json"
    monkeypatch.setenv("FAKE_CLAUDE_RECORD", str(record))
    return record


def one_line_error(result: Result, code: int, *needles: str) -> None:
    """The command failed with ``code`` and said why in exactly one line naming every needle."""
    assert result.returncode == code, result
    err = result.stderr
    assert err.count("\n") == 1, f"expected one line, got: {err!r}"
    assert err.startswith("dev-sessions: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err


def git_repo(path: Path) -> Path:
    """A git repository at ``path`` on branch main, with one (empty) commit."""
    path.mkdir(parents=True, exist_ok=True)
    for args in (
        ["init", "-q", "-b", "main"],
        ["-c", "user.name=T", "-c", "user.email=t@e", "commit", "-q", "--allow-empty", "-m", "x"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)
    return path


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def cli(workdir: Path) -> DevSessions:
    return DevSessions(workdir)


def _require(binary: Path | None, name: str) -> Path:
    if binary is None:
        need(f"the pinned {name} binary is not installed (run scripts/test, which installs it)")
    return binary


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture(params=agent_sets(), ids=lambda s: s.id)
def agents(request: pytest.FixtureRequest) -> AgentSet:
    """The pinned set of agent CLIs this run of the test uses: every end-to-end test runs once per set
    (baseline and current), and one that drives Claude and Codex at once gets both from the same set."""
    chosen: AgentSet = request.param
    return chosen


@pytest.fixture
def claude(
    agents: AgentSet,
    tmux_server: Server,
    fake_anthropic: FakeAnthropic,
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> FakeAnthropic:
    """The real Claude Code, offline against the fake Anthropic server, for dev-sessions to drive."""
    binary = _require(agents.claude(), f"claude {agents.claude_version} ({agents.name})")
    home = Path(os.environ["HOME"])
    prepare_claude_home(home, trusted=isolated)
    for key, value in claude_env(home, fake_anthropic.url).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DEV_SESSIONS_CLAUDE_BIN", str(binary))
    return fake_anthropic


@pytest.fixture
def fake_responses() -> Iterator[FakeResponses]:
    with FakeResponses() as server:
        yield server


def stop_codex(home: Path) -> None:
    """Stop the bridge and the app-server a test started, whatever state the test left them in."""
    from dev_sessions.codex.daemon import AppServer
    from dev_sessions.codex.link import BridgeLink
    from dev_sessions.config import Settings

    settings = Settings.from_env({**os.environ, "DEV_SESSIONS_HOME": str(home)})
    link = BridgeLink(settings, os.environ)
    if link.running():
        # Best effort: whatever the test broke, the processes below are stopped anyway.
        with contextlib.suppress(Exception):
            link.call("shutdown", start=False, timeout=30)
    AppServer(home, "codex", os.environ).stop()


@pytest.fixture
def codex(
    agents: AgentSet, fake_responses: FakeResponses, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeResponses]:
    """The real Codex app-server, offline against the fake Responses server, for dev-sessions to drive."""
    binary = _require(agents.codex(), f"codex {agents.codex_version} ({agents.name})")
    for key, value in prepare_codex_home(isolated / "codex-home", fake_responses.url).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DEV_SESSIONS_CODEX_BIN", str(binary))
    yield fake_responses
    stop_codex(Path(os.environ["DEV_SESSIONS_HOME"]))


@dataclass
class GatewayProcess:
    url: str
    token: str
    process: subprocess.Popen[str]
    log_path: Path | None = None

    def said(self) -> str:
        """What it has logged so far."""
        assert self.log_path is not None
        return self.log_path.read_text()

    def log(self) -> str:
        """Stop it, and return all it logged."""
        self.process.terminate()
        self.process.communicate(timeout=10)
        return self.said()


def start_gateway(
    *extra: str, env: dict[str, str] | None = None, token_file: bool = False, log: Path | None = None
) -> GatewayProcess:
    """The real gateway on 127.0.0.1, a free port and a token, for the test's own state dir.

    The token is given in DEV_SESSIONS_GATEWAY_TOKEN, or with ``token_file`` left to the gateway's
    own token file (``dev-sessions gateway token``). The first "listening on" line is read; one more
    follows for every ``--bind``. Its log (stderr) is written to ``log`` (by default a file beside the
    state dir) as it goes: a pipe nobody reads would stop the gateway once 64 KB of log fill it.
    """
    environ = {**os.environ, **(env or {})}
    if token_file:
        environ.pop("DEV_SESSIONS_GATEWAY_TOKEN", None)
    else:
        environ["DEV_SESSIONS_GATEWAY_TOKEN"] = "test-token-" + os.urandom(16).hex()
    log = log or Path(environ["DEV_SESSIONS_HOME"]).parent / f"gateway-{os.urandom(4).hex()}.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "dev_sessions", "gateway", "--port", "0", *extra],
            stdout=subprocess.PIPE, stderr=err, text=True, env=environ, cwd=ROOT,
        )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on http://" not in line:
        raise AssertionError(f"the gateway did not start: {line}{log.read_text()}")
    token = (
        environ.get("DEV_SESSIONS_GATEWAY_TOKEN")
        or (Path(environ["DEV_SESSIONS_HOME"]) / "gateway-token").read_text().strip()
    )
    return GatewayProcess(line.split("listening on ", 1)[1].strip(), token, process, log)


@pytest.fixture
def gateway(isolated: Path) -> Iterator[GatewayProcess]:
    running = start_gateway("--root", str(isolated))
    yield running
    if running.process.poll() is None:
        running.process.terminate()
        running.process.wait(timeout=10)


@pytest.fixture
def sshd(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sshd]:
    """A real sshd on 127.0.0.1 and the "remote host" behind it (tests/fakes/sshd.py), for the ssh
    transport: ``DEV_SESSIONS_SSH_CONFIG`` names its client config (hosts ``remote-box``,
    ``unreachable-box``, ``silent-box``), and the remote login has its own home, state dir and tmux
    socket. Stopped afterwards, with every shared connection (ControlMaster) the test opened."""
    with serving_sshd(isolated, monkeypatch) as running:
        yield running


@contextlib.contextmanager
def serving_sshd(
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    extra: Callable[[Path], Mapping[str, str]] | None = None,
    forwarding: bool = True,
) -> Iterator[Sshd]:
    """The ``sshd`` fixture's work; ``extra`` adds to the remote login's environment (from its home),
    ``forwarding`` False makes the host's sshd refuse forwarding (no warm path there)."""
    missing = missing_tools()
    if missing:
        need(missing)
    running = start_sshd(isolated / "sshd", extra=extra, forwarding=forwarding)
    # The local state dir holds the control sockets, whose path must stay under 90 bytes: a short one.
    short = Path(tempfile.mkdtemp(prefix="ds-ssh-", dir="/tmp"))
    monkeypatch.setenv("DEV_SESSIONS_HOME", str(short / "state"))
    monkeypatch.setenv("DEV_SESSIONS_SSH_CONFIG", str(running.client_config))
    try:
        yield running
    finally:
        sockets = short / "state" / "ssh"
        for control in sockets.glob("cm-*") if sockets.is_dir() else ():
            subprocess.run(
                ["ssh", "-F", str(running.client_config), "-S", str(control), "-O", "exit", "any"],
                stdin=subprocess.DEVNULL, capture_output=True, timeout=10, check=False,
            )  # fmt: skip
        running.stop()
        stop_deliverer()  # this side's, before its state dir goes (and its lock with it)
        shutil.rmtree(short, ignore_errors=True)
