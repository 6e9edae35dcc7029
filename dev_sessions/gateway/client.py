"""Sandbox mode: inside a container, every command goes to the gateway on the host.

``RemoteSessionManager`` and ``RemoteMessenger`` have the methods of ``SessionManager`` and
``Messenger`` and return the same objects, so the command line runs unchanged and prints what it
prints on the host; errors come back with their message and exit code.

What is decided here, in the container, and never left to the host:

* who "I" am (``--from``/``--as``, ``DEV_SESSIONS_AGENT``, ``DEV_SESSIONS_ID``): sent explicitly when
  the container says; otherwise left to the gateway, which takes ``user`` for the owner's token and
  the token's own name for a scoped token;
* paths: a container path at or under ``CONTAINER_WORKSPACE`` (default ``/workspace``), with ``..``
  and symlinks resolved first, becomes the same path under ``HOST_PATH``; anything else is refused
  here, never sent as it is;
* files given with ``--file`` are read here (by the command line, before any call).

Only the standard library is used (``http.client``), so a command in a container starts as fast as
on the host.
"""

from __future__ import annotations

import io
import json
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dev_sessions.errors import DevSessionsError, ReportedError, UsageError

DEFAULT_URL = "http://host.docker.internal:6767"
DEFAULT_WORKSPACE = "/workspace"


class GatewayUnreachable(DevSessionsError):
    def __init__(self, *, url: str, detail: str) -> None:
        super().__init__(
            f"gateway {url} does not answer ({detail}): is `dev-sessions gateway` running on the host, "
            "and was the container started with --add-host=host.docker.internal:host-gateway?"
        )


class GatewayClient:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = dict(os.environ if environ is None else environ)
        self.environ = env
        self.url = env.get("DEV_SESSIONS_GATEWAY_URL") or DEFAULT_URL
        self.token = env.get("DEV_SESSIONS_GATEWAY_TOKEN") or ""
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

    def call(self, api: str, method: str, args: Mapping[str, Any], *, long: bool = False) -> Any:
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
            error = answer["error"]
            raise ReportedError(
                str(error.get("message")), int(error.get("exit", 1)), str(error.get("kind", ""))
            )
        if "result" not in answer:
            raise ReportedError(f"gateway {self.url}: no answer to {api}.{method} (connection cut?)")
        return decode(answer["result"])


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


def host_path(container_path: str | None, environ: Mapping[str, str]) -> str:
    """The host path for a container path (the current directory when None)."""
    workspace = Path(environ.get("CONTAINER_WORKSPACE") or DEFAULT_WORKSPACE)
    host_root = environ.get("HOST_PATH")
    raw = container_path if container_path is not None else os.getcwd()
    resolved = Path(raw).expanduser().resolve()  # `..` and symlinks first, then the check
    workspace_real = workspace.resolve()
    if resolved != workspace_real and workspace_real not in resolved.parents:
        raise UsageError(
            f"{raw}: outside the container workspace {workspace} (only paths under it exist on the host)"
        )
    if not host_root:
        raise UsageError(
            "sandbox mode needs HOST_PATH: the host directory mounted at the container workspace"
        )
    relative = resolved.relative_to(workspace_real)
    return str(Path(host_root) / relative) if str(relative) != "." else str(Path(host_root))


