"""The app-server JSON-RPC layer, without sockets."""

from __future__ import annotations

import json

import pytest

from dev_sessions.codex.protocol import (
    ErrorResponse,
    Notification,
    Protocol,
    ProtocolError,
    Response,
    ServerRequest,
)


def test_requests_are_numbered_and_have_no_jsonrpc_member() -> None:
    protocol = Protocol()
    first_id, first = protocol.request("initialize", {"clientInfo": {"name": "x"}})
    second_id, second = protocol.request("thread/list")
    assert (first_id, second_id) == (1, 2)
    assert json.loads(first) == {"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "x"}}}
    assert json.loads(second) == {"id": 2, "method": "thread/list"}
    assert protocol.pending == {1: "initialize", 2: "thread/list"}


def test_responses_are_matched_to_their_requests() -> None:
    protocol = Protocol()
    request_id, _ = protocol.request("thread/start", {})
    event = protocol.receive('{"id": 1, "result": {"thread": {"id": "t"}}}')
    assert event == Response(request_id, "thread/start", {"thread": {"id": "t"}})
    assert protocol.pending == {}


def test_error_responses_keep_code_and_message() -> None:
    protocol = Protocol()
    protocol.request("thread/list")
    event = protocol.receive('{"error": {"code": -32600, "message": "Not initialized"}, "id": 1}')
    assert event == ErrorResponse(1, "thread/list", -32600, "Not initialized")


def test_notifications_have_no_id() -> None:
    event = Protocol().receive('{"method": "turn/completed", "params": {"threadId": "t"}, "emittedAtMs": 1}')
    assert event == Notification("turn/completed", {"threadId": "t"})


def test_server_requests_are_not_confused_with_responses() -> None:
    protocol = Protocol()
    protocol.request("turn/start", {})  # our id 1 is pending
    # The server's own request numbering also has an id 1 (and 0): it is a request to us.
    event = protocol.receive(
        '{"method": "item/commandExecution/requestApproval", "id": 1, "params": {"threadId": "t"}}'
    )
    assert event == ServerRequest(1, "item/commandExecution/requestApproval", {"threadId": "t"})
    assert protocol.pending == {1: "turn/start"}, "our request must still wait for its own response"


def test_replies_to_server_requests() -> None:
    assert json.loads(Protocol.reply(0, {"decision": "accept"})) == {
        "id": 0,
        "result": {"decision": "accept"},
    }
    assert json.loads(Protocol.reply_error(3, -32000, "no")) == {
        "id": 3,
        "error": {"code": -32000, "message": "no"},
    }
    assert json.loads(Protocol.notify("initialized")) == {"method": "initialized"}


def test_late_response_after_forget_is_dropped() -> None:
    protocol = Protocol()
    request_id, _ = protocol.request("thread/read", {})
    protocol.forget(request_id)
    assert protocol.receive('{"id": 1, "result": {}}') is None


def test_unknown_response_id_is_dropped() -> None:
    assert Protocol().receive('{"id": 99, "result": {}}') is None


@pytest.mark.parametrize(
    "frame",
    ["not json", "[1, 2]", '{"result": {}}', '{"method": "x", "params": [1]}'],
)
def test_frames_that_are_not_messages_are_protocol_errors(frame: str) -> None:
    with pytest.raises(ProtocolError):
        Protocol().receive(frame)


def test_non_object_result_is_wrapped() -> None:
    protocol = Protocol()
    protocol.request("x")
    assert protocol.receive('{"id": 1, "result": 5}') == Response(1, "x", {"value": 5})


def test_unicode_survives_the_frames() -> None:
    protocol = Protocol()
    _, frame = protocol.request("turn/start", {"text": 'ünï 🚀 "q" $HOME `x`\n'})
    assert json.loads(frame)["params"]["text"] == 'ünï 🚀 "q" $HOME `x`\n'
