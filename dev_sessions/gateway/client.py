"""Sandbox mode: inside a container, every command goes to the gateway on the host.

``remote_sessions()`` and ``remote_messages()`` are the library's API (its ``@call`` methods, see
:mod:`dev_sessions.api`) over the gateway, derived from the library's own signatures (no method is
written here): they return the same objects as the library, so the command line runs unchanged and
prints what it prints on the host; errors come back as the same class, message and exit code.

What is decided here, in the container, and never left to the host:

* who "I" am (a call's ``identity`` argument: ``--from``/``--as``, ``DEV_SESSIONS_AGENT``,
  ``DEV_SESSIONS_ID``): sent explicitly when the container says; otherwise left to the gateway, which
  takes ``user`` for the owner's token and the token's own name for a scoped token;
* paths (a call's ``paths`` arguments): a container path at or under ``CONTAINER_WORKSPACE`` (default
  ``/workspace``), with ``..`` and symlinks resolved first, becomes the same path under ``HOST_PATH``;
  anything else is refused here, never sent as it is;
* files given with ``--file`` are read here (by the command line, before any call).

Only the standard library is used (``http.client``), so a command in a container starts as fast as
on the host.
"""

from __future__ import annotations

import io
import json
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from dev_sessions.config import Settings
from dev_sessions.errors import GatewayUnreachable, ReportedError, UsageError, revive
from dev_sessions.remote.calls import Remote

if TYPE_CHECKING:
    from dev_sessions.api import MessagesAPI, SessionsAPI


class GatewayClient:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.gateway_url
        self.token = settings.gateway_token or ""
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"DEV_SESSIONS_GATEWAY_URL={self.url!r} is not an http URL")
        self.parts = parts

    def _exchange(
        self, method: str, path: str, body: bytes | None, timeout: float | None
    ) -> tuple[int, str, Iterator[bytes]]:
        """One HTTP/1.1 request; the status, its reason, and the body's lines as they arrive.

        Plain http (the gateway on the host's loopback or bridge) is spoken over a socket directly:
        http.client costs more to import (14 ms) than the whole exchange takes.
        """
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        if self.parts.scheme == "https":
            return self._exchange_https(method, path, body, headers, timeout)
        host, port = self.parts.hostname or "", self.parts.port or 80
        sock = socket.create_connection((host, port), timeout=timeout)
        data = body or b""
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.parts.netloc}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers.items()] + [f"Content-Length: {len(data)}", "", ""]
        sock.sendall("\r\n".join(head).encode() + data)
        reader = sock.makefile("rb")
        status_line = reader.readline().decode("latin-1").split(" ", 2)
        if len(status_line) < 2 or not status_line[1].isdigit():
            sock.close()
            raise ValueError("not an HTTP answer")
        chunked = False
        while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        return (
            int(status_line[1]),
            status_line[2].strip() if len(status_line) > 2 else "",
            _lines(reader, sock, chunked),
        )

    def _exchange_https(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str], timeout: float | None
    ) -> tuple[int, str, Iterator[bytes]]:
        import http.client

        connection = http.client.HTTPSConnection(self.parts.hostname or "", self.parts.port, timeout=timeout)
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.reason, iter(response)

    def health(self) -> dict[str, Any]:
        try:
            _, _, lines = self._exchange("GET", "/health", None, 10)
            return dict(json.loads(b"".join(lines) or b"{}"))
        except (OSError, ValueError) as err:
            raise GatewayUnreachable(url=self.url, detail=str(err)) from err

    def call(self, api: str, method: str, args: Mapping[str, object], *, long: bool = False) -> object:
        from dev_sessions.gateway.protocol import decode

        if not self.token:
            raise UsageError(
                "sandbox mode needs DEV_SESSIONS_GATEWAY_TOKEN (the host's `dev-sessions gateway token`)"
            )
        body = json.dumps({"api": api, "method": method, "args": dict(args)}, ensure_ascii=False).encode()
        try:
            # A long call gets a keep-alive line every 15 s: a minute of silence means the link is dead.
            status, reason, lines = self._exchange("POST", "/v1/call", body, 60 if long else 120)
            if status != 200:
                error = json.loads(b"".join(lines) or b"{}").get("error", {})
                raise ReportedError(
                    f"gateway refused {api}.{method} ({status}): {error.get('message') or reason}"
                )
            last = b""
            for line in lines:
                if line.strip() and not line.startswith(b'{"keepalive"'):
                    last = line
            answer = json.loads(last or b"{}")
        except OSError as err:
            raise GatewayUnreachable(url=self.url, detail=str(err)) from err
        except ValueError as err:
            raise ReportedError(f"gateway {self.url}: garbled answer to {api}.{method}") from err
        if "error" in answer:
            raise revive(answer["error"])
        if "result" not in answer:
            raise ReportedError(f"gateway {self.url}: no answer to {api}.{method} (connection cut?)")
        return decode(answer["result"])

    def stream(self, api: str, method: str, args: Mapping[str, object]) -> Iterator[object]:
        """A streamed call (``@call(stream=True)``): each item as the gateway sends it, a line each."""
        from dev_sessions.gateway.protocol import decode

        if not self.token:
            raise UsageError(
                "sandbox mode needs DEV_SESSIONS_GATEWAY_TOKEN (the host's `dev-sessions gateway token`)"
            )
        body = json.dumps({"api": api, "method": method, "args": dict(args)}, ensure_ascii=False).encode()
        try:
            status, reason, lines = self._exchange("POST", "/v1/call", body, 60)
            if status != 200:
                error = json.loads(b"".join(lines) or b"{}").get("error", {})
                raise ReportedError(
                    f"gateway refused {api}.{method} ({status}): {error.get('message') or reason}"
                )
            for line in lines:
                if not line.strip() or line.startswith(b'{"keepalive"'):
                    continue
                answer = json.loads(line)
                if "item" in answer:
                    yield decode(answer["item"])
                elif "error" in answer:
                    raise revive(answer["error"])
                elif "result" in answer:
                    return
        except OSError as err:
            raise GatewayUnreachable(url=self.url, detail=str(err)) from err
        except ValueError as err:
            raise ReportedError(f"gateway {self.url}: garbled line in {api}.{method}") from err
        raise ReportedError(
            f"gateway {self.url}: {api}.{method} ended without its last line (connection cut?)"
        )


