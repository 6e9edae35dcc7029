"""A scripted fake of the OpenAI Responses API, enough to drive the real Codex app-server offline.

Codex only calls ``POST {base_url}/responses`` (always streamed, server-sent events). By default the
fake answers every prompt with the prompt itself, byte for byte, so a test can prove exact delivery.
The prompt is the text of the last ``role: "user"`` message of the request's ``input`` (Codex
re-sends the whole history every time, with its own developer and ``<environment_context>``
messages before the user's). Markers inside the prompt pick other behaviours (route by keyword,
like websockets' test server; an argument may contain ``>`` but not ``>>``):

``<<slow:S>>``      echo, but spread the answer over S seconds (default 3) so a running turn can be
                    observed, steered or interrupted; Codex drops the stream on ``turn/interrupt``
                    and ``turn/steer``, which the fake tolerates
``<<hold:NAME>>``   echo, but only once the test calls ``release(NAME)`` (NAME may be empty:
                    ``<<hold>>`` and ``release()``): a turn that runs exactly as long as the test
                    needs; ``holding(NAME)`` says whether the answer is being held
``<<bash:CMD>>``    call the ``exec_command`` tool with ``{"cmd": CMD}``; when Codex posts the
                    ``function_call_output`` back, its output (Codex's text: ``Chunk ID: ...``,
                    ``Process exited with code N``, ``Output:`` and the command's output, or the
                    rejection message) is echoed back as ``OUTPUT: <output>``
``<<tool:NAME:JSON>>`` call the function tool NAME (any tool Codex offers) with the JSON object as
                    its arguments; ``NAMESPACE.NAME`` calls a tool of a namespace (Codex 0.171.0 offers
                    an MCP server's tools as the namespace ``mcp__<server>``, ``-`` made ``_``); the
                    output is echoed back as ``OUTPUT: <output>``; ``tool_names()`` lists the tools
                    offered
``<<ask:N>>``       call the ``request_user_input`` tool with N questions (default 1, at most 3), each
                    with two options: ``colour`` "Which colour?" (Red / Blue), ``size`` "Which size?"
                    (Small / Large), ``shape`` "Which shape?" (Round / Square). Codex offers the tool
                    only in Plan mode (a thread's ``collaborationMode``): there it becomes the server
                    request ``item/tool/requestUserInput`` (Codex adds ``isOther: true`` to every
                    question) and the client's reply ``{"answers": {ID: {"answers": [...]}}}`` comes
                    back as the tool's output, JSON text, echoed as ``ANSWER: <output>``
                    (``ANSWER: {"answers":{"colour":{"answers":["Blue"]}}}``); in Default mode Codex
                    answers the call itself: ``ANSWER: request_user_input is unavailable in Default
                    mode``
``<<error:CODE>>``  fail the turn. A number (default 500) is answered with that HTTP status and an
                    OpenAI error body ``{"error": {"message": ..., "type": ..., "code": ...}}``;
                    anything else is sent as a ``response.failed`` event with ``error.code`` CODE
                    (``rate_limit_exceeded``, ``context_length_exceeded``, ``server_error``...).
                    With the provider's ``request_max_retries = 0`` and ``stream_max_retries = 0``
                    Codex does not retry: the turn ends ``failed`` in well under 0.1 s, after an
                    ``error`` notification. The message Codex reports: 500 -> its canned "We're
                    currently experiencing high demand..."; 400 -> the raw error body; other
                    statuses -> "unexpected status 503 Service Unavailable: <message>, url: ...";
                    ``response.failed`` -> "stream disconnected before completion: <message>"

An automatic goal continuation (the user message Codex writes itself while a thread goal is active,
starting ``<codex_internal_context source="goal">``) is answered with an ``update_goal`` call
marking the goal complete, so the continuation loop ends after one turn. Every request is kept in
``requests``; ``prompts()`` lists the user prompts only.

Run ``python -m dev_sessions.selftest.fakes.openai_responses --port 0`` to serve it from a shell (the
URL, ending in ``/v1``, is printed): use it as a Codex provider's ``base_url``.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from typing import Any

from dev_sessions.selftest.fakes._server import FakeHandler, FakeServer, pieces, serve_from_shell

MARKER = re.compile(r"<<(slow|hold|ask|bash|tool|error)(?::(.*?))?>>", re.DOTALL)
ASK_TOOL = "request_user_input"
# What <<ask:N>> asks, in order: (id, header, question, option labels).
ASK_QUESTIONS = (
    ("colour", "Colour", "Which colour?", ("Red", "Blue")),
    ("size", "Size", "Which size?", ("Small", "Large")),
    ("shape", "Shape", "Which shape?", ("Round", "Square")),
)
GOAL_MARKER = '<codex_internal_context source="goal">'
ERROR_MESSAGE = "fake server error on request"


def _text_of(item: dict[str, Any]) -> str:
    """The text of one input message: its text parts joined (Codex sends one part per text input)."""
    content = item.get("content", "")
    if isinstance(content, str):
        return content
    return "".join(
        part.get("text", "") for part in content if part.get("type") in ("input_text", "output_text", "text")
    )


def _output_text(item: dict[str, Any]) -> str:
    output = item.get("output", "")
    if isinstance(output, list):
        return "".join(part.get("text", "") for part in output if isinstance(part, dict))
    if isinstance(output, dict):
        return str(output.get("content", output))
    return str(output)


def last_user_text(body: dict[str, Any]) -> str:
    """The user's prompt of one request: the text of the last ``role: "user"`` input message."""
    items = body.get("input", [])
    if isinstance(items, str):
        return items
    for item in reversed(items):
        if item.get("role") == "user" and item.get("type", "message") == "message":
            return _text_of(item)
    return ""


