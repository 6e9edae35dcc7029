"""Hostile input against the pure parts: the paste and terminal cleaners, name parsers, the gateway's checks.

Property-based (Hypothesis) where a rule holds for every input; each property names the hole it closes.
"""

from __future__ import annotations

import contextlib
import json
import string
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dev_sessions import ids
from dev_sessions.api import check_name
from dev_sessions.errors import UsageError
from dev_sessions.gateway import checks
from dev_sessions.gateway.tokens import OWNER, TokenRegistry, authenticate, check_owner_token
from dev_sessions.messaging.messenger import parse_message_id
from dev_sessions.terminal import cell, for_terminal, json_text, neutralise

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ANY_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=200)
CONTROLS = set(range(0x20)) | {0x7F} | set(range(0x80, 0xA0))


def _codes(text: str) -> set[int]:
    return {ord(c) for c in text}


# -- into a pane -------------------------------------------------------------------------------------


@FAST
@given(ANY_TEXT)
def test_a_paste_carries_no_control_but_line_feed_and_tab(text: str) -> None:
    clean = neutralise(text)
    assert not (_codes(clean) & CONTROLS) - {0x0A, 0x09}
    # No surrogate is left to travel as a raw byte (0x9b alone is an 8-bit CSI): strict UTF-8 holds.
    assert clean.encode("utf-8").decode("utf-8") == clean


def test_a_surrogate_escaped_c1_byte_never_reaches_the_pane() -> None:
    assert neutralise("a\udc9bb") == "a\ufffdb"
    assert b"\x9b" not in neutralise("\udc9b[31m").encode("utf-8")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a\rb", "a\nb"), ("a\r\nb", "a\nb"), ("a\n\rb", "a\n\nb"), ("\r", "\n"), ("tab\there", "tab\there")],
)
def test_carriage_returns_become_line_feeds_in_a_paste(text: str, expected: str) -> None:
    assert neutralise(text) == expected


@FAST
@given(st.text(alphabet=string.printable.replace("\r", "").replace("\x0b", "").replace("\x0c", "")))
def test_ordinary_text_is_pasted_unchanged(text: str) -> None:
    assert neutralise(text) == text


# -- onto a terminal ---------------------------------------------------------------------------------


@FAST
@given(ANY_TEXT)
def test_terminal_output_never_carries_an_escape_or_bell(text: str) -> None:
    shown = for_terminal(text)
    assert not (_codes(shown) & CONTROLS) - {0x0A, 0x09}
    assert not any(0xD800 <= ord(c) < 0xE000 for c in shown)
    assert len(shown) == len(text)  # shown, not dropped


@FAST
@given(ANY_TEXT)
def test_a_table_cell_stays_on_one_line(text: str) -> None:
    shown = cell(text)
    assert not _codes(shown) & CONTROLS
    assert len(shown) == len(text)


