"""The gateway server: every session and messaging call over HTTP, for agents inside containers.

It calls the library in-process (no subprocess per request, no message in any argv). Quick calls run
on a small thread pool; the long ones (``wait``, ``ask``, ``msg wait``) run as coroutines on the
event loop, sleeping on file-system events and the Codex bridge's socket, so a hundred open waits are
a hundred coroutines, not threads. Their answer streams: a keep-alive line every 15 s keeps proxies
and idle timeouts from cutting the request, then the result.

Who may call: every request but ``GET /health`` carries ``Authorization: Bearer <token>`` (the token
file ``$DEV_SESSIONS_HOME/gateway-token``, 0600, made on first start, or ``DEV_SESSIONS_GATEWAY_TOKEN``).
The Host header must name a loopback address, an address the gateway is bound to,
``host.docker.internal`` or a name given with ``--allow-host`` (this defeats DNS rebinding), browsers'
cross-origin requests are refused, bodies have a size limit, and a path argument must lie under an
allowed root. Errors never echo a message body. Every request is logged: id, call, outcome, duration.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import json
import logging
import os
import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from dev_sessions import __version__
from dev_sessions.config import Settings, private_dir
from dev_sessions.errors import DevSessionsError
from dev_sessions.gateway.protocol import ASYNC_TWINS, CALLS, encode

log = logging.getLogger("dev_sessions.gateway")

DEFAULT_PORT = 6767
DEFAULT_MAX_BODY = 80 * 1024 * 1024  # above the 64 MB a send may carry, with room for JSON escaping
KEEPALIVE_S = 15.0
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "host.docker.internal")


def token_path(settings: Settings) -> Path:
    return settings.home / "gateway-token"


def load_token(settings: Settings, environ: Mapping[str, str]) -> str:
    """The gateway's bearer token: from the environment, or the token file (made 0600 on first use)."""
    explicit = environ.get("DEV_SESSIONS_GATEWAY_TOKEN")
    if explicit:
        return explicit
    path = token_path(settings)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    private_dir(path.parent)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, token.encode())
    finally:
        os.close(fd)
    return token