class Reply:
    """What the fake answers to one request: output items, a pace, or a failure.

    ``error`` is an HTTP status (answered with an OpenAI error body) or, when it is a string, the
    ``error.code`` of a ``response.failed`` event sent in a 200 stream.
    """

    def __init__(
        self,
        items: list[dict[str, Any]],
        delay: float = 0.0,
        error: int | str | None = None,
        hold: str | None = None,
    ) -> None:
        self.items = items
        self.delay = delay
        self.error = error
        self.hold = hold


def message(value: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": "msg_" + uuid.uuid4().hex[:24],
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": value, "annotations": []}],
    }


def function_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": "fc_" + uuid.uuid4().hex[:24],
        "call_id": "call_" + uuid.uuid4().hex[:24],
        "name": name,
        "arguments": json.dumps(arguments),
        "status": "completed",
    }


def ask_questions(count: int) -> list[dict[str, Any]]:
    """The ``questions`` argument of the ``request_user_input`` call that ``<<ask:N>>`` makes."""
    return [
        {
            "id": qid,
            "header": header,
            "question": question,
            "options": [{"label": o, "description": f"The {qid} {o.lower()}"} for o in labels],
        }
        for qid, header, question, labels in ASK_QUESTIONS[: max(1, min(count, len(ASK_QUESTIONS)))]
    ]


