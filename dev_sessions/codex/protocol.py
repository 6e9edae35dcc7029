"""The Codex app-server's JSON-RPC, without any I/O: frames in, events out.

What goes over the wire (Codex 0.169.0): one JSON object per WebSocket text frame, without the
``"jsonrpc"`` member. Four kinds of message, told apart by their members:

* response: ``{"id", "result"}`` or ``{"id", "error": {"code", "message"}}``, no ``method``;
* notification: ``{"method", "params"}``, no ``id``;
* server request: ``{"id", "method", "params"}``: approvals and questions the server asks *us*. Their
  ids come from the server's own counter (from 0) and must never be matched against our requests;
* our requests, which only this module numbers.

``Protocol`` numbers requests, correlates responses with them, and hands back typed events. It never
blocks and never touches a socket; ``client.py`` moves its frames.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

JsonObject = dict[str, Any]


class ProtocolError(Exception):
    """A frame that is not a message we understand."""


@dataclass(frozen=True)
class Response:
    id: int
    method: str
    result: JsonObject


@dataclass(frozen=True)
class ErrorResponse:
    id: int
    method: str
    code: int
    message: str
    data: Any = None


@dataclass(frozen=True)
class Notification:
    method: str
    params: JsonObject


@dataclass(frozen=True)
class ServerRequest:
    id: int | str
    method: str
    params: JsonObject


Event = Response | ErrorResponse | Notification | ServerRequest


@dataclass
class Protocol:
    """Request numbering and response correlation for one connection."""

    next_id: int = 1
    pending: dict[int, str] = field(default_factory=dict)

    def request(self, method: str, params: JsonObject | None = None) -> tuple[int, str]:
        """A request frame and its id."""
        request_id = self.next_id
        self.next_id += 1
        self.pending[request_id] = method
        message: JsonObject = {"id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        return request_id, json.dumps(message, ensure_ascii=False)

    @staticmethod
    def notify(method: str, params: JsonObject | None = None) -> str:
        message: JsonObject = {"method": method}
        if params is not None:
            message["params"] = params
        return json.dumps(message, ensure_ascii=False)

    @staticmethod
    def reply(request_id: int | str, result: JsonObject) -> str:
        """The answer to a server request."""
        return json.dumps({"id": request_id, "result": result}, ensure_ascii=False)

    @staticmethod
    def reply_error(request_id: int | str, code: int, message: str) -> str:
        return json.dumps({"id": request_id, "error": {"code": code, "message": message}}, ensure_ascii=False)

    def forget(self, request_id: int) -> None:
        """Stop waiting for a response (its caller timed out); a late one is then dropped."""
        self.pending.pop(request_id, None)

    def receive(self, frame: str | bytes) -> Event | None:
        """The event a frame carries; None for a response nobody waits for any more."""
        try:
            message = json.loads(frame)
        except ValueError as err:
            raise ProtocolError(f"not JSON: {str(frame)[:80]!r}") from err
        if not isinstance(message, dict):
            raise ProtocolError(f"not a JSON object: {str(frame)[:80]!r}")
        method = message.get("method")
        has_id = "id" in message and message["id"] is not None
        if isinstance(method, str):
            params = message.get("params") or {}
            if not isinstance(params, dict):
                raise ProtocolError(f"{method}: params is not an object")
            if has_id:
                return ServerRequest(message["id"], method, params)
            return Notification(method, params)
        if not has_id:
            raise ProtocolError(f"neither a response nor a notification: {str(frame)[:80]!r}")
        request_id = message["id"]
        sent = self.pending.pop(request_id, None) if isinstance(request_id, int) else None
        if sent is None:
            return None
        if "error" in message:
            error = message["error"] if isinstance(message["error"], dict) else {}
            return ErrorResponse(
                request_id,
                sent,
                int(error.get("code", 0)),
                str(error.get("message", "unknown error")),
                error.get("data"),
            )
        result = message.get("result")
        return Response(request_id, sent, result if isinstance(result, dict) else {"value": result})
