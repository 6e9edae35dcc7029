"""Webhooks, the pure part: the config.json section, which messages are which events, mentions, the
signature, and what is retried."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import NamedTuple

import pytest

from dev_sessions.config import Settings, Webhook
from dev_sessions.messaging.records import Message
from dev_sessions.messaging.webhooks import (
    SIGNATURE_HEADER,
    events_of,
    headers_of,
    key_of,
    mentions,
    payload_of,
    retryable,
    shown,
    sign,
    verify,
    wanted,
)

SECRET = "the-webhook-secret-9f3a"


def _message(body: str = "hi", space: str | None = None, priority: str = "normal") -> Message:
    return Message(7, "alice", space, priority, body, None, None, 7, "2026-01-01T00:00:00.000Z")


def _settings(tmp_path: Path, config: object) -> Settings:
    home = tmp_path / "state"
    home.mkdir(exist_ok=True)
    (home / "config.json").write_text(json.dumps(config))
    return Settings.from_env({"DEV_SESSIONS_HOME": str(home), "HOME": str(tmp_path)})


def test_the_webhooks_section_is_read_with_defaults(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        {
            "DEV_SESSIONS_MESSAGES_URL": "sqlite:",
            "webhooks": [
                {"url": "https://hooks.example/a", "secret": SECRET},
                {
                    "url": "http://127.0.0.1:9/b",
                    "events": ["mention"],
                    "agents": ["boss"],
                    "timeout": 2,
                    "retries": 0,
                },
            ],
        },
    )
    first, second = settings.webhooks
    assert first == Webhook(
        "https://hooks.example/a", ("dm", "space", "mention", "urgent"), None, SECRET, 5.0, 4
    )
    assert second == Webhook("http://127.0.0.1:9/b", ("mention",), ("boss",), None, 2.0, 0)
    assert settings.webhooks_problem is None and settings.messages_url == "sqlite:"
    assert SECRET not in repr(settings) and SECRET not in repr(first) and SECRET not in str(settings.webhooks)


class Bad(NamedTuple):
    test_id: str
    entry: object
    needle: str


BAD = [
    Bad("not an object", "https://x", "not an object"),
    Bad("no url", {"events": ["dm"]}, "url:"),
    Bad("not http", {"url": "file:///etc/passwd"}, "url:"),
    Bad("a space in the url", {"url": "http://x/a b"}, "url:"),
    Bad("unknown event", {"url": "http://x", "events": ["everything"]}, "events:"),
    Bad("no events", {"url": "http://x", "events": []}, "events:"),
    Bad("agents not a list", {"url": "http://x", "agents": "boss"}, "agents:"),
    Bad("secret not a string", {"url": "http://x", "secret": 12345}, "secret:"),
    Bad("timeout too long", {"url": "http://x", "timeout": 600}, "timeout:"),
    Bad("retries a bool", {"url": "http://x", "retries": True}, "retries:"),
    Bad("unknown key", {"url": "http://x", "sekret": SECRET}, "unknown key 'sekret'"),
]


@pytest.mark.parametrize("case", BAD, ids=[c.test_id for c in BAD])
def test_a_bad_entry_is_left_out_and_said_without_its_secret(tmp_path: Path, case: Bad) -> None:
    good = {"url": "http://127.0.0.1:1/ok", "secret": SECRET}
    settings = _settings(tmp_path, {"webhooks": [good, case.entry]})
    assert [h.url for h in settings.webhooks] == [good["url"]]
    problem = settings.webhooks_problem or ""
    assert "webhooks[1]: " in problem and case.needle in problem
    assert SECRET not in problem and "\n" not in problem


def test_no_file_or_no_section_is_no_webhooks_and_a_broken_file_breaks_nothing_else(tmp_path: Path) -> None:
    home = tmp_path / "state"
    home.mkdir()
    assert Settings.from_env({"DEV_SESSIONS_HOME": str(home)}).webhooks == ()
    (home / "config.json").write_text('{"webhooks": "nope"}')
    settings = Settings.from_env({"DEV_SESSIONS_HOME": str(home), "DEV_SESSIONS_MESSAGES_URL": "sqlite:"})
    assert settings.webhooks == () and "not a list" in (settings.webhooks_problem or "")


def test_mentions() -> None:
    assert mentions("@boss look, and @fizz-top. mail me@example.com, @@x, @carol@box:") == [
        "boss",
        "fizz-top",
        "carol@box",
    ]
    assert mentions("no one") == [] and mentions("@a @a") == ["a"]


class Event(NamedTuple):
    test_id: str
    hook: Webhook
    message: Message
    recipients: list[str]
    expected: list[str]


EVERY = Webhook("http://x")
EVENTS = [
    Event("a direct message", EVERY, _message(), ["boss"], ["dm"]),
    Event("a space message", EVERY, _message(space="team"), ["boss", "carol"], ["space"]),
    Event(
        "urgent and a mention",
        EVERY,
        _message("@boss now", priority="urgent"),
        ["boss"],
        ["dm", "mention", "urgent"],
    ),
    Event("only mentions", Webhook("http://x", ("mention",)), _message("hey @carol"), ["boss"], ["mention"]),
    Event("only mentions, none", Webhook("http://x", ("mention",)), _message("hey"), ["boss"], []),
    Event("to a filtered agent", Webhook("http://x", agents=("boss",)), _message(), ["boss"], ["dm"]),
    Event("to another agent", Webhook("http://x", agents=("boss",)), _message(), ["carol"], []),
    Event(
        "mentioning a filtered agent",
        Webhook("http://x", agents=("boss",)),
        _message("ask @boss", space="team"),
        ["carol"],
        ["mention"],
    ),
    Event("urgent only", Webhook("http://x", ("urgent",)), _message(priority="high"), ["boss"], []),
]


@pytest.mark.parametrize("case", EVENTS, ids=[c.test_id for c in EVENTS])
def test_which_events_a_message_is(case: Event) -> None:
    assert events_of(case.hook, case.message, case.recipients) == case.expected
    assert wanted([case.hook], case.message, case.recipients) is bool(case.expected)


def test_the_signature_is_hmac_sha256_of_the_exact_body() -> None:
    # RFC 4231, test case 2.
    assert sign("Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    body = payload_of(_message("@boss hi"), ["boss"], ["dm", "mention"], "box")
    headers = headers_of(Webhook("http://x", secret=SECRET), body, ["dm", "mention"], "7-abc")
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected and verify(SECRET, body, expected)
    assert not verify(SECRET, body + b" ", expected) and not verify("other", body, expected)
    assert headers["X-Dev-Sessions-Event"] == "dm,mention" and headers["X-Dev-Sessions-Delivery"] == "7-abc"
    assert SIGNATURE_HEADER not in headers_of(Webhook("http://x"), body, ["dm"], "7-abc")
    sent = json.loads(body)
    assert sent["message"]["id"] == 7 and sent["to"] == ["boss"] and sent["mentions"] == ["boss"]
    assert sent["events"] == ["dm", "mention"] and sent["machine"] == "box" and sent["test"] is False


def test_what_is_retried() -> None:
    assert retryable(None) and retryable(500) and retryable(503) and retryable(429) and retryable(408)
    assert not retryable(400) and not retryable(404) and not retryable(301) and not retryable(200)


def test_an_endpoint_is_kept_by_digest_and_logged_without_its_path() -> None:
    url = "https://hooks.example:8443/services/T0/B0/token-in-the-path?sig=abc"
    assert len(key_of(Webhook(url))) == 16 and "token" not in key_of(Webhook(url))
    assert shown(url) == "https://hooks.example:8443/..."