class RemoteSessionManager:
    """``SessionManager`` over the gateway."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.client = GatewayClient(self.environ)

    def _call(self, method: str, long: bool = False, **args: Any) -> Any:
        return self.client.call("sessions", method, args, long=long)

    def creator(self) -> str | None:
        return self.environ.get("DEV_SESSIONS_AGENT") or self.environ.get("DEV_SESSIONS_ID") or None

    def create(self, *, path: str | None = None, **args: Any) -> Any:
        if not args.get("plan"):
            args.pop("plan", None)  # newer than some gateways: sent only when asked for
        return self._call("create", path=host_path(path, self.environ), parent=self.creator(), **args)

    def get(self, session_id: str) -> Any:
        return self._call("get", session_id=session_id)

    def send(self, session_id: str, text: str, *, steer: bool = False, plan: bool | None = None) -> Any:
        # plan is newer than some gateways: sent only when asked for.
        extra = {} if plan is None else {"plan": plan}
        return self._call("send", session_id=session_id, text=text, steer=steer, **extra)

    def wait(self, session_ids: Sequence[str], timeout: float | None = None, *, goal: bool = False) -> Any:
        return self._call("wait", True, session_ids=list(session_ids), timeout=timeout, goal=goal)

    def ask(self, session_id: str, text: str, timeout: float | None = None) -> Any:
        return self._call("ask", True, session_id=session_id, text=text, timeout=timeout)

    def last_messages(self, session_id: str, count: int = 1) -> Any:
        return self._call("last_messages", session_id=session_id, count=count)

    def status(self, session_id: str) -> Any:
        return self._call("status", session_id=session_id)

    def interrupt(self, session_id: str) -> Any:
        return self._call("interrupt", session_id=session_id)

    def respond(self, session_id: str, answer: str) -> Any:
        return self._call("respond", session_id=session_id, answer=answer)

    def goal(
        self, session_id: str, action: str = "get", objective: str | None = None, budget: int | None = None
    ) -> Any:
        return self._call("goal", session_id=session_id, action=action, objective=objective, budget=budget)

    def logs(self, session_id: str) -> Any:
        return self._call("logs", session_id=session_id)

    def screen(self, session_id: str) -> Any:
        return self._call("screen", session_id=session_id)

    def inspect(self, session_id: str) -> Any:
        return self._call("inspect", session_id=session_id)

    def list_sessions(self) -> Any:
        return self._call("list_sessions")

    def kill(self, session_ids: Sequence[str]) -> Any:
        return self._call("kill", session_ids=list(session_ids))

    def kill_all(self) -> Any:
        return self._call("kill_all")

    def kill_older_than(self, seconds: float) -> Any:
        return self._call("kill_older_than", seconds=seconds)


class RemoteMessenger:
    """``Messenger`` over the gateway; who "I" am is settled here."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.client = GatewayClient(self.environ)

    def me(self, explicit: str | None = None) -> str:
        """Who "I" am, for display; ``user`` when the container does not say."""
        return self._who(explicit) or "user"

    def _who(self, explicit: str | None) -> str | None:
        """Who "I" am as sent: None lets the gateway decide (a scoped token knows its own name)."""
        from dev_sessions.messaging.messenger import check_name

        name = explicit or self.environ.get("DEV_SESSIONS_AGENT") or self.environ.get("DEV_SESSIONS_ID")
        return None if name is None else check_name(name, "agent name")

    def _call(self, method: str, long: bool = False, **args: Any) -> Any:
        return self.client.call("messages", method, args, long=long)

    def send(self, to: str, body: str, *, sender: str | None = None, **args: Any) -> Any:
        return self._call("send", to=to, body=body, sender=self._who(sender), **args)

    def reply(
        self, message_id: int, body: str, *, sender: str | None = None, priority: str = "normal"
    ) -> Any:
        return self._call(
            "reply", message_id=message_id, body=body, sender=self._who(sender), priority=priority
        )

    def read(self, reader: str | None = None, **args: Any) -> Any:
        return self._call("read", reader=self._who(reader), **args)

    def wait(self, reader: str | None = None, timeout: float | None = None, *, mark_read: bool = True) -> Any:
        return self._call("wait", True, reader=self._who(reader), timeout=timeout, mark_read=mark_read)

    def thread(self, message_id: int) -> Any:
        return self._call("thread", message_id=message_id)

    def mark_read(self, message_ids: list[int] | None, reader: str | None = None) -> Any:
        return self._call("mark_read", message_ids=message_ids, reader=self._who(reader))

    def status(self, message_id: int) -> Any:
        return self._call("status", message_id=message_id)

    def search(self, query: str, limit: int = 50) -> Any:
        return self._call("search", query=query, limit=limit)

    def feed(self, since: str | None = None, limit: int | None = None) -> Any:
        return self._call("feed", since=since, limit=limit)

    def create_space(
        self, name: str, parent: str | None = None, description: str = "", creator: str | None = None
    ) -> Any:
        return self._call(
            "create_space", name=name, parent=parent, description=description, creator=self._who(creator)
        )

    def spaces(self) -> Any:
        return self._call("spaces")

    def join(self, space: str, agent: str | None = None) -> Any:
        return self._call("join", space=space, agent=self._who(agent))

    def leave(self, space: str, agent: str | None = None) -> Any:
        return self._call("leave", space=space, agent=self._who(agent))

    def members(self, space: str) -> Any:
        return self._call("members", space=space)

    def space_send(self, space: str, body: str, *, sender: str | None = None, **args: Any) -> Any:
        return self._call("space_send", space=space, body=body, sender=self._who(sender), **args)

    def space_read(self, space: str, reader: str | None = None, **args: Any) -> Any:
        return self._call("space_read", space=space, reader=self._who(reader), **args)

    def register(self, name: str) -> Any:
        return self._call("register", name=name)

    def heartbeat(self, agent: str | None = None, status: str | None = None) -> Any:
        return self._call("heartbeat", agent=self._who(agent), status=status)

    def agents(self, online: bool = False) -> Any:
        return self._call("agents", online=online)
