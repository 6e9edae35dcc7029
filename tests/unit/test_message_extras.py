"""The pure parts of issue 16's messaging extras: what a reaction may be, what a mention is, how
conversations are gathered from messages, ages for ``msg prune``, and the settings they read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import pytest

from dev_sessions.config import Settings
from dev_sessions.errors import NameInUse, UsageError, revive
from dev_sessions.messaging.conversations import group, mentions
from dev_sessions.messaging.emoji import check_emoji
from dev_sessions.messaging.retention import older_than, retention


class EmojiCase(NamedTuple):
    test_id: str
    text: str


GOOD_EMOJI = [
    EmojiCase("thumbs up", "👍"),
    EmojiCase("skin tone", "👍🏽"),
    EmojiCase("family (zero-width joiners)", "👨\u200d👩\u200d👧"),
    EmojiCase("flag", "🇫🇷"),
    EmojiCase("keycap", "1️⃣"),
    EmojiCase("heart with presentation selector", "❤️"),
    EmojiCase("subdivision flag (tags)", "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"),
    EmojiCase("short name", ":+1:"),
    EmojiCase("short name with underscore", ":white_check_mark:"),
]
BAD_EMOJI = [
    EmojiCase("a word", "ok"),
    EmojiCase("a digit", "1"),
    EmojiCase("emoji and text", "👍 yes"),
    EmojiCase("a letter before", "a👍"),
    EmojiCase("an escape sequence", "\x1b[31m"),
    EmojiCase("a line break", "👍\n"),
    EmojiCase("empty short name", "::"),
    EmojiCase("capitals in a short name", ":Thumbs:"),
    EmojiCase("too long", "👍" * 17),
]


@pytest.mark.parametrize("case", GOOD_EMOJI, ids=[c.test_id for c in GOOD_EMOJI])
def test_an_emoji_or_a_short_name_is_a_reaction(case: EmojiCase) -> None:
    assert check_emoji(case.text) == case.text


@pytest.mark.parametrize("case", BAD_EMOJI, ids=[c.test_id for c in BAD_EMOJI])
def test_anything_else_is_one_line_refused(case: EmojiCase) -> None:
    with pytest.raises(UsageError, match="is not an emoji") as refused:
        check_emoji(case.text)
    assert "\n" not in str(refused.value) and "\x1b" not in str(refused.value)


@pytest.mark.parametrize("text", ["", " ", "\t"])
def test_an_empty_reaction_says_so(text: str) -> None:
    with pytest.raises(UsageError, match="the reaction is empty"):
        check_emoji(text)


class MentionCase(NamedTuple):
    test_id: str
    body: str
    name: str
    mentioned: bool


MENTIONS = [
    MentionCase("plain", "@bob can you look?", "bob", True),
    MentionCase("end of a sentence", "over to you, @bob.", "bob", True),
    MentionCase("in parentheses", "(cc @bob)", "bob", True),
    MentionCase("a longer name", "@bobby can you look?", "bob", False),
    MentionCase("an e-mail address", "mail bob@bob.org", "bob", False),
    MentionCase("after a name character", "x@bob", "bob", False),
    MentionCase("a dotted name", "@bob.smith", "bob", False),
    MentionCase("the dotted name itself", "ask @bob.smith now", "bob.smith", True),
    MentionCase("a name with a dash", "@fizz-top: done?", "fizz-top", True),
    MentionCase("only its start", "@fizz-top-two", "fizz-top", False),
    MentionCase("no at sign", "bob, look", "bob", False),
    MentionCase("case matters", "@Bob look", "bob", False),
]


@pytest.mark.parametrize("case", MENTIONS, ids=[c.test_id for c in MENTIONS])
def test_a_mention_is_the_whole_name_after_an_at(case: MentionCase) -> None:
    assert mentions(case.body, case.name) is case.mentioned


def test_conversations_are_spaces_and_the_same_agents_outside_them() -> None:
    rows = [
        (1, "alice", None, "me", "read"),  # alice -> me
        (2, "me", None, "alice", "delivered"),  # me -> alice: the same conversation
        (3, "bob", "team", "me", "delivered"),  # in a space: the space's
        (3, "bob", "team", "carol", "read"),
        (4, "carol", "team", "me", "queued"),
        (5, "me", None, "me", "read"),  # a note to myself
        (6, "me", None, None, None),  # sent to nobody (a space without other members)
        (7, "bob", None, "me", "delivered"),
    ]
    found = [(c.kind, c.name, sorted(c.participants), sorted(c.messages), sorted(c.unread), c.last)
             for c in group("me", rows)]  # fmt: skip
    assert found == [
        ("direct", "bob", ["bob", "me"], [7], [7], 7),
        ("direct", "me", ["me"], [5, 6], [], 6),
        ("space", "team", ["bob", "carol", "me"], [3, 4], [3, 4], 4),
        ("direct", "alice", ["alice", "me"], [1, 2], [], 2),
    ]


def test_an_age_for_prune_is_more_than_nothing() -> None:
    assert older_than("30d") == 30 * 86400
    assert older_than("1h30m") == 5400
    for bad, why in (("0", "no age"), ("-5", "negative"), ("30 days", "not a duration"), ("", "not a")):
        with pytest.raises(UsageError, match=why) as refused:
            older_than(bad)
        assert str(refused.value).startswith("--older-than: ")


def _settings(tmp_path: Path, config: object = None, **env: str) -> Settings:
    home = tmp_path / "state"
    home.mkdir(exist_ok=True)
    if config is not None:
        (home / "config.json").write_text(json.dumps(config))
    return Settings.from_env({"DEV_SESSIONS_HOME": str(home), "HOME": str(tmp_path), **env})


def test_retention_comes_from_the_variable_or_config_json(tmp_path: Path) -> None:
    assert retention(_settings(tmp_path)) is None
    assert retention(_settings(tmp_path, DEV_SESSIONS_MESSAGES_RETENTION="2d")) == 2 * 86400
    from_file = _settings(
        tmp_path, {"DEV_SESSIONS_MESSAGES_RETENTION": "30d", "DEV_SESSIONS_MESSAGES_URL": "sqlite:"}
    )
    assert (retention(from_file), from_file.messages_url) == (30 * 86400, "sqlite:")
    over = _settings(
        tmp_path, {"DEV_SESSIONS_MESSAGES_RETENTION": "30d"}, DEV_SESSIONS_MESSAGES_RETENTION="1d"
    )
    assert retention(over) == 86400, "the variable wins over the file"
    with pytest.raises(UsageError, match="DEV_SESSIONS_MESSAGES_RETENTION: 'a month' is not a duration"):
        retention(_settings(tmp_path, {"DEV_SESSIONS_MESSAGES_RETENTION": "a month"}))
    with pytest.raises(UsageError, match=r"config\.json: not a JSON object of strings"):
        retention(_settings(tmp_path, {"DEV_SESSIONS_MESSAGES_RETENTION": 30}))


def test_the_session_a_command_runs_in(tmp_path: Path) -> None:
    assert _settings(tmp_path).holder is None
    assert _settings(tmp_path, CODEX_THREAD_ID="t-1").holder == "codex:t-1"
    assert _settings(tmp_path, CODEX_THREAD_ID="t-1", CLAUDE_CODE_SESSION_ID="u-2").holder == "claude:u-2"
    ours = _settings(tmp_path, CLAUDE_CODE_SESSION_ID="u-2", DEV_SESSIONS_ID="fizz-top")
    assert ours.holder == "fizz-top", "a session of ours is named by its id"


def test_name_in_use_says_who_holds_it_and_crosses_the_gateway_as_itself() -> None:
    err = NameInUse(name="boss", holder="claude:u-2", machine="box", seconds=95)
    assert str(err) == (
        "boss: in use by session claude:u-2 on box, last seen 1m ago; take it over with "
        "`dev-sessions agents register boss --takeover`, or choose another name"
    )
    again = revive(err.to_wire())
    assert type(again) is NameInUse and str(again) == str(err) and again.exit_code == 1