def _round_trip(items: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """The answer to one of our own function calls (and the called tool's name), if the request
    ends with one (after the last user message). Codex also sends ``function_call_output`` items of
    its own (``goal_objective``) with no matching call: those are not round trips."""
    tail: list[dict[str, Any]] = []
    for item in reversed(items):
        if item.get("role") == "user":
            break
        tail.append(item)
    calls = {i.get("call_id"): i.get("name", "") for i in tail if i.get("type") == "function_call"}
    for item in tail:
        if item.get("type") == "function_call_output" and item.get("call_id") in calls:
            return str(calls[item.get("call_id")]), item
    return None


def script(body: dict[str, Any]) -> Reply:
    """Decide the reply to one Responses API request."""
    items = body.get("input", [])
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    trip = _round_trip(items)
    if trip is not None:
        tool, output = trip
        prefix = "ANSWER: " if tool == ASK_TOOL else "OUTPUT: "
        return Reply([message(prefix + _output_text(output))])

    prompt = last_user_text(body)
    if prompt.startswith(GOAL_MARKER):
        # An automatic goal continuation: declare the goal reached, or Codex would keep going.
        return Reply([function_call("update_goal", {"status": "complete"})])
    match = MARKER.search(prompt)
    if match is None:
        return Reply([message(prompt)])
    kind, arg = match.group(1), match.group(2) or ""
    if kind == "slow":
        return Reply([message(prompt)], delay=float(arg or 3))
    if kind == "hold":
        return Reply([message(prompt)], hold=arg)
    if kind == "error":
        return Reply([], error=int(arg) if arg.isdigit() else (arg or 500))
    if kind == "ask":
        questions = ask_questions(int(arg) if arg.isdigit() else 1)
        return Reply([function_call(ASK_TOOL, {"questions": questions})])
    if kind == "tool":
        name, _, arguments = arg.partition(":")
        namespace, _, inner = name.rpartition(".")
        call = function_call(inner, json.loads(arguments or "{}"))
        if namespace:
            call["namespace"] = namespace
        return Reply([call])
    # bash
    return Reply([function_call("exec_command", {"cmd": arg})])


CACHED = 4


def usage(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """Deterministic token counts for one response: input the characters of the last user message's
    text plus ``CACHED`` tokens read from the cache (OpenAI counts cached input inside
    ``input_tokens``), output the characters of the reply's message text."""
    inputs = len(last_user_text(body)) + CACHED
    output = sum(
        len(part.get("text", ""))
        for item in reply.items
        if item.get("type") == "message"
        for part in item.get("content", [])
    )
    return {
        "input_tokens": inputs,
        "input_tokens_details": {"cached_tokens": CACHED},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": inputs + output,
    }


class _Handler(FakeHandler):
    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": []})
            return
        self.do_HEAD()

    def do_POST(self) -> None:
        body = self.read_json()
        if not self.path.split("?")[0].endswith("/responses"):
            self._error(404, "not_found", f"no route {self.path}")
            return
        reply = script(body)
        if isinstance(reply.error, int):
            self._error(reply.error, "server_error", ERROR_MESSAGE)
            return
        # Codex drops the stream when a turn is interrupted or steered.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._stream(body, reply)

    def _error(self, status: int, kind: str, text: str) -> None:
        self._json(status, {"error": {"message": text, "type": kind, "param": None, "code": kind}})

    def _response(self, body: dict[str, Any], response_id: str, status: str) -> dict[str, Any]:
        return {
            "id": response_id,
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "model": body.get("model", "fake"),
            "output": [],
        }

    def _stream(self, body: dict[str, Any], reply: Reply) -> None:
        self.begin_stream()
        response_id = "resp_" + uuid.uuid4().hex[:24]
        self._event("response.created", {"response": self._response(body, response_id, "in_progress")})
        if reply.hold is not None:
            self.server.owner.hold(reply.hold)
        steps = max(1, int(reply.delay / 0.25)) if reply.delay else 1
        if isinstance(reply.error, str):
            failed = self._response(body, response_id, "failed")
            failed["error"] = {"code": reply.error, "message": ERROR_MESSAGE}
            self._event("response.failed", {"response": failed})
            self.end_stream()
            return
        for index, item in enumerate(reply.items):
            self._item(index, item, steps, reply.delay / max(1, len(reply.items)))
        done = self._response(body, response_id, "completed")
        done["output"] = reply.items
        done["usage"] = usage(body, reply)
        self._event("response.completed", {"response": done})
        self.end_stream()

    def _item(self, index: int, item: dict[str, Any], steps: int, delay: float) -> None:
        if item["type"] != "message":
            self._event("response.output_item.added", {"output_index": index, "item": item})
            self._event("response.output_item.done", {"output_index": index, "item": item})
            return
        value = item["content"][0]["text"]
        empty = dict(item, status="in_progress", content=[])
        self._event("response.output_item.added", {"output_index": index, "item": empty})
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        self._event(
            "response.content_part.added",
            dict(where, part={"type": "output_text", "text": "", "annotations": []}),
        )
        chunks = pieces(value, steps)
        for chunk in chunks:
            if delay:
                time.sleep(delay / len(chunks))
            self._event("response.output_text.delta", dict(where, delta=chunk))
        self._event("response.output_text.done", dict(where, text=value))
        self._event("response.content_part.done", dict(where, part=item["content"][0]))
        self._event("response.output_item.done", {"output_index": index, "item": item})

    def _event(self, name: str, data: dict[str, Any]) -> None:
        self.sse(name, dict(data, type=name))  # every Responses event names its own type


class FakeResponses(FakeServer):
    """The fake server, on 127.0.0.1 and a free port, served from a background thread."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(_Handler, port)

    @property
    def url(self) -> str:
        """The base URL for a Codex provider's ``base_url`` (it ends in ``/v1``)."""
        return f"{self.address}/v1"

    def prompts(self) -> list[str]:
        """The user prompts of the Responses requests seen so far (tool round trips and automatic
        goal continuations excluded)."""
        bodies = [r["body"] for r in self.recorded() if r["path"].split("?")[0].endswith("/responses")]
        found = []
        for body in bodies:
            items = body.get("input", [])
            if isinstance(items, list) and _round_trip(items) is not None:
                continue
            prompt = last_user_text(body)
            if not prompt.startswith(GOAL_MARKER):
                found.append(prompt)
        return found

    def tool_names(self) -> list[str]:
        """The names of the tools offered in the last Responses request (a function tool's ``name``;
        a namespace's tools as ``NAMESPACE.NAME``); empty before the first one."""
        bodies = [r["body"] for r in self.recorded() if r["path"].split("?")[0].endswith("/responses")]
        if not bodies:
            return []
        names = []
        for tool in bodies[-1].get("tools") or []:
            if tool.get("type") == "namespace":
                names += [f"{tool.get('name')}.{inner.get('name')}" for inner in tool.get("tools") or []]
            elif tool.get("name"):
                names.append(str(tool["name"]))
        return names


def main() -> None:
    serve_from_shell(FakeResponses, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
