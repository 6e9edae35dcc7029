"""The shared ``codex app-server`` process: find its binary, start it, know whether it lives, stop it.

State lives in ``$DEV_SESSIONS_HOME/codex/``: ``app-server.json`` (pid, port, url, start time, binary,
the process's own start tick, CODEX_HOME), ``ws-token`` (0600; the app-server only accepts WebSocket
clients that present it), ``app-server.log`` (its stderr), and ``app-server.lock`` (start-up is
serialised, so parallel callers share one server).

"Alive" is checked for real: the recorded pid must still be that codex binary, started at the
recorded tick (so a pid reused after a reboot is never signalled), not a zombie, and ``/readyz``
must answer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from dev_sessions import files
from dev_sessions.errors import AppServerStartFailed, ToolMissing
from dev_sessions.files import private_dir
from dev_sessions.lock import FileLock
from dev_sessions.poll import poll_until
from dev_sessions.store import now_iso
from dev_sessions.watch import Watcher

log = logging.getLogger(__name__)

_URL = re.compile(r"listening on: (ws://\S+)")
_START_TIMEOUT = 15.0


def _triples() -> list[str]:
    machine = platform.machine().lower()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}.get(
        machine, machine
    )
    if sys.platform == "darwin":
        return [f"{arch}-apple-darwin"]
    return [f"{arch}-unknown-linux-musl", f"{arch}-unknown-linux-gnu"]


def _is_node_script(path: Path) -> bool:
    if path.suffix in (".js", ".mjs", ".cjs"):
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(64)
    except OSError:
        return False
    return head.startswith(b"#!") and b"node" in head.split(b"\n", 1)[0]


def native_codex(wrapper: Path) -> Path | None:
    """The native binary that the npm package's ``codex.js`` wrapper would spawn."""
    package = wrapper.resolve().parent.parent  # .../node_modules/@openai/codex
    candidates: list[Path] = []
    for triple in _triples():
        candidates += [
            *package.parent.glob(f"codex-*/vendor/{triple}/bin/codex"),  # optional dependency, hoisted
            *package.glob(f"node_modules/@openai/codex-*/vendor/{triple}/bin/codex"),  # nested
            package / "vendor" / triple / "bin" / "codex",  # older packages bundled the binaries
            package / "vendor" / triple / "codex" / "codex",
        ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def resolve_binary(name: str, path: str | None = None) -> Path:
    """The codex executable to run: ``name`` on PATH, or the native binary behind the npm wrapper.

    Running the wrapper would make the pid we record the wrapper's, not the server's.
    """
    found = shutil.which(name, path=path)
    if found is None:
        raise ToolMissing(
            tool=name, hint="install Codex (npm install -g @openai/codex) or set DEV_SESSIONS_CODEX_BIN"
        )
    real = Path(found).resolve()
    if _is_node_script(real):
        native = native_codex(real)
        if native is None:
            raise ToolMissing(
                tool=name,
                hint=f"{real} is the npm wrapper and its native binary is missing; reinstall @openai/codex",
            )
        return native
    return real


# One app-server serves every Codex session: it must not carry the identity of whichever command
# started it. Each thread gets its own DEV_SESSIONS_ID through its shell environment policy instead.
IDENTITY_ENV = ("DEV_SESSIONS_ID", "DEV_SESSIONS_AGENT")
# Never handed to the agents: the gateway's owner token (a gateway starting sessions may hold it).
SECRET_ENV = ("DEV_SESSIONS_GATEWAY_TOKEN",)


def server_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k not in IDENTITY_ENV + SECRET_ENV}


@dataclass(frozen=True)
class DaemonState:
    pid: int
    port: int
    url: str
    startedAt: str
    binary: str
    procStart: str
    codexHome: str | None = None


