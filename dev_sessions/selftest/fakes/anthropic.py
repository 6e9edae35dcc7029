"""A scripted fake of the Anthropic Messages API, enough to drive the real Claude Code offline.

Claude Code only calls ``HEAD /`` and ``POST /v1/messages?beta=true`` (streamed). By default the
fake answers every prompt with the prompt itself, byte for byte, so a test can prove exact delivery.
Markers inside the prompt pick other behaviours (route by keyword, like websockets' test server):

``<<slow:S>>``      echo, but spread the answer over S seconds (status ``working`` can be observed)
``<<hold:NAME>>``   echo, but only once the test calls ``release(NAME)`` (NAME may be empty:
                    ``<<hold>>`` and ``release()``); ``holding(NAME)`` says whether it is held
``<<ask>>``         call AskUserQuestion ("Which colour?" Red / Blue); the answer is echoed back as
                    ``ANSWER: <tool result>``
``<<bash:CMD>>``    call the Bash tool with CMD; the tool's output is echoed back as ``OUTPUT: <result>``
``<<tool:NAME:JSON>>`` call the tool NAME (any tool Claude offers, e.g. an MCP server's
                    ``mcp__dev-sessions__send_message``) with the JSON object as its input; the result
                    is echoed back as ``OUTPUT: <result>``. A tool Claude defers (2.1.332 lists MCP
                    tools by name only, behind ``ToolSearch``) is first loaded the way a model would,
                    with ``ToolSearch`` ``select:NAME``. ``tool_names()`` lists the tools offered,
                    ``deferred_tool_names()`` those named for ToolSearch
``<<error:CODE>>``  fail with HTTP CODE and an Anthropic error body
``<<multi>>``       answer with one message of three blocks: thinking, text ``first part``, text
                    ``second part``

The title side request that Claude Code makes on the first prompt (see ``is_title_request``) is
answered before any marker is looked at, since it carries the user's prompt too. Every request is
kept in ``requests``.

Run ``python -m dev_sessions.selftest.fakes.anthropic --port 0`` to serve it from a shell (the URL is
printed).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from dev_sessions.selftest.fakes._server import FakeHandler, FakeServer, pieces, serve_from_shell

# Claude Code 2.1.197's title side request says this in its system prompt; 2.1.332's does not.
TITLE_MARKER = "Generate a concise, sentence-case title"
MARKER = re.compile(r"<<(slow|hold|ask|bash|tool|error|multi)(?::(.*?))?>>", re.DOTALL)
ASK_QUESTION = "Which colour?"
# How Claude Code 2.1.332 introduces the names of the tools it defers (MCP tools among them).
DEFERRED = "The following deferred tools are now available via ToolSearch."
ASK_OPTIONS = ("Red", "Blue")


def _text_of(content: Any) -> str:
    """The user's own text of a message: its last text block that is not a system reminder."""
    if isinstance(content, str):
        return content
    texts = [
        block.get("text", "")
        for block in content
        if block.get("type") == "text" and not block.get("text", "").startswith("<system-reminder>")
    ]
    return texts[-1] if texts else ""


def is_title_request(body: dict[str, Any]) -> bool:
    """Claude Code's side request for a session title (made on the first prompt).

    2.1.197 names the task in its system prompt (``TITLE_MARKER``). 2.1.332 (which makes it only when
    ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`` is unset) no longer does: its one user message wraps
    the user's text in ``<session>...</session>`` and it asks for a JSON object with a ``title``.
    """
    if TITLE_MARKER in json.dumps(body.get("system", "")):
        return True
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    if len(users) != 1:
        return False
    wrapped = _text_of(users[0].get("content", ""))
    asks_title = '"title"' in json.dumps(body.get("output_config") or body.get("output_format") or {})
    return asks_title and wrapped.startswith("<session>") and "</session>" in wrapped


def _all_text(body: dict[str, Any]) -> str:
    """Every text of a request (system prompt and messages), one after another."""
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            walk(value.get("text", ""))
            walk(value.get("content", ""))

    walk(body.get("system", ""))
    walk(body.get("messages", []))
    return "\n".join(out)


def _tool_result_text(block: dict[str, Any]) -> str:
    content = block.get("content", "")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if part.get("type") == "text")
    return str(content)