def _lines(reader: io.BufferedReader, sock: socket.socket, chunked: bool) -> Iterator[bytes]:
    """The lines of an HTTP body (chunked or not), then the connection is closed."""
    try:
        pending = b""
        while True:
            if chunked:
                size = int(reader.readline().split(b";")[0].strip() or b"0", 16)
                data = reader.read(size) if size else b""
                reader.readline()  # the CRLF after the chunk
            else:
                data = reader.read1(65536)
            if not data:
                break
            pending += data
            *complete, pending = pending.split(b"\n")
            yield from (line + b"\n" for line in complete)
        if pending:
            yield pending
    finally:
        reader.close()
        sock.close()


def host_path(container_path: str | None, settings: Settings) -> str:
    """The host path for a container path (the current directory when None)."""
    workspace = settings.container_workspace
    raw = container_path if container_path is not None else os.getcwd()
    resolved = Path(raw).expanduser().resolve()  # `..` and symlinks first, then the check
    workspace_real = workspace.resolve()
    if resolved != workspace_real and workspace_real not in resolved.parents:
        raise UsageError(
            f"{raw}: outside the container workspace {workspace} (only paths under it exist on the host)"
        )
    if not settings.host_path:
        raise UsageError(
            "sandbox mode needs HOST_PATH: the host directory mounted at the container workspace"
        )
    relative = resolved.relative_to(workspace_real)
    return str(Path(settings.host_path) / relative) if str(relative) != "." else settings.host_path


def remote_sessions(settings: Settings) -> SessionsAPI:
    """``SessionsAPI`` over the gateway."""
    return cast("SessionsAPI", _remote("sessions", settings))


def remote_messages(settings: Settings) -> MessagesAPI:
    """``MessagesAPI`` over the gateway."""
    return cast("MessagesAPI", _remote("messages", settings))


def _remote(api: str, settings: Settings) -> Remote:
    return Remote(api, settings, GatewayClient(settings), lambda given: host_path(given, settings))
