"""The dashboard's web server (aiohttp, 127.0.0.1 only): pages, their event streams, and the actions.

Every request passes, in this order: the gateway's Host check (a loopback name only: DNS rebinding
gets a 403) and Origin check (none, or this server's own origin; ``Sec-Fetch-Site`` none or
same-origin), then the login: ``/login?code=`` trades a one-time code (:mod:`.auth`) for an HttpOnly,
SameSite=Strict cookie and redirects to ``/``; every page, fragment and event stream needs that
cookie (else a 401 page that says how to log in), and every POST also its CSRF token (the
``X-CSRF-Token`` header the page's script sends, or the form's hidden ``csrf`` field). Only the
static files (the page's script and style, the same for everyone) are served without it.

The library is called in process, each call in a worker thread (``asyncio.to_thread``), so that a
slow call (a ``send`` typing into Claude, a host over ssh) never stalls another page or a stream.
Live updates come from the one :class:`~dev_sessions.dashboard.hub.Hub`.

Nothing secret is logged: one line per request (method, path without its query, status, time), and
errors name neither the code nor the cookie.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from dev_sessions import ids
from dev_sessions.config import Settings
from dev_sessions.dashboard import pages
from dev_sessions.dashboard.auth import LoginCodes, Visit, Visits, csrf_ok
from dev_sessions.dashboard.hub import Hub, Stream, total_line
from dev_sessions.errors import BadRequest, DevSessionsError
from dev_sessions.gateway import checks
from dev_sessions.messaging.messenger import Messenger
from dev_sessions.sessions import SessionManager

log = logging.getLogger("dev_sessions.dashboard")

DEFAULT_PORT = 7433
LOOPBACK = ("127.0.0.1", "localhost")
KEEPALIVE_S = 15.0
MAX_BODY = 2 * 1024 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Dashboard:
    def __init__(self, settings: Settings, port: int) -> None:
        self.settings = settings
        self.port = port
        self.codes = LoginCodes(settings.home)
        self.visits = Visits()
        self.hub = Hub(settings)
        self.hosts = {checks.normal_host(n) for n in (*LOOPBACK, "::1")}
        self.static = {
            name: resources.files("dev_sessions.dashboard").joinpath("static").joinpath(name).read_bytes()
            for name in STATIC
        }

    @property
    def cookie_name(self) -> str:
        # Cookies ignore the port: two dashboards on one machine must not overwrite each other's.
        return f"dev_sessions_{self.port}"

    @property
    def origins(self) -> set[str]:
        return {f"http://{host}:{self.port}" for host in LOOPBACK}

    def login_url(self, code: str) -> str:
        return f"http://127.0.0.1:{self.port}/login?{urlencode({'code': code})}"

    # -- the application -------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self.guard])
        router = app.router
        router.add_get("/login", self.login)
        router.add_post("/logout", self.logout)
        router.add_get("/static/{name}", self.static_file)
        router.add_get("/", self.overview)
        router.add_get("/events/sessions", self.sessions_events)
        router.add_get("/s/{id}", self.conversation)
        router.add_get("/events/s/{id}", self.conversation_events)
        router.add_post("/s/{id}/{action}", self.act)
        router.add_get("/messages", self.messages)
        router.add_get("/events/messages", self.messages_events)
        router.add_post("/messages/send", self.message_send)
        app.on_startup.append(self._start_hub)
        app.on_shutdown.append(self._stop_hub)
        return app

    async def _start_hub(self, app: web.Application) -> None:
        self.hub.start()

    async def _stop_hub(self, app: web.Application) -> None:
        await self.hub.stop()

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        try:
            response = self._refusal(request) or await handler(request)
        except web.HTTPException as err:
            response = _html(pages.error_page(err.reason, err.text or err.reason), err.status)
        except BadRequest as err:
            response = _html(pages.error_page("Bad request", str(err)), 400)
        # The path only: a query may carry a login code or a search.
        log.info(
            "%s %s %s %.0fms",
            request.method,
            request.path,
            response.status,
            (time.monotonic() - started) * 1000,
        )
        return response

    def _refusal(self, request: web.Request) -> web.StreamResponse | None:
        refused = checks.host_refusal(request.headers.getall("Host", []), self.hosts)
        if refused is not None:
            return web.Response(status=refused[0], text=refused[1])
        why = checks.origin_refusal(
            request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"), self.origins
        )
        if why is not None:
            return web.Response(status=403, text=why)
        if request.path == "/login" or request.path.startswith("/static/"):
            return None
        visit = self.visits.get(request.cookies.get(self.cookie_name))
        if visit is None:
            if request.path.startswith("/events/") or request.method != "GET":
                return web.Response(status=401, text="log in with the URL `dev-sessions dashboard` printed")
            return _html(pages.login_needed("You are not logged in."), 401)
        request["visit"] = visit
        return None

    def _visit(self, request: web.Request) -> Visit:
        visit: Visit = request["visit"]
        return visit

    async def _form(self, request: web.Request) -> dict[str, str]:
        """The POST's fields, once its CSRF token is checked (403 without it)."""
        form = await request.post()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        token = request.headers.get("X-CSRF-Token") or fields.get("csrf")
        if not csrf_ok(self._visit(request), token):
            raise web.HTTPForbidden(reason="Forbidden", text="missing or wrong CSRF token: reload the page")
        return fields

    # -- login ----------------------------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.StreamResponse:
        code = request.query.get("code", "")
        if not self.codes.use(code):
            if self.visits.get(request.cookies.get(self.cookie_name)) is not None:
                return _redirect("/")  # logged in already: the used link just opens the page
            return _html(pages.login_needed("This login link is used up, expired, or not one of ours."), 401)
        # A new cookie each login, and the browser's old one (if any) ends with its streams.
        self._end_visit(request.cookies.get(self.cookie_name))
        cookie, _ = self.visits.start()
        response = _redirect("/")
        response.set_cookie(
            self.cookie_name, cookie, httponly=True, samesite="Strict", path="/", max_age=None
        )
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        await self._form(request)
        self._end_visit(request.cookies.get(self.cookie_name))
        response: web.Response = _redirect("/login")
        if request.headers.get("X-CSRF-Token"):
            response = web.json_response({"ok": True, "redirect": "/login"})
        response.del_cookie(self.cookie_name, path="/")
        return response

    def _end_visit(self, cookie: str | None) -> None:
        ended = self.visits.end(cookie)
        if ended is not None:
            self.hub.end_visit(ended.csrf)

    async def static_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in self.static:
            raise web.HTTPNotFound(reason="Not found", text="no such file")
        return web.Response(
            body=self.static[name],
            content_type=STATIC[name],
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    # -- pages ----------------------------------------------------------------------------------------

    async def overview(self, request: web.Request) -> web.StreamResponse:
        visit = self._visit(request)
        look = self.hub.last
        if look is None:
            look = await asyncio.to_thread(self.hub._look, set(), None)
        body = pages.overview(pages.session_rows(look.rows, look.usage), total_line(look))
        return _html(pages.page("Sessions", body, csrf=visit.csrf, stream="/events/sessions", nav="sessions"))

    def _session_id(self, request: web.Request) -> str:
        sid = request.match_info["id"]
        if not ids.is_valid(sid):
            raise web.HTTPNotFound(reason="No such session", text=f"{sid}: no such session")
        return sid

    async def conversation(self, request: web.Request) -> web.StreamResponse:
        visit = self._visit(request)
        sid = self._session_id(request)

        def read() -> tuple[Any, ...]:
            manager = SessionManager(self.settings)
            session = manager.get(sid)
            status = manager.status(sid)
            items = manager.logs(sid)
            try:
                (usage,) = manager.usage([sid]).sessions
            except DevSessionsError as err:
                return session, status, items, str(err)
            return session, status, items, usage

        try:
            session, status, items, usage = await asyncio.to_thread(read)
        except DevSessionsError as err:
            status_code = 404 if isinstance(err, LookupError) else 502
            return _html(pages.error_page(sid, str(err), csrf=visit.csrf), status_code)
        body = pages.conversation(session, status, items, visit.csrf, usage)
        stream = f"/events/s/{quote(sid)}?after={len(items)}"
        return _html(pages.page(sid, body, csrf=visit.csrf, stream=stream, nav="sessions"))

    async def messages(self, request: web.Request) -> web.StreamResponse:
        visit = self._visit(request)
        query = request.query
        identity = query.get("as") or "user"
        search = query.get("q", "").strip()
        thread = query.get("thread", "")
        space = query.get("space", "")

        def read() -> dict[str, Any]:
            messenger = Messenger(self.settings)
            agents = messenger.agents()
            spaces = messenger.spaces()
            error = ""
            heading, found, reply_to, to = f"Inbox of {identity}", [], None, ""
            try:
                if thread:
                    if not thread.isdigit():
                        raise BadRequest("thread: not a message id")
                    found = messenger.thread(int(thread))
                    heading = f"Thread #{thread}"
                    if found:
                        reply_to, to = found[-1].id, found[-1].sender
                elif space:
                    found = messenger.space_read(space, identity)
                    heading, to = f"Space {space}", space
                elif search:
                    found = messenger.search(search)
                    heading = f"Search: {search}"
                else:
                    found = messenger.read(identity)
            except DevSessionsError as err:
                error = str(err)
            names = ["user", *sorted({a.name for a in agents} - {"user"})]
            if identity not in names:
                names.append(identity)
            return {
                "identity": identity,
                "identities": names,
                "agents": agents,
                "spaces": spaces,
                "heading": heading,
                "messages": found,
                "query": search,
                "csrf": visit.csrf,
                "reply_to": reply_to,
                "to": to,
                "error": error,
            }

        body = pages.messages_page(**await asyncio.to_thread(read))
        if request.headers.get("X-Fragment"):
            return _html(body)
        return _html(pages.page("Messages", body, csrf=visit.csrf, stream="/events/messages", nav="messages"))

    # -- actions --------------------------------------------------------------------------------------

    async def act(self, request: web.Request) -> web.StreamResponse:
        fields = await self._form(request)
        sid = self._session_id(request)
        action = request.match_info["action"]
        manager = SessionManager(self.settings)
        work: Callable[[], str]
        if action == "send":
            text = fields.get("text", "")
            if not text.strip():
                return _answer(request, False, "the prompt is empty", status=400)

            def work() -> str:
                manager.send(sid, text)
                return f"{sid}: sent"
        elif action == "respond":
            answer = fields.get("answer", "")

            def work() -> str:
                return f"{sid}: answered {manager.respond(sid, answer)}"
        elif action == "interrupt":

            def work() -> str:
                stopped = manager.interrupt(sid)
                return f"{sid}: interrupted" if stopped else f"{sid}: no turn was running"
        elif action == "kill":
            if fields.get("confirm") != sid:
                return _answer(request, False, f"{sid}: not killed (not confirmed)", status=400)

            def work() -> str:
                (killed,) = manager.kill([sid])
                return f"{sid}: killed" + (f" ({killed.note})" if getattr(killed, "note", None) else "")
        else:
            raise web.HTTPNotFound(reason="Not found", text=f"no action {action!r}")
        try:
            said = await asyncio.to_thread(work)
        except DevSessionsError as err:
            return _answer(request, False, str(err), status=409 if not isinstance(err, LookupError) else 404)
        finally:
            self.hub.poke()
        log.info("%s %s done", sid, action)
        if action == "kill":
            return _answer(request, True, said, redirect="/")
        return _answer(request, True, said, back=f"/s/{quote(sid)}")

    async def message_send(self, request: web.Request) -> web.StreamResponse:
        fields = await self._form(request)
        messenger = Messenger(self.settings)
        identity = fields.get("as") or "user"
        body = fields.get("body", "")
        to = fields.get("to", "")
        priority = fields.get("priority", "normal")
        reply = fields.get("reply_to", "")

        def work() -> str:
            if reply:
                if not reply.isdigit():
                    raise BadRequest("reply_to: not a message id")
                sent = messenger.reply(int(reply), body, sender=identity, priority=priority)
            else:
                sent = messenger.send(to, body, sender=identity, priority=priority)
            return f"sent #{sent.id} as {identity}"

        try:
            said = await asyncio.to_thread(work)
        except (DevSessionsError, BadRequest) as err:
            return _answer(request, False, str(err), status=400)
        self.hub.poke()
        return _answer(request, True, said, back="/messages?" + urlencode({"as": identity}))

    # -- event streams --------------------------------------------------------------------------------

    async def sessions_events(self, request: web.Request) -> web.StreamResponse:
        return await self._follow(request, Stream("sessions", self._visit(request).csrf))

    async def conversation_events(self, request: web.Request) -> web.StreamResponse:
        sid = self._session_id(request)
        after = request.headers.get("Last-Event-ID") or request.query.get("after", "0")
        stream = Stream("conversation", self._visit(request).csrf, session_id=sid)
        stream.sent = int(after) if after.isdigit() else 0
        return await self._follow(request, stream)

    async def messages_events(self, request: web.Request) -> web.StreamResponse:
        return await self._follow(request, Stream("messages", self._visit(request).csrf))

    async def _follow(self, request: web.Request, stream: Stream) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
                "X-Content-Type-Options": "nosniff",
            }
        )
        await response.prepare(request)
        await self.hub.join(stream)
        try:
            # After the join: once a page has its first line, what changes from then on is sent to it
            # (the tests send only then; written before, a change could fall between the two).
            await response.write(b"retry: 2000\n\n")
            while True:
                try:
                    item = await asyncio.wait_for(stream.queue.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if item is None:
                    break
                event, data = item
                line = f"event: {event}\n"
                if "count" in data:
                    line += f"id: {data['count']}\n"
                line += f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
                await response.write(line.encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the page went away
        finally:
            self.hub.leave(stream)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", headers=SECURITY_HEADERS)


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _answer(
    request: web.Request,
    ok: bool,
    message: str,
    *,
    status: int = 200,
    redirect: str | None = None,
    back: str = "/",
) -> web.StreamResponse:
    """What an action answers: JSON to the page's script; to a plain form, a page (or a redirect)."""
    if request.headers.get("X-CSRF-Token"):
        data: dict[str, Any] = {"ok": ok, "message": message}
        if redirect:
            data["redirect"] = redirect
        return web.json_response(
            data, status=status if not ok else 200, headers={"Cache-Control": "no-store"}
        )
    if ok:
        return _redirect(redirect or back)
    return _html(pages.error_page("Not done", message), status)


# -- serving --------------------------------------------------------------------------------------------


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1 (port 0: a free one); a port in use is one clear line."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as err:
        sock.close()
        if err.errno == 98:  # EADDRINUSE
            raise DevSessionsError(
                f"dashboard: port {port} is in use; choose another with --port N (--port 0: any free one)"
            ) from None
        raise DevSessionsError(f"dashboard: cannot listen on 127.0.0.1:{port} ({err.strerror})") from None
    sock.listen(128)
    return sock


def record_path(settings: Settings) -> Path:
    return settings.home / "dashboard" / "server.json"


def running(settings: Settings) -> int | None:
    """The port of the dashboard already serving this state directory, if one answers."""
    from dev_sessions.dashboard.auth import alive
    from dev_sessions.files import read_text

    try:
        found = json.loads(read_text(record_path(settings)) or "null")
        pid, port = int(found["pid"]), int(found["port"])
    except (ValueError, TypeError, KeyError, OSError):
        return None
    if not alive(pid):
        return None
    with socket.socket() as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(("127.0.0.1", port))
        except OSError:
            return None
    return port


async def serve(dashboard: Dashboard, sock: socket.socket, ready: Callable[[], None]) -> None:
    from dev_sessions.files import private_dir, write_atomic

    runner = web.AppRunner(dashboard.app(), access_log=None, handle_signals=True, shutdown_timeout=1.0)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    record = record_path(dashboard.settings)
    private_dir(record.parent)
    write_atomic(record, json.dumps({"pid": os.getpid(), "port": dashboard.port}).encode())
    ready()
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(record.read_text()).get("pid") == os.getpid():
                record.unlink()
        await runner.cleanup()
