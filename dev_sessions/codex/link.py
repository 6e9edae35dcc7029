"""The command side of the Codex bridge: one JSON line out, one back, over the bridge's Unix socket.

Only the standard library is used here, so that a Codex command costs no more to start than a Claude
one. The bridge is started on demand (under a lock, so parallel commands start one), and replaced when
it runs another version of dev-sessions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dev_sessions import __version__, files
from dev_sessions.config import Settings
from dev_sessions.errors import BridgeUnavailable, DevSessionsError, revive
from dev_sessions.files import private_dir
from dev_sessions.lock import FileLock
from dev_sessions.peers import peer_uid
from dev_sessions.poll import poll_until

log = logging.getLogger(__name__)

_START_TIMEOUT = 20.0


class BridgeLink:
    """``code`` is the stamp of the code this command runs (default: ``code_stamp()``); a bridge that
    runs other code is replaced."""

    def __init__(self, settings: Settings, environ: Mapping[str, str], code: str | None = None) -> None:
        self.settings = settings
        self.environ = dict(environ)
        self.dir = settings.home / "codex"
        self.path = socket_path(settings.home)
        self.code = code
        self._checked = False

    # -- connecting --------------------------------------------------------------------------------------

    def _connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return None
        self._check_peer(sock)
        return sock

    def _check_peer(self, sock: socket.socket) -> None:
        """Refuse a bridge run by another user: whoever made the socket first would read our calls."""
        uid = peer_uid(sock)
        if uid is not None and uid != os.getuid():
            sock.close()
            raise BridgeUnavailable(
                path=self.path, detail=f"answered by a process of uid {uid}, not yours; remove that socket"
            )

    def running(self) -> bool:
        sock = self._connect()
        if sock is None:
            return False
        sock.close()
        return True

    def _open(self, start: bool) -> socket.socket | None:
        sock = self._connect()
        if sock is not None or not start:
            return sock
        private_dir(self.dir)
        with FileLock(self.dir / "bridge.lock", timeout=_START_TIMEOUT + 5):
            sock = self._connect()
            if sock is None:
                sock = self._await_socket(self._spawn())
        return sock

    def _spawn(self) -> subprocess.Popen[bytes]:
        with os.fdopen(files.open_log(self.dir / "bridge.out"), "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "dev_sessions.codex.bridge"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=self.dir,
                env=self.environ,
                start_new_session=True,
                close_fds=True,
            )

    def _await_socket(self, bridge: subprocess.Popen[bytes]) -> socket.socket:
        deadline = time.monotonic() + _START_TIMEOUT
        pause = 0.002
        while time.monotonic() < deadline:
            sock = self._connect()
            if sock is not None:
                return sock
            if bridge.poll() is not None:
                tail = (self.dir / "bridge.out").read_text(errors="replace").strip().splitlines()[-1:]
                detail = f"exited with status {bridge.returncode}" + (f": {tail[0]}" if tail else "")
                raise BridgeUnavailable(path=self.path, detail=f"{detail} (see {self.dir}/bridge.out)")
            time.sleep(pause)
            pause = min(pause * 1.5, 0.05)
        raise BridgeUnavailable(
            path=self.path, detail=f"did not start in {_START_TIMEOUT:g} s; see {self.dir}/bridge.log"
        )

    # -- calls ------------------------------------------------------------------------------------------

    def call(self, op: str, params: Mapping[str, Any] | None = None, *, start: bool = True,
             timeout: float | None = 120.0) -> dict[str, Any] | None:  # fmt: skip
        """The bridge's answer to one operation; None when it is not running and ``start`` is false."""
        if start:
            self._check_version_once()
        sock = self._open(start)
        if sock is None:
            return None
        with contextlib.closing(sock):
            sock.settimeout(timeout)
            payload = json.dumps({"op": op, **(params or {})}, ensure_ascii=False).encode() + b"\n"
            try:
                sock.sendall(payload)
                reply = _read_line(sock)
            except TimeoutError:
                raise BridgeUnavailable(
                    path=self.path, detail=f"no answer to {op} in {timeout:g} s"
                ) from None
            except OSError as err:
                raise BridgeUnavailable(path=self.path, detail=f"{op}: {err}") from err
        return self._answer(op, reply)

    async def call_async(
        self, op: str, params: Mapping[str, Any] | None = None, *, timeout: float | None = 120.0
    ) -> dict[str, Any]:
        """``call`` for an asyncio loop: the long wait is a read on the loop, not a blocked thread."""
        import asyncio

        loop = asyncio.get_running_loop()
        # Starting the bridge (rarely needed, and quick) may block: do it beside the loop.
        await loop.run_in_executor(None, self._ensure_started)
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.path), limit=1 << 26)
        except OSError as err:
            raise BridgeUnavailable(path=self.path, detail=f"{op}: {err}") from err
        try:
            self._check_peer(writer.get_extra_info("socket"))
            writer.write(json.dumps({"op": op, **(params or {})}, ensure_ascii=False).encode() + b"\n")
            await writer.drain()
            reply = await asyncio.wait_for(reader.readline(), timeout)
        except asyncio.TimeoutError:
            raise BridgeUnavailable(path=self.path, detail=f"no answer to {op} in {timeout:g} s") from None
        finally:
            writer.close()
        return self._answer(op, reply)

    def _ensure_started(self) -> None:
        self._check_version_once()
        sock = self._open(start=True)
        if sock is not None:
            sock.close()

    def _answer(self, op: str, reply: bytes) -> dict[str, Any]:
        if not reply:
            detail = f"closed the connection during {op}; see {self.dir}/bridge.log"
            raise BridgeUnavailable(path=self.path, detail=detail)
        answer = json.loads(reply)
        if "error" in answer:
            raise revive(answer["error"])
        result: dict[str, Any] = answer.get("ok") or {}
        return result

    def _check_version_once(self) -> None:
        if not self._checked:
            self._checked = True
            self._replace_if_stale()

    def _replace_if_stale(self) -> None:
        """A bridge left running by another version of dev-sessions is asked to step aside."""
        sock = self._connect()
        if sock is None:
            return
        with contextlib.closing(sock):
            sock.settimeout(5)
            sock.sendall(b'{"op": "ping"}\n')
            with contextlib.suppress(OSError, ValueError):
                stamp = json.loads(_read_line(sock) or b"{}").get("ok", {}).get("code")
                if stamp == (self.code or code_stamp()):
                    return
        log.info("replacing a codex bridge of another version")
        with contextlib.suppress(DevSessionsError, OSError):
            self.call("exit", start=False, timeout=5)
        poll_until(lambda: not self.running(), 5, 0.02)