def _host_name(host: str) -> str:
    """The name part of a Host header (``[::1]:6767`` -> ``::1``, ``localhost:6767`` -> ``localhost``)."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Gateway:
    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str],
        *,
        token: str,
        binds: Iterable[str],
        allow_hosts: Iterable[str] = (),
        roots: Iterable[Path] = (),
        max_body: int = DEFAULT_MAX_BODY,
        workers: int = 8,
    ) -> None:
        self.settings = settings
        self.environ = dict(environ)
        self.token = token
        self.hosts = {n.lower() for n in (*LOOPBACK_NAMES, *binds, *allow_hosts)}
        self.roots = [Path(r).resolve() for r in roots]
        self.max_body = max_body
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="gateway")

    # -- the application -------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body, middlewares=[self.guard])
        app.router.add_get("/health", self.health)
        app.router.add_post("/v1/call", self.call)
        return app

    @web.middleware
    async def guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        rid = uuid.uuid4().hex[:8]
        request["rid"] = rid
        started = time.monotonic()
        refusal = self._refusal(request)
        try:
            response = refusal if refusal is not None else await handler(request)
        except web.HTTPException as err:
            response = web.json_response({"error": {"message": err.reason, "exit": 1}}, status=err.status)
        log.info(
            "%s %s %s %s %.0fms",
            rid,
            request.get("call", request.path),
            response.status,
            request.get("outcome", ""),
            (time.monotonic() - started) * 1000,
        )
        return response

    def _refusal(self, request: web.Request) -> web.Response | None:
        host = _host_name(request.host or "").lower()
        if host not in self.hosts:
            return _refuse(403, f"Host {host!r} is not one of this gateway's names")
        if request.headers.get("Origin") or request.headers.get("Sec-Fetch-Site", "none") not in (
            "none",
            "same-origin",
        ):
            return _refuse(403, "cross-origin requests are refused")
        if request.path == "/health":
            return None
        presented = request.headers.get("Authorization", "")
        if not presented.startswith("Bearer ") or not hmac.compare_digest(
            presented[7:].strip().encode(), self.token.encode()
        ):
            return _refuse(401, "missing or wrong bearer token (DEV_SESSIONS_GATEWAY_TOKEN)")
        return None

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "version": __version__})

    async def call(self, request: web.Request) -> web.StreamResponse:
        try:
            data = await request.json()
        except web.HTTPRequestEntityTooLarge:
            return _refuse(413, f"request body over {self.max_body} bytes")
        except ValueError:
            return _refuse(400, "the body is not JSON")
        if not isinstance(data, dict):
            return _refuse(400, "the body is not a JSON object")
        api, method, args = data.get("api"), data.get("method"), data.get("args") or {}
        spec = CALLS.get(str(api), {}).get(str(method))
        if spec is None:
            return _refuse(404, f"no call {api}.{method}")
        request["call"] = f"{api}.{method}"
        if not isinstance(args, dict) or not set(args) <= spec.args:
            return _refuse(
                400, f"{api}.{method} takes only: {', '.join(sorted(spec.args)) or 'no arguments'}"
            )
        for name in spec.paths:
            if args.get(name) is not None and (problem := self._path_problem(str(args[name]))):
                return _refuse(400, f"{name}: {problem}")
        target = self._target(str(api))
        twin = ASYNC_TWINS.get((str(api), str(method)))
        if twin is not None:
            work: Awaitable[Any] = getattr(target, twin)(**args)
        else:
            loop = asyncio.get_running_loop()
            work = loop.run_in_executor(self.pool, functools.partial(getattr(target, str(method)), **args))
        return await self._stream(request, work)

    def _target(self, api: str) -> Any:
        # A fresh library object per call: nothing is shared between requests running at once.
        if api == "sessions":
            from dev_sessions.sessions import SessionManager

            return SessionManager(self.settings, self.environ)
        from dev_sessions.messaging.messenger import Messenger

        return Messenger(self.settings, self.environ)

    def _path_problem(self, raw: str) -> str | None:
        path = Path(raw)
        if not path.is_absolute():
            return "not an absolute path"
        clean = os.path.normpath(raw)
        if ".." in path.parts or clean not in (raw, raw.rstrip("/")):
            return "not a normalised path"
        resolved = path.resolve()
        if self.roots and not any(resolved == root or root in resolved.parents for root in self.roots):
            return "outside the directories this gateway serves"
        return None

    async def _stream(self, request: web.Request, work: Awaitable[Any]) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=KEEPALIVE_S)
                if done:
                    break
                await response.write(b'{"keepalive": true}\n')
            line = self._result(request, task)
            await response.write(json.dumps(line, ensure_ascii=False).encode() + b"\n")
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            task.cancel()  # the client went away: stop waiting for it
            raise
        return response

    def _result(self, request: web.Request, task: asyncio.Future[Any]) -> dict[str, Any]:
        try:
            value = task.result()
        except DevSessionsError as err:
            request["outcome"] = f"error {err.exit_code} {type(err).__name__}"
            return {"error": {"message": str(err), "exit": err.exit_code, "kind": type(err).__name__}}
        except Exception as err:
            # The one broad catch of a request: its failure must not reach other requests, and its
            # text (which could hold a message) is kept to the log's own lines.
            log.exception("%s failed", request.get("call"))
            request["outcome"] = f"internal {type(err).__name__}"
            return {"error": {"message": f"internal error in the gateway ({type(err).__name__})", "exit": 1}}
        request["outcome"] = "ok"
        return {"result": encode(value)}


def _refuse(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "exit": 1}}, status=status)


def interface_address(name: str) -> str:
    """The IPv4 address of a network interface (``docker0``), or ``name`` itself if it is an address."""
    try:
        ipaddress.ip_address(name)
        return name
    except ValueError:
        pass
    import fcntl
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(
                sock.fileno(), 0x8915, struct.pack("256s", name[:15].encode())
            )  # SIOCGIFADDR
        except OSError as err:
            raise DevSessionsError(f"--bind {name}: no such address or interface ({err.strerror})") from err
    return socket.inet_ntoa(packed[20:24])


def listen(binds: list[str], port: int) -> list[socket.socket]:
    """Bound sockets for every address, on one port (port 0: the first address picks a free one)."""
    sockets = []
    for address in binds:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as err:
            sock.close()
            raise DevSessionsError(f"gateway: cannot listen on {address}:{port} ({err.strerror})") from err
        sock.listen(128)
        port = sock.getsockname()[1]
        sockets.append(sock)
    return sockets


async def serve(gateway: Gateway, sockets: list[socket.socket], announce: Callable[[str], None]) -> None:
    runner = web.AppRunner(gateway.app(), access_log=None, handle_signals=True)
    await runner.setup()
    for sock in sockets:
        await web.SockSite(runner, sock).start()
    for sock in sockets:
        address, port = sock.getsockname()[:2]
        shown = f"[{address}]" if ":" in address else address
        announce(f"dev-sessions gateway {__version__} listening on http://{shown}:{port}")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        gateway.pool.shutdown(wait=False, cancel_futures=True)