@FAST
@given(
    st.recursive(
        ANY_TEXT | st.integers() | st.booleans() | st.none(),
        _containers := lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_json_output_is_exact_and_harmless(value: Any) -> None:
    text = json_text(value)
    assert json.loads(text) == value  # exact for a JSON reader
    assert not (_codes(text) & CONTROLS) - {0x0A}  # indentation's line feeds only
    assert not any(0xD800 <= ord(c) < 0xE000 for c in text)
    text.encode("utf-8")  # printable whatever the value held


# -- names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fizz-top\n", "fizz-top\r", " fizz-top", "fizz-top ", "Fizz-top", "-x", ""])
def test_session_ids_refuse_what_the_old_pattern_let_through(name: str) -> None:
    assert not ids.is_valid(name)


@FAST
@given(ANY_TEXT)
def test_a_valid_session_id_is_plain_lowercase(text: str) -> None:
    if ids.is_valid(text):
        assert set(text) <= set(string.ascii_lowercase + string.digits + "-")
        assert len(text) <= 64


@pytest.mark.parametrize("name", ["boss\n", "boss\r\n", "bo ss", "boss;", "#(id)", "", "x" * 65])
def test_agent_names_refuse_trailing_newlines_and_shell_characters(name: str) -> None:
    with pytest.raises(UsageError):
        check_name(name)


@FAST
@given(ANY_TEXT)
def test_an_accepted_agent_name_is_one_safe_word(text: str) -> None:
    try:
        check_name(text)
    except UsageError:
        return
    assert set(text) <= set(string.ascii_letters + string.digits + "._@:+-")


@pytest.mark.parametrize("text", ["4\n2", "4 2", "٤٢", "m", "#", "1" * 19, "-1"])
def test_message_ids_are_plain_numbers(text: str) -> None:
    with pytest.raises(UsageError):
        parse_message_id(text)


def test_message_id_forms_that_are_accepted() -> None:
    # Surrounding whitespace is forgiven (an id captured with $(...) keeps its newline); nothing else.
    assert [parse_message_id(t) for t in ("42", "m42", "#42", " 42 ", "42\n")] == [42] * 5


# -- the gateway's checks ----------------------------------------------------------------------------


class HostCase:
    def __init__(self, test_id: str, header: str | None, expected: str | None) -> None:
        self.test_id, self.header, self.expected = test_id, header, expected


HOSTS = [
    HostCase("name", "localhost", "localhost"),
    HostCase("name-port", "LocalHost:6767", "localhost"),
    HostCase("v4-port", "127.0.0.1:6767", "127.0.0.1"),
    HostCase("v6", "[::1]", "::1"),
    HostCase("v6-port", "[::1]:6767", "::1"),
    HostCase("v6-long-form", "[0:0:0:0:0:0:0:1]:1", "::1"),
    HostCase("missing", None, None),
    HostCase("empty", "", None),
    HostCase("v6-trailing-junk", "[::1]evil", None),
    HostCase("port-not-numeric", "127.0.0.1:abc", None),
    HostCase("port-too-big", "127.0.0.1:65536", None),
    HostCase("two-ports", "127.0.0.1:1:2", None),
    HostCase("userinfo", "evil@127.0.0.1", None),
    HostCase("space", "127.0.0.1 evil", None),
    HostCase("v6-unbracketed", "::1", None),
    HostCase("v6-garbage", "[::g]", None),
    HostCase("slash", "127.0.0.1/x", None),
]


@pytest.mark.parametrize("case", HOSTS, ids=[c.test_id for c in HOSTS])
def test_host_headers_are_read_strictly(case: HostCase) -> None:
    if case.expected is None:
        with pytest.raises(checks.BadRequest):
            checks.host_name(case.header)
    else:
        assert checks.host_name(case.header) == case.expected


@FAST
@given(st.text(max_size=60))
def test_any_host_header_is_a_clean_answer(header: str) -> None:
    try:
        name = checks.host_name(header)
    except checks.BadRequest:
        return
    assert name and all(c.isalnum() or c in ".-:" for c in name)


@pytest.mark.parametrize(
    "body",
    [
        b"[]", b"1", b"null", b"{", b'{"a": NaN}', b'{"a": Infinity}', b'{"a": 1e999}',
        b'{"a": "x\\u0000y"}', b'{"a": "\\ud800"}', b'{"\\udfff": 1}', b"[" * 100000 + b"]" * 100000,
        b'{"a":' * 20 + b"1" + b"}" * 20, b'{"a": 9007199254740993}', b"\xff\xfe", b"",
    ],
)  # fmt: skip
def test_bodies_the_gateway_refuses(body: bytes) -> None:
    with pytest.raises(checks.BadRequest):
        checks.parse_body(body)


@FAST
@given(st.binary(max_size=200))
def test_any_body_is_parsed_or_refused_cleanly(body: bytes) -> None:
    with contextlib.suppress(checks.BadRequest):
        checks.parse_body(body)


def _signature(
    session_id: str, count: int = 1, timeout: float | None = None, ids: Sequence[str] = (), flag: bool = False
) -> None: ...


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ({"count": 1}, "missing session_id"),
        ({"session_id": 5}, "session_id must be a string"),
        ({"session_id": "a", "count": True}, "count must be an integer"),
        ({"session_id": "a", "count": 1.5}, "count must be an integer"),
        ({"session_id": "a", "timeout": "soon"}, "timeout must be a number or null"),
        ({"session_id": "a", "ids": "abc"}, "ids must be a list of a string"),
        ({"session_id": "a", "ids": [1]}, "ids must be a list of a string"),
        ({"session_id": "a", "flag": 1}, "flag must be true or false"),
    ],
)
def test_argument_types_follow_the_library_signature(args: dict[str, Any], problem: str) -> None:
    with pytest.raises(checks.BadRequest, match=problem):
        checks.check_args(_signature, args, "x.y")


def test_well_typed_arguments_pass() -> None:
    checks.check_args(
        _signature, {"session_id": "a", "count": 2, "timeout": 3, "ids": ["a"], "flag": True}, "x"
    )


# -- tokens ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token", ["", " ", "short", "x" * 31, "a" * 31 + " ", "a" * 32 + "\n", "\u00a0" * 40]
)
def test_owner_tokens_that_would_be_a_door(token: str) -> None:
    with pytest.raises(Exception, match="gateway token"):
        check_owner_token(token, "test")


class _NoTokens(TokenRegistry):
    def __init__(self) -> None:
        pass

    def verify(self, presented: str) -> None:
        return None


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Bearer \u00a0", "Bearer \u0085", "Bearer \u3000", "Basic " + "a" * 40,
     "Bearer " + "a" * 40 + " ", "Bearer  " + "a" * 40, "Bearer " + "a" * 39],
)  # fmt: skip
def test_headers_that_prove_nothing(header: str | None) -> None:
    assert authenticate(header, "a" * 40, _NoTokens()) is None


def test_the_owner_token_exactly() -> None:
    assert authenticate("Bearer " + "a" * 40, "a" * 40, _NoTokens()) is OWNER
    assert authenticate("bearer " + "a" * 40, "a" * 40, _NoTokens()) is OWNER
    assert authenticate("Bearer ", "", _NoTokens()) is None  # never an empty owner token


@pytest.mark.parametrize(
    ("text", "pasted"),
    [
        ("Run the tests and fix what fails.", True),
        ("x" * 800, True),
        ("x" * 801, False),  # 2.1.332 wraps a paste over 800 characters
        ("two\nlines", False),  # and one with more newlines than a small pane allows
        ("a\ttab", False),  # every version turns a pasted tab into spaces
        ("!ls", False),  # and a leading "!" into a shell command
        ("#note", False),
        ("look at shot.png", False),  # a path to an image becomes an image
        ("ultraplan it", False),
        ("cafe\u0301", False),  # 2.1.197 applies NFC to a paste
        ("", False),
    ],
)
def test_only_text_a_paste_keeps_exactly_is_pasted(text: str, pasted: bool) -> None:
    from dev_sessions.claude.delivery import paste_is_exact

    assert paste_is_exact(text) is pasted