def code_stamp() -> str:
    """Which code a process runs: the version and the size and mtime of every module of the package.

    A bridge started from other code (an upgrade, even without a version bump) is replaced.
    """
    import zlib

    package = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    found: list[str] = []
    # os.scandir, not Path.rglob: the warm command server asks before every command (~1 ms, not ~4).
    folders = [package]
    while folders:
        folder = folders.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(".py"):
                    info = entry.stat(follow_symlinks=True)
                    relative = entry.path[len(package) + 1 :]
                    found.append(f"{relative}:{info.st_size}:{info.st_mtime_ns}")
                elif entry.is_dir(follow_symlinks=True) and entry.name != "__pycache__":
                    folders.append(entry.path)
    parts = [__version__, *sorted(found)]
    return f"{__version__}-{zlib.crc32(chr(10).join(parts).encode()):08x}"


def _read_line(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            break
    return b"".join(chunks)


def socket_path(home: Path) -> Path:
    """The bridge's socket; outside the state dir when that path would be too long for a Unix socket."""
    path = home / "codex" / "bridge.sock"
    if len(os.fsencode(path)) < 100:
        return path
    import hashlib

    digest = hashlib.sha256(os.fsencode(home.resolve())).hexdigest()[:16]
    return socket_dir() / f"{digest}.sock"


def socket_dir(environ: Mapping[str, str] | None = None) -> Path:
    """A directory for sockets whose path would be too long in the state dir: ours alone.

    It lies in a shared place (``$XDG_RUNTIME_DIR`` or ``/tmp``), where another user could have made it
    first, so it is checked, not trusted: a link, another user's directory, or one open to others is
    refused (:class:`~dev_sessions.errors.UnsafePath`).
    """
    env = os.environ if environ is None else environ
    base = Path(env.get("XDG_RUNTIME_DIR") or "/tmp") / f"dev-sessions-{os.getuid()}"
    if len(os.fsencode(base)) + _LONGEST_NAME >= 100:  # a deep runtime dir is no help: /tmp is short
        base = Path("/tmp") / f"dev-sessions-{os.getuid()}"
    return files.owned_private_dir(base)


_LONGEST_NAME = len("/0123456789abcdef-call.sock")
"""The longest socket name put in :func:`socket_dir` (a 16-hex digest and a suffix)."""
