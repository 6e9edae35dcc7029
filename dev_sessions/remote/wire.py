"""The warm path's wire, both ends (:mod:`dev_sessions.remote.warm` here, :mod:`dev_sessions.remote.serve`
on the host): lines of JSON over a stream socket, the server's hello first. Standard library only.
"""

from __future__ import annotations

import json
import socket
from typing import Any

PROTOCOL = 1
MAX_LINE = 64 * 1024 * 1024  # the gateway's body limit is far below


def read_line(sock: socket.socket, limit: int = MAX_LINE) -> bytes:
    """Bytes up to and with the first newline, or what came before the other side closed."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n") or size > limit:
            break
    return b"".join(chunks)


def greet(sock: socket.socket) -> dict[str, Any] | None:
    """The server's hello on a fresh connection, or None when none comes (nothing answers there)."""
    try:
        line = read_line(sock, 4096)
        hello = json.loads(line) if line.endswith(b"\n") else None
    except (OSError, ValueError):
        return None
    if not isinstance(hello, dict) or hello.get("serve") != PROTOCOL:
        return None
    return hello
