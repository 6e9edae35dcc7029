"""The fake Anthropic server's scripting on request bodies as Claude Code sends them (trimmed)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any, NamedTuple

import pytest

from dev_sessions.selftest.fakes.anthropic import FakeAnthropic, is_title_request, script

SESSION_TEXT = "choose <<ask>>"
WRAPPED = (
    f"<session>\n{SESSION_TEXT}\n</session>\n\nWrite the title in the predominant language of the "
    "session — a stray word or code token in another language doesn't change it, and neither does the "
    "English of these instructions."
)
TITLE_SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}},
    "required": ["title"],
    "additionalProperties": False,
}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


class Case(NamedTuple):
    test_id: str
    body: dict[str, Any]
    title: bool


CASES = [
    Case(
        "2.1.197-title",
        {
            "system": [{"type": "text", "text": "Generate a concise, sentence-case title for this session."}],
            "messages": [user(f"<session>{SESSION_TEXT}</session>")],
            "tools": [],
        },
        True,
    ),
    Case(
        # Made only when CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC is unset; recorded from the real one.
        "2.1.332-title",
        {
            "system": [{"type": "text", "text": "You are naming a coding session so the user can pick it."}],
            "messages": [user(WRAPPED)],
            "tools": [],
            "output_config": {"effort": "medium", "format": {"type": "json_schema", "schema": TITLE_SCHEMA}},
        },
        True,
    ),
    Case(
        "2.1.332-first-prompt",
        {
            "system": [{"type": "text", "text": "You are Claude Code."}],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "<system-reminder>\nreminders\n</system-reminder>"},
                        {"type": "text", "text": SESSION_TEXT},
                    ],
                }
            ],
            "output_config": {"effort": "medium"},
        },
        False,
    ),
    Case(
        "a-prompt-that-looks-wrapped",
        {"system": "", "messages": [user("<session>mine</session>")], "output_config": {"effort": "low"}},
        False,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.test_id for c in CASES])
def test_title_requests_are_told_apart(case: Case) -> None:
    assert is_title_request(case.body) is case.title
    reply = script(case.body)
    if case.title:
        assert reply.blocks == [{"type": "text", "text": json.dumps({"title": "Fake session"})}]
    else:
        assert reply.blocks != [{"type": "text", "text": json.dumps({"title": "Fake session"})}]


def test_a_title_request_is_answered_before_its_markers_and_is_no_prompt() -> None:
    with FakeAnthropic() as fake:
        for case in CASES[1:3]:
            request = urllib.request.Request(
                f"{fake.url}/v1/messages?beta=true",
                data=json.dumps(dict(case.body, stream=False)).encode(),
                headers={"content-type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                message = json.loads(answer.read())
            if case.title:
                assert message["content"] == [{"type": "text", "text": '{"title": "Fake session"}'}]
            else:
                assert message["content"][0]["name"] == "AskUserQuestion"
        assert fake.prompts() == [SESSION_TEXT]


def test_the_tool_marker_calls_any_tool_and_loads_a_deferred_one_first() -> None:
    from dev_sessions.selftest.fakes import anthropic

    prompt = '<<tool:mcp__x__send:{"to": "a"}>>'
    offered = {"messages": [{"role": "user", "content": prompt}], "tools": [{"name": "mcp__x__send"}]}
    (block,) = anthropic.script(offered).blocks
    assert (block["name"], block["input"]) == ("mcp__x__send", {"to": "a"})
    deferred = {"messages": [{"role": "user", "content": prompt}], "tools": [{"name": "ToolSearch"}]}
    (search,) = anthropic.script(deferred).blocks
    assert (search["name"], search["input"]) == ("ToolSearch", {"query": "select:mcp__x__send"})
    loaded = {
        "tools": [{"name": "ToolSearch"}],
        "messages": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": [search]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": search["id"], "content": "ok"}],
            },
        ],
    }
    (call,) = anthropic.script(loaded).blocks
    assert (call["name"], call["input"]) == ("mcp__x__send", {"to": "a"})


def test_the_tool_marker_calls_a_namespaced_codex_tool() -> None:
    from dev_sessions.selftest.fakes import openai_responses

    body = {"input": [{"type": "message", "role": "user", "content": '<<tool:mcp__x.send:{"to": "a"}>>'}]}
    (item,) = openai_responses.script(body).items
    assert (item["namespace"], item["name"], item["arguments"]) == ("mcp__x", "send", '{"to": "a"}')