class Reply:
    """What the fake answers to one request: content blocks, a stop reason, or an HTTP error."""

    def __init__(
        self,
        blocks: list[dict[str, Any]],
        stop_reason: str = "end_turn",
        delay: float = 0.0,
        error: int | None = None,
        hold: str | None = None,
    ) -> None:
        self.blocks = blocks
        self.stop_reason = stop_reason
        self.delay = delay
        self.error = error
        self.hold = hold


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


CACHE_READ = 4
CACHE_WRITE = 2


def usage(body: dict[str, Any], reply: Reply) -> dict[str, int]:
    """Deterministic token counts for one answer: input the characters of the last user message's own
    text (none for a tool result), output the characters of the reply's text blocks, and a constant
    ``CACHE_READ`` / ``CACHE_WRITE``. ``message_start`` already carries the final output count (the real
    API sends 1 there and the count in ``message_delta``), so that whichever Claude records is the same."""
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    prompt = _text_of(users[-1].get("content") or "") if users else ""
    output = sum(len(b.get("text", "")) for b in reply.blocks if b.get("type") == "text")
    return {
        "input_tokens": len(prompt),
        "output_tokens": output,
        "cache_read_input_tokens": CACHE_READ,
        "cache_creation_input_tokens": CACHE_WRITE,
    }


def script(body: dict[str, Any]) -> Reply:
    """Decide the reply to one Messages API request."""
    messages = body.get("messages", [])
    user_messages = [m for m in messages if m.get("role") == "user"]
    if not user_messages:
        return Reply([text("no user message")])
    last = user_messages[-1]
    if is_title_request(body):
        return Reply([text(json.dumps({"title": "Fake session"}))])

    content = last.get("content")
    if isinstance(content, list):
        results = [b for b in content if b.get("type") == "tool_result"]
        if results:
            tool = _last_tool_use(messages)
            result = _tool_result_text(results[-1])
            wanted = _asked_tool(messages)
            if tool == "ToolSearch" and wanted is not None:
                return Reply([_tool_use(*wanted)], stop_reason="tool_use")
            prefix = "ANSWER: " if tool == "AskUserQuestion" else "OUTPUT: "
            return Reply([text(prefix + result)])

    prompt = _text_of(content)
    match = MARKER.search(prompt)
    if match is None:
        return Reply([text(prompt)])
    kind, arg = match.group(1), match.group(2) or ""
    if kind == "slow":
        return Reply([text(prompt)], delay=float(arg or 3))
    if kind == "hold":
        return Reply([text(prompt)], hold=arg)
    if kind == "error":
        return Reply([], error=int(arg or 500))
    if kind == "multi":
        return Reply(
            [
                {"type": "thinking", "thinking": "pondering", "signature": "sig"},
                text("first part"),
                text("second part"),
            ]
        )
    if kind == "ask":
        question = {
            "question": ASK_QUESTION,
            "header": "Colour",
            "options": [{"label": o, "description": f"The colour {o.lower()}"} for o in ASK_OPTIONS],
            "multiSelect": False,
        }
        return Reply([_tool_use("AskUserQuestion", {"questions": [question]})], stop_reason="tool_use")
    if kind == "tool":
        name, _, arguments = arg.partition(":")
        offered = {str(t.get("name")) for t in body.get("tools") or []}
        if name not in offered and "ToolSearch" in offered:
            return Reply([_tool_use("ToolSearch", {"query": f"select:{name}"})], stop_reason="tool_use")
        return Reply([_tool_use(name, json.loads(arguments or "{}"))], stop_reason="tool_use")
    # bash
    return Reply(
        [_tool_use("Bash", {"command": arg, "description": "Run the requested command"})],
        stop_reason="tool_use",
    )


def _tool_use(name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24], "name": name, "input": tool_input}


