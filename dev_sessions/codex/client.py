"""The asyncio transport for the app-server's JSON-RPC: the only module that imports websockets.

``AppServerClient`` moves the frames of a ``protocol.Protocol`` over one WebSocket: it connects with
the capability token, performs the ``initialize`` handshake, resolves each call's future when its
response arrives (every call has a timeout), and hands notifications and server requests to the
listeners it was given. A lost connection fails the calls in flight and tells the listeners; it never
touches the app-server process, whose other clients' turns keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from dev_sessions import __version__
from dev_sessions.codex.protocol import (
    ErrorResponse,
    Event,
    JsonObject,
    Notification,
    Protocol,
    ProtocolError,
    Response,
    ServerRequest,
)
from dev_sessions.errors import AppServerError, AppServerUnavailable

log = logging.getLogger(__name__)

Listener = Callable[[Notification | ServerRequest | None], None]
"""Called in the reader task for every notification and server request; None means the link is gone."""


class AppServerClient:
    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        listeners: list[Listener] | None = None,
        timeout: float = 30.0,
        experimental: bool = True,
    ) -> None:
        self.url = url
        self.token = token
        self.timeout = timeout
        self.listeners = list(listeners or [])
        self.experimental = experimental
        self._protocol = Protocol()
        self._futures: dict[int, asyncio.Future[Response | ErrorResponse]] = {}
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.info: JsonObject = {}

    async def connect(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            self._ws = await connect(
                self.url,
                additional_headers=headers,
                max_size=None,
                open_timeout=self.timeout,
                close_timeout=2,
                compression=None,
            )
        except InvalidStatus as err:
            raise AppServerUnavailable(
                url=self.url, detail=f"refused the connection ({err.response.status_code})"
            ) from err
        except (OSError, WebSocketException, asyncio.TimeoutError) as err:
            raise AppServerUnavailable(url=self.url, detail=f"cannot connect ({err})") from err
        self._reader = asyncio.create_task(self._read(), name="app-server reader")
        capabilities: JsonObject = {"experimentalApi": True} if self.experimental else {}
        self.info = await self.call(
            "initialize",
            {
                "clientInfo": {"name": "dev-sessions", "title": "dev-sessions", "version": __version__},
                "capabilities": capabilities or None,
            },
        )
        await self._send(Protocol.notify("initialized"))

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self.closed.is_set()

    async def call(
        self, method: str, params: JsonObject | None = None, timeout: float | None = None
    ) -> JsonObject:
        """Send a request and return its result; ``AppServerError`` if it answers with an error."""
        if not self.connected:
            raise AppServerUnavailable(url=self.url, detail="not connected")
        request_id, frame = self._protocol.request(method, params)
        future: asyncio.Future[Response | ErrorResponse] = asyncio.get_running_loop().create_future()
        self._futures[request_id] = future
        try:
            await self._send(frame)
            answer = await asyncio.wait_for(future, timeout or self.timeout)
        except asyncio.TimeoutError:
            self._protocol.forget(request_id)
            raise AppServerUnavailable(
                url=self.url, detail=f"no answer to {method} within {timeout or self.timeout:g} s"
            ) from None
        finally:
            self._futures.pop(request_id, None)
        if isinstance(answer, ErrorResponse):
            raise AppServerError(method=method, code=answer.code, message=answer.message)
        return answer.result

    async def reply(self, request_id: int | str, result: JsonObject) -> None:
        await self._send(Protocol.reply(request_id, result))

    async def reply_error(self, request_id: int | str, code: int, message: str) -> None:
        await self._send(Protocol.reply_error(request_id, code, message))

    async def _send(self, frame: str) -> None:
        if self._ws is None:
            raise AppServerUnavailable(url=self.url, detail="not connected")
        try:
            await self._ws.send(frame)
        except ConnectionClosed as err:
            raise AppServerUnavailable(url=self.url, detail="connection lost") from err

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                try:
                    event = self._protocol.receive(frame)
                except ProtocolError as err:
                    log.warning("ignoring a frame from the app-server: %s", err)
                    continue
                self._dispatch(event)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            lost = AppServerUnavailable(url=self.url, detail="connection lost")
            for future in self._futures.values():
                if not future.done():
                    future.set_exception(lost)
            for listener in self.listeners:
                self._tell(listener, None)

    def _dispatch(self, event: Event | None) -> None:
        if isinstance(event, Response | ErrorResponse):
            future = self._futures.get(event.id)
            if future is not None and not future.done():
                future.set_result(event)
        elif isinstance(event, Notification | ServerRequest):
            for listener in self.listeners:
                self._tell(listener, event)

    @staticmethod
    def _tell(listener: Listener, event: Notification | ServerRequest | None) -> None:
        try:
            listener(event)
        except Exception:
            # A listener's bug must not stop the reader, which every other call depends on.
            log.exception("listener failed on %s", getattr(event, "method", "connection loss"))

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
