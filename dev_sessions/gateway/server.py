"""The gateway server: every session and messaging call over HTTP, for agents inside containers.

It calls the library in-process (no subprocess per request, no message in any argv). Quick calls run
on a small thread pool; the long ones (``wait``, ``ask``, ``msg wait``) run as coroutines on the
event loop, sleeping on file-system events and the Codex bridge's socket, so a hundred open waits are
a hundred coroutines, not threads. Their answer streams: a keep-alive line every 15 s keeps proxies
and idle timeouts from cutting the request, then the result.

Who may call: every request but ``GET /health`` carries ``Authorization: Bearer <token>``: the owner's
token (``$DEV_SESSIONS_HOME/gateway-token``, or ``DEV_SESSIONS_GATEWAY_TOKEN``; the gateway refuses to
start on an empty or short one) or a scoped token that acts as one name (see :mod:`.tokens` and
:mod:`.policy`). The Host header must be well-formed and name a loopback address, an address the
gateway is bound to, ``host.docker.internal`` or a name given with ``--allow-host`` (this defeats DNS
rebinding); browsers' cross-origin requests are refused; a body over the size limit is refused from
its Content-Length, before it is read; the body must be strict JSON of the types the library method
declares (:mod:`.checks`); and a directory a call would use, given or not, must lie under an allowed
root. Anything malformed gets a 4xx and one log line, never a 500. Errors never echo a message body.
Every request is logged: id, call, outcome, duration.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from dev_sessions import __version__
from dev_sessions.api import Call
from dev_sessions.config import Settings
from dev_sessions.errors import EXIT_ERROR, BadRequest, DevSessionsError, Forbidden, NoSuchCall
from dev_sessions.gateway import checks
from dev_sessions.gateway.policy import admit
from dev_sessions.gateway.protocol import encode, lookup
from dev_sessions.gateway.tokens import OWNER, Principal, TokenRegistry, authenticate, check_owner_token

log = logging.getLogger("dev_sessions.gateway")

DEFAULT_PORT = 6767
DEFAULT_MAX_BODY = 80 * 1024 * 1024  # above the 64 MB a send may carry, with room for JSON escaping
KEEPALIVE_S = 15.0
BODY_TIMEOUT_S = 30.0
LINGER_S = 1.0
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "host.docker.internal")


class Gateway:
    def __init__(
        self,
        settings: Settings,
        *,
        token: str,
        binds: Iterable[str],
        allow_hosts: Iterable[str] = (),
        roots: Iterable[Path] = (),
        max_body: int = DEFAULT_MAX_BODY,
        workers: int = 8,
        libraries: Mapping[str, Callable[[], object]] | None = None,
    ) -> None:
        """``libraries``: what serves each API (a fresh object per call), when not the library itself."""
        self.settings = settings
        self.libraries = dict(libraries or {"sessions": self._sessions, "messages": self._messages})
        self.token = check_owner_token(token, "given to the gateway")
        self.registry = TokenRegistry(settings)
        self.hosts = {checks.normal_host(n) for n in (*LOOPBACK_NAMES, *binds, *allow_hosts)}
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
        try:
            refusal = self._refusal(request)
            response = refusal if refusal is not None else await handler(request)
        except web.HTTPException as err:
            response = web.json_response(
                {"error": {"message": err.reason, "exit": EXIT_ERROR}}, status=err.status
            )
        except BadRequest as err:
            response = _refuse(400, str(err))
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
        refused = checks.host_refusal(request.headers.getall("Host", []), self.hosts)
        if refused is not None:
            return _refuse(*refused)
        why = checks.origin_refusal(request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"))
        if why is not None:
            return _refuse(403, why)
        if request.path == "/health":
            return None
        principal = authenticate(request.headers.get("Authorization"), self.token, self.registry)
        if principal is None:
            return _refuse(401, "missing or wrong bearer token (DEV_SESSIONS_GATEWAY_TOKEN)")
        request["principal"] = principal
        length = request.content_length
        if length is not None and length > self.max_body:
            return _refuse(413, f"request body over {self.max_body} bytes", close=True)
        return None

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "version": __version__})

    async def call(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await asyncio.wait_for(request.read(), BODY_TIMEOUT_S)
        except web.HTTPRequestEntityTooLarge:
            return _refuse(413, f"request body over {self.max_body} bytes", close=True)
        except asyncio.TimeoutError:
            return _refuse(408, f"the body did not arrive within {BODY_TIMEOUT_S:g} s", close=True)
        data = checks.parse_body(body)
        try:
            api, spec, args = lookup(data)
        except NoSuchCall as err:
            return _refuse(404, str(err))
        method = spec.name
        call = f"{api}.{method}"
        request["call"] = call
        principal: Principal = request.get("principal", OWNER)
        target = self._target(api)
        try:
            args = admit(principal, call, spec, args, self._parent_of)
            self._check_paths(spec, args, principal)
            function = getattr(target, method)
            checks.check_args(function, args, call)
        except Forbidden as err:
            return _refuse(403, str(err))
        except BadRequest as err:
            return _refuse(400, str(err))
        twin = getattr(target, f"{method}_async", None) if spec.long else None
        if spec.stream and twin is not None:
            return await self._stream(request, items=twin(**args))
        if twin is not None:
            work: Awaitable[Any] = twin(**args)
        else:
            loop = asyncio.get_running_loop()
            work = loop.run_in_executor(self.pool, functools.partial(function, **args))
        return await self._stream(request, work)

    def _parent_of(self, session_id: str) -> str | None:
        try:
            session = self.libraries["sessions"]().get(session_id)  # type: ignore[attr-defined]
        except LookupError:
            return None
        parent: str | None = session.parent
        return parent or ""

    def _check_paths(self, spec: Call, args: dict[str, Any], principal: Principal) -> None:
        """Every directory the call would use lies under the served roots (and the token's own).

        A path left out is the gateway's own working directory for the library: that one is checked,
        and passed explicitly, so that what was checked is what is used.
        """
        for name in spec.paths:
            if args.get(name) is None:
                args[name] = os.getcwd()
            if not isinstance(args[name], str):
                raise BadRequest(f"{name} must be a string")
            problem = self._path_problem(args[name], principal)
            if problem:
                raise BadRequest(f"{name}: {problem}")

    def _target(self, api: str) -> Any:
        # A fresh library object per call: nothing is shared between requests running at once.
        return self.libraries[api]()

    def _sessions(self) -> object:
        from dev_sessions.sessions import SessionManager

        return SessionManager(self.settings)

    def _messages(self) -> object:
        from dev_sessions.messaging.messenger import Messenger

        return Messenger(self.settings)

    def _path_problem(self, raw: str, principal: Principal = OWNER) -> str | None:
        path = Path(raw)
        if not path.is_absolute():
            return "not an absolute path"
        clean = os.path.normpath(raw)
        if ".." in path.parts or clean not in (raw, raw.rstrip("/")):
            return "not a normalised path"
        resolved = path.resolve()
        if self.roots and not _under(resolved, self.roots):
            return "outside the directories this gateway serves"
        if principal.roots and not _under(resolved, [Path(r) for r in principal.roots]):
            return "outside the directories this token may use"
        return None

    async def _stream(
        self,
        request: web.Request,
        work: Awaitable[Any] | None = None,
        items: AsyncIterator[Any] | None = None,
    ) -> web.StreamResponse:
        """A long call's answer (``work``) after keep-alive lines, or a streamed call's ``items``, each a
        line (``{"item": ...}``) as it comes; either way a last line ``{"result": ...}`` or
        ``{"error": ...}``."""
        response = web.StreamResponse(
            headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"}
        )
        await response.prepare(request)

        async def drain(items: AsyncIterator[Any]) -> None:
            async for item in items:
                line = {"item": encode(item)}
                await response.write(json.dumps(line, ensure_ascii=False).encode() + b"\n")

        assert (work is None) != (items is None)
        task = asyncio.ensure_future(drain(items) if items is not None else work)  # type: ignore[arg-type]
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
            task.cancel()  # the client went away: stop waiting (or following) for it
            raise
        return response

    def _result(self, request: web.Request, task: asyncio.Future[Any]) -> dict[str, Any]:
        try:
            value = task.result()
        except DevSessionsError as err:
            request["outcome"] = f"error {err.exit_code} {type(err).__name__}"
            return {"error": err.to_wire()}
        except Exception as err:
            # The one broad catch of a request: its failure must not reach other requests, and its
            # text (which could hold a message) is kept to the log's own lines.
            log.exception("%s failed", request.get("call"))
            request["outcome"] = f"internal {type(err).__name__}"
            internal = DevSessionsError(f"internal error in the gateway ({type(err).__name__})")
            return {"error": internal.to_wire()}
        request["outcome"] = "ok"
        return {"result": encode(value)}


class OneLineRefusals(logging.Filter):
    """aiohttp refuses a request it cannot even parse (a bad request line, an HTTP/1.1 request without
    Host) before our code sees it, and logs a traceback; one line is what such a refusal deserves."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not (record.exc_info and record.exc_info[1] is not None):
            return record.levelno >= logging.INFO
        error = record.exc_info[1]
        detail = str(getattr(error, "message", "") or error).splitlines()
        record.msg, record.args = (
            "- refused a malformed request: %s (%s)",
            (
                detail[0][:200] if detail else "",
                type(error).__name__,
            ),
        )
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.exc_info, record.exc_text = None, None
        return True


def _refuse(status: int, message: str, *, close: bool = False) -> web.Response:
    response = web.json_response({"error": {"message": message, "exit": EXIT_ERROR}}, status=status)
    if close:
        response.force_close()  # do not wait for (or read) a body we refused
    return response


def _under(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


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
    if not gateway.settings.debug:
        parser_log = logging.getLogger("aiohttp.server")
        parser_log.setLevel(logging.DEBUG)  # a non-HTTP request is logged at debug level: see it too
        parser_log.addFilter(OneLineRefusals())
    # A refused body is not read; aiohttp would otherwise linger 10 s reading it before closing.
    runner = web.AppRunner(gateway.app(), access_log=None, handle_signals=True, lingering_time=LINGER_S)
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