def _asked_tool(messages: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """The ``<<tool:NAME:JSON>>`` of the last prompt typed (not a tool result), if it has one."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list) and any(b.get("type") == "tool_result" for b in content):
            continue
        match = MARKER.search(_text_of(content or ""))
        if match is None or match.group(1) != "tool":
            return None
        name, _, arguments = (match.group(2) or "").partition(":")
        return name, json.loads(arguments or "{}")
    return None


def _last_tool_use(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") != "assistant" or not isinstance(message.get("content"), list):
            continue
        for block in reversed(message["content"]):
            if block.get("type") == "tool_use":
                return str(block.get("name"))
    return ""


class _Handler(FakeHandler):
    def do_POST(self) -> None:
        body = self.read_json()
        if not self.path.startswith("/v1/messages"):
            self._error(404, "not_found_error", f"no route {self.path}")
            return
        reply = script(body)
        if reply.error is not None:
            self._error(reply.error, "api_error", "fake server error on request")
            return
        try:
            if body.get("stream"):
                self._stream(body, reply)
            else:
                self._json(200, self._message(body, reply.blocks, reply.stop_reason, usage(body, reply)))
        except (BrokenPipeError, ConnectionResetError):
            # Claude drops the stream when a turn is interrupted.
            pass

    def _message(
        self, body: dict[str, Any], blocks: list[dict[str, Any]], stop: str, usage: dict[str, int]
    ) -> dict[str, Any]:
        return {
            "id": "msg_" + uuid.uuid4().hex[:24],
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "fake"),
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }

    def _error(self, status: int, kind: str, message: str) -> None:
        self._json(status, {"type": "error", "error": {"type": kind, "message": message}})

    def _stream(self, body: dict[str, Any], reply: Reply) -> None:
        self.begin_stream()
        counted = usage(body, reply)
        message = self._message(body, [], reply.stop_reason, counted)
        message["stop_reason"] = None
        self.sse("message_start", {"type": "message_start", "message": message})
        if reply.hold is not None:
            self.server.owner.hold(reply.hold)
        steps = max(1, int(reply.delay / 0.25)) if reply.delay else 1
        for index, block in enumerate(reply.blocks):
            start = dict(block)
            if block["type"] == "text":
                start["text"] = ""
            elif block["type"] == "thinking":
                start["thinking"] = ""
                start["signature"] = ""
            elif block["type"] == "tool_use":
                start["input"] = {}
            self.sse(
                "content_block_start", {"type": "content_block_start", "index": index, "content_block": start}
            )
            deltas = self._deltas(block, steps)
            for delta in deltas:
                if reply.delay:
                    time.sleep(reply.delay / len(deltas) / len(reply.blocks))
                    self.server.owner.streamed += 1
                self.sse(
                    "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                )
            self.sse("content_block_stop", {"type": "content_block_stop", "index": index})
        self.sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": counted["output_tokens"]},
            },
        )
        self.sse("message_stop", {"type": "message_stop"})
        self.end_stream()

    @staticmethod
    def _deltas(block: dict[str, Any], steps: int) -> list[dict[str, Any]]:
        if block["type"] == "tool_use":
            return [{"type": "input_json_delta", "partial_json": json.dumps(block["input"])}]
        if block["type"] == "thinking":
            return [
                {"type": "thinking_delta", "thinking": block["thinking"]},
                {"type": "signature_delta", "signature": block["signature"]},
            ]
        return [{"type": "text_delta", "text": chunk} for chunk in pieces(block["text"], steps)]


class FakeAnthropic(FakeServer):
    """The fake server, on 127.0.0.1 and a free port, served from a background thread."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(_Handler, port)
        self.streamed = 0
        """Text deltas sent by slow replies so far (lets a test act in the middle of a reply)."""

    @property
    def url(self) -> str:
        return self.address

    def prompts(self) -> list[str]:
        """The user prompts of the main-conversation requests seen so far (title requests excluded)."""
        found = []
        for body in (r["body"] for r in self.recorded()):
            if is_title_request(body):
                continue
            users = [m for m in body.get("messages", []) if m.get("role") == "user"]
            if users:
                found.append(_text_of(users[-1].get("content", "")))
        return found

    def tool_names(self) -> list[str]:
        """The names of the tools offered in the last main-conversation request (title requests,
        which offer none, excluded); empty before the first one."""
        for body in reversed([r["body"] for r in self.recorded()]):
            if is_title_request(body) or not body.get("messages"):
                continue
            return [str(tool.get("name")) for tool in body.get("tools") or []]
        return []

    def deferred_tool_names(self) -> list[str]:
        """The tools the last main-conversation request names as deferred (loaded through
        ToolSearch; Claude Code 2.1.332 lists MCP tools this way), from its system text."""
        for body in reversed([r["body"] for r in self.recorded()]):
            if is_title_request(body) or not body.get("messages"):
                continue
            # Claude repeats the announcement as more tools arrive (MCP servers connect later).
            found = re.findall(re.escape(DEFERRED) + r"[^\n]*\n((?:[^\n]+(?:\n|$))+)", _all_text(body))
            return sorted({name for block in found for name in block.split()})
        return []


def main() -> None:
    serve_from_shell(FakeAnthropic, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