def process_start(pid: int) -> str | None:
    """A value that identifies one process across pid reuse: its start time in clock ticks (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return _ps_start(pid)
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields and fields[0] == "Z":
        return None  # a zombie has finished
    return fields[19] if len(fields) > 19 else None


def _ps_start(pid: int) -> str | None:
    try:
        out = subprocess.run(
            ["ps", "-o", "lstart=,stat=", "-p", str(pid)], capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    text = out.stdout.strip()
    if not text or text.split()[-1].startswith("Z"):
        return None
    return " ".join(text.split()[:-1])


def process_binary(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        return str(Path(f"/proc/{pid}/exe").resolve())
    return None


class AppServer:
    def __init__(self, home: Path, binary: str, environ: Mapping[str, str]) -> None:
        self.dir = home / "codex"
        self.state_path = self.dir / "app-server.json"
        self.token_path = self.dir / "ws-token"
        self.log_path = self.dir / "app-server.log"
        self.lock = FileLock(self.dir / "app-server.lock", timeout=_START_TIMEOUT + 5)
        self.binary_name = binary
        self.environ = dict(environ)
        self._child: subprocess.Popen[bytes] | None = None

    # -- state --------------------------------------------------------------------------------------

    def state(self) -> DaemonState | None:
        try:
            data = json.loads(files.read_bytes(self.state_path) or b"")
            return DaemonState(**data)
        except (OSError, ValueError, TypeError):
            return None

    def token(self) -> str:
        """The WebSocket capability token, created (0600, written in full before it appears) on first use."""
        import secrets

        private_dir(self.dir)
        token = files.create_once(self.token_path, secrets.token_urlsafe(32).encode()).decode().strip()
        if len(token) < 32:
            # An empty or cut token (a full disk) would let anyone connect: make a whole one.
            token = secrets.token_urlsafe(32)
            files.write_atomic(self.token_path, token.encode())
        return token

    def running(self, state: DaemonState | None = None) -> DaemonState | None:
        """The recorded server if its process is still the one we started (no network check)."""
        state = state or self.state()
        if state is None:
            return None
        if self._child is not None and self._child.pid == state.pid:
            self._child.poll()  # reap it if it died, so that it does not linger as a zombie
        if process_start(state.pid) != state.procStart:
            return None
        exe = process_binary(state.pid)
        if exe is not None and exe != state.binary and not exe.endswith(" (deleted)"):
            return None
        return state

    @staticmethod
    def answers(state: DaemonState, timeout: float = 2.0) -> bool:
        import urllib.error
        import urllib.request

        url = f"http://127.0.0.1:{state.port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def alive(self) -> DaemonState | None:
        state = self.running()
        return state if state is not None and self.answers(state) else None

    # -- start / stop -------------------------------------------------------------------------------

    def ensure(self) -> DaemonState:
        """The running server, started first if needed; parallel callers share one."""
        state = self.alive()
        if state is not None:
            return state
        with self.lock:
            state = self.alive()
            if state is not None:
                return state
            stale = self.running()
            if stale is not None:
                # Alive but not answering: it cannot be used, and two servers must not share threads.
                log.warning("app-server pid %d does not answer; stopping it", stale.pid)
                self._terminate(stale)
            return self._start()

    def _start(self) -> DaemonState:
        binary = resolve_binary(self.binary_name, self.environ.get("PATH"))
        self.token()  # the server reads the token from its file
        private_dir(self.dir)
        with contextlib.suppress(FileNotFoundError):
            self.log_path.replace(self.log_path.with_suffix(".log.1"))
        log_file = os.fdopen(files.open_log(self.log_path, truncate=True), "wb")
        argv = [
            str(binary), "app-server", "--listen", "ws://127.0.0.1:0",
            "--ws-auth", "capability-token", "--ws-token-file", str(self.token_path),
        ]  # fmt: skip
        started = time.monotonic()
        try:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                cwd=self.dir,
                env=server_env(self.environ),
                start_new_session=True,  # not killed with the terminal or the process that started it
            )
        finally:
            log_file.close()
        self._child = child
        url = self._await_url(child, binary)
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        proc_start = process_start(child.pid) or ""
        state = DaemonState(
            pid=child.pid,
            port=port,
            url=url,
            startedAt=now_iso(),
            binary=str(binary),
            procStart=proc_start,
            codexHome=self.environ.get("CODEX_HOME"),
        )
        deadline = started + _START_TIMEOUT
        while not self.answers(state, timeout=1.0):
            if child.poll() is not None or time.monotonic() > deadline:
                self._terminate(state)
                raise AppServerStartFailed(
                    binary=str(binary), detail=f"/readyz never answered; see {self.log_path}"
                )
            time.sleep(0.01)
        files.write_atomic(self.state_path, json.dumps(asdict(state)).encode())
        log.info(
            "started codex app-server pid %d on %s in %.2f s", child.pid, url, time.monotonic() - started
        )
        return state

    def _await_url(self, child: subprocess.Popen[bytes], binary: Path) -> str:
        deadline = time.monotonic() + _START_TIMEOUT
        with Watcher() as watcher:
            watcher.watch_dir(self.dir)
            watcher.watch_pid(child.pid)
            while True:
                text = files.read_text(self.log_path) or ""
                match = _URL.search(text)
                if match:
                    return match.group(1)
                if child.poll() is not None:
                    last = [line for line in text.splitlines() if line.strip()][-3:]
                    raise AppServerStartFailed(
                        binary=str(binary), detail=f"exit status {child.returncode}: {' / '.join(last)[:400]}"
                    )
                if time.monotonic() > deadline:
                    child.kill()
                    raise AppServerStartFailed(
                        binary=str(binary), detail=f"no URL after {_START_TIMEOUT:g} s"
                    )
                watcher.wait(0.05)

    def stop(self) -> bool:
        """Stop the server if it runs; True if one was stopped."""
        with self.lock:
            state = self.running()
            if state is not None:
                self._terminate(state)
            self.state_path.unlink(missing_ok=True)
            return state is not None

    def _terminate(self, state: DaemonState) -> None:
        """SIGTERM; a second SIGTERM (the server drains running turns on the first); then SIGKILL."""
        with Watcher() as watcher:
            watcher.watch_pid(state.pid)
            for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
                if process_start(state.pid) != state.procStart:
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.kill(state.pid, sig)
                poll_until(lambda: watcher.exited(state.pid), grace, 0.1, sleep=watcher.wait)
                if self._child is not None:
                    self._child.poll()
                if watcher.exited(state.pid):
                    break
