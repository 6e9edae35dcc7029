"""The Codex bridge: one background process per state dir that talks to the app-server for every command.

Why a bridge: a command that spoke WebSocket itself would import asyncio and websockets (about 65 ms)
and shake hands on every call; through the bridge a command is a line of JSON over a Unix socket, and
``wait`` is answered the moment the bridge sees ``turn/completed``. The bridge holds one connection to
the app-server, subscribed to the threads it has been asked about; it keeps no state that the
app-server does not also have, so after its own crash the next command starts a new one and loses
nothing (pending approvals are replayed by the app-server on ``thread/resume``).

It listens on ``$DEV_SESSIONS_HOME/codex/bridge.sock`` (0600, in a 0700 directory, and on Linux it
checks that the peer runs as the same user) and exits after ``DEV_SESSIONS_BRIDGE_LINGER`` seconds
(default 600) without requests, or at once on ``shutdown``, which also stops the app-server.

Wire format: one request per connection, ``{"op": ..., **params}\\n``, one reply ``{"ok": {...}}\\n``
or ``{"error": {"message", "exit"}}\\n``.

This module is the socket server and the process: it answers each request with its operation, and
owns the app-server ``Connection`` (``connection.py``). The operations on threads are in ``ops.py``;
what the app-server's notifications mean for a thread, and what a wait or a status answers, is
decided in ``turns.py``, without I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import logging.handlers
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from dev_sessions import __version__
from dev_sessions.codex.connection import Connect, Connection, Process, websocket_client
from dev_sessions.codex.daemon import AppServer
from dev_sessions.codex.link import code_stamp, socket_path
from dev_sessions.codex.ops import Handler, ThreadOps
from dev_sessions.codex.protocol import JsonObject
from dev_sessions.config import Settings
from dev_sessions.errors import DevSessionsError, UsageError
from dev_sessions.files import check_not_link, private_dir
from dev_sessions.peers import peer_uid

log = logging.getLogger("dev_sessions.codex.bridge")


class Bridge:
    """The socket server: each connection's request is answered by its operation (``ops``), over the
    one app-server ``Connection`` it owns. ``app`` and ``connect`` default to the real app-server
    process and its WebSocket client; tests give a scripted one."""

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str],
        *,
        app: Process | None = None,
        connect: Connect = websocket_client,
    ) -> None:
        self.settings = settings
        self.app = app or AppServer(settings.home, settings.codex_bin, environ)
        self.conn = Connection(self.app, connect)
        self.linger = settings.bridge_linger
        self.busy = 0
        self.last_activity = time.monotonic()
        self.stopping = asyncio.Event()
        self.code = code_stamp()
        self.ops: dict[str, Handler] = {
            "ping": self.op_ping,
            "shutdown": self.op_shutdown,
            "exit": self.op_exit,
            **ThreadOps(self.conn).handlers(),
        }

    # -- the bridge's own operations ---------------------------------------------------------------------

    async def op_ping(self, p: JsonObject) -> JsonObject:
        state = self.app.running()
        return {
            "version": __version__,
            "code": self.code,
            "pid": os.getpid(),
            "appServer": state.__dict__ if state else None,
        }

    async def op_shutdown(self, p: JsonObject) -> JsonObject:
        """Stop the app-server (the last Codex session is gone) and then this bridge."""
        await self.conn.close()
        stopped = await asyncio.get_running_loop().run_in_executor(None, self.app.stop)
        self.stopping.set()
        return {"stopped": stopped}

    async def op_exit(self, p: JsonObject) -> JsonObject:
        """Stop this bridge only (a newer dev-sessions wants its own)."""
        self.stopping.set()
        return {}

    # -- serving ---------------------------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.busy += 1
        started = time.monotonic()
        op = "?"
        try:
            if not _same_user(writer):
                return
            line = await reader.readline()
            request = json.loads(line or b"{}")
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")  # noqa: TRY004, TRY301 - one answer for all bad requests
            op = str(request.pop("op", ""))
            handler = self.ops.get(op)
            if handler is None:
                reply: JsonObject = {"error": UsageError(f"unknown bridge operation {op!r}").to_wire()}
            else:
                task = asyncio.ensure_future(handler(request))
                closed = asyncio.ensure_future(reader.read())  # EOF: the command went away
                done, _ = await asyncio.wait({task, closed}, return_when=asyncio.FIRST_COMPLETED)
                if task not in done:
                    task.cancel()
                    return
                closed.cancel()
                reply = {"ok": task.result()}
        except DevSessionsError as err:
            reply = {"error": err.to_wire()}
        except (ValueError, KeyError, TypeError) as err:
            reply = {"error": UsageError(f"bad bridge request: {err!r}").to_wire()}
        except Exception as err:
            # The one broad catch: a bug in one request must not take the bridge down for everyone.
            log.exception("bridge op %s failed", op)
            reply = {"error": DevSessionsError(f"internal error in the codex bridge: {err!r}").to_wire()}
        finally:
            self.busy -= 1
            self.last_activity = time.monotonic()
        log.info("op %s in %.0f ms", op, (time.monotonic() - started) * 1000)
        with contextlib.suppress(ConnectionError, RuntimeError):
            writer.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
            await writer.drain()
            writer.close()

    async def serve(self, path: Path) -> None:
        private_dir(path.parent)
        path.unlink(missing_ok=True)
        old_umask = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self.handle, path=str(path), limit=64 * 1024 * 1024)
        finally:
            os.umask(old_umask)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        log.info("bridge %s pid %d listening on %s", __version__, os.getpid(), path)
        try:
            while not self.stopping.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), 5.0)
                idle = time.monotonic() - self.last_activity
                if self.busy == 0 and idle > self.linger:
                    log.info("idle for %.0f s; exiting", idle)
                    break
        finally:
            server.close()
            with contextlib.suppress(FileNotFoundError):
                if path.exists():
                    path.unlink()
            await self.conn.close()


def _same_user(writer: asyncio.StreamWriter) -> bool:
    """On Linux, refuse a peer that runs as another user (the socket's mode already should)."""
    sock = writer.get_extra_info("socket")
    uid = None if sock is None else peer_uid(sock)
    if uid is not None and uid != os.getuid():
        log.warning("refused a connection from uid %d", uid)
        writer.close()
        return False
    return True


def main() -> None:
    environ = dict(os.environ)
    settings = Settings.from_env(environ)
    directory = settings.home / "codex"
    private_dir(directory)
    check_not_link(directory / "bridge.log")
    handler = logging.handlers.RotatingFileHandler(directory / "bridge.log", maxBytes=1 << 20, backupCount=2)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    root = logging.getLogger("dev_sessions")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if settings.debug else logging.INFO)
    bridge = Bridge(settings, environ)
    try:
        asyncio.run(bridge.serve(socket_path(settings.home)))
    except Exception:
        log.exception("bridge stopped by an error")
        sys.exit(1)


if __name__ == "__main__":
    main()
