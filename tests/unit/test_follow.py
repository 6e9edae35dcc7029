"""The pure parts of watching a session live (issue 18): the event type and its short texts, ``--since``,
the drivers of a follower's rounds, Claude's transcript and Codex's notifications turned into events
(recorded from the real agents: tests/fixtures/), and what ``logs --follow`` and the progress line
print of them."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from dev_sessions.backend import LogItem
from dev_sessions.claude import transcript as tx
from dev_sessions.cli.progress import SessionLine, print_events, text_line, wanted
from dev_sessions.codex import model
from dev_sessions.errors import DevSessionsError
from dev_sessions.follow import (
    Event,
    Rounds,
    drive,
    drive_async,
    first_lines,
    merged,
    of_log,
    one_line,
    since_filter,
    since_iso,
    target_of,
)
from tests.fixtures.codex_notifications import (
    APPROVAL,
    QUESTIONS,
    TURN,
    agent,
    command,
    ended,
    failed,
    note,
    started,
    token_usage,
    turn,
    user,
)

TRANSCRIPTS = Path(__file__).parents[1] / "fixtures" / "transcripts"
T = "2026-12-01T10:00:00.000Z"

# -- the event and its short texts ---------------------------------------------------------------------


def test_an_event_goes_to_json_with_the_fields_of_its_kind_and_comes_back() -> None:
    tool = Event("tool", "fizz-top", T, tool="Bash", target="make test")
    assert tool.to_json() == {
        "id": "fizz-top",
        "kind": "tool",
        "timestamp": T,
        "tool": "Bash",
        "target": "make test",
    }
    turn_end = Event("turn", "fizz-top", T, outcome="completed", seconds=0.0)
    assert turn_end.to_json()["seconds"] == 0.0  # a zero is a value, not "unset"
    tokens = Event("tokens", "fizz-top", T, tokens=0)
    for event in (tool, turn_end, tokens, Event("status", "fizz-top", T, state="exited")):
        assert Event.from_json(event.to_json()) == event
    # What another side adds (the bridge's dedup key) is not part of the event.
    assert Event.from_json({**tool.to_json(), "key": "call-1/tool"}) == tool


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="not an event kind"):
        Event.from_json({"kind": "gossip"})


def test_one_line_and_first_lines_keep_it_short() -> None:
    assert one_line("a\n  b\tc ") == "a b c"
    assert one_line("x" * 300, 10) == "x" * 9 + "…"
    assert first_lines("\n one\n\ntwo\nthree\nfour\n five \n") == "one\ntwo\nthree\n… 2 more line(s)"
    assert first_lines("only") == "only"
    assert first_lines("") == ""


class Target(NamedTuple):
    test_id: str
    tool_input: Any
    target: str


TARGETS = [
    Target("a-command", {"command": "make   test\n", "description": "Run the tests"}, "make test"),
    Target("a-file", {"file_path": "/src/app.py", "old_string": "x"}, "/src/app.py"),
    Target("argv", {"cmd": ["git", "status"]}, "git status"),
    Target("a-question", {"questions": [{"question": "Which colour?"}]}, "Which colour?"),
    Target("nothing-known", {"foo": "bar"}, ""),
    Target("not-a-dict", "raw input", "raw input"),
    Target("empty", None, ""),
    Target("long", {"command": "y" * 200}, "y" * 79 + "…"),
]


@pytest.mark.parametrize("case", TARGETS, ids=[c.test_id for c in TARGETS])
def test_the_target_of_a_tool_call(case: Target) -> None:
    assert target_of(case.tool_input) == case.target


def test_events_of_a_log_where_a_backend_has_nothing_finer() -> None:
    items = [
        LogItem(T, "user", "run it"),
        LogItem(T, "tool", "Bash(make test)"),
        LogItem(T, "result", "1\n2\n3\n4"),
        LogItem(T, "assistant", "done"),
        LogItem(T, "turn", "turn ended after 2.5 s"),
        LogItem(T, "turn", "turn interrupted after 1.0 s"),
    ]
    assert of_log("fizz-top", items) == [
        Event("prompt", "fizz-top", T, text="run it"),
        Event("tool", "fizz-top", T, tool="Bash", target="make test"),
        Event("result", "fizz-top", T, text="1\n2\n3\n… 1 more line(s)"),
        Event("reply", "fizz-top", T, text="done"),
        Event("turn", "fizz-top", T, outcome="completed", seconds=2.5),
        Event("turn", "fizz-top", T, outcome="interrupted", seconds=1.0),
    ]


# -- --since -----------------------------------------------------------------------------------------


class Since(NamedTuple):
    test_id: str
    given: str
    iso: str


SINCE = [
    Since("utc", "2026-12-01T10:00:00Z", "2026-12-01T10:00:00.000Z"),
    Since("an-offset", "2026-12-01T12:00:00+02:00", "2026-12-01T10:00:00.000Z"),
    Since("no-zone-is-utc", "2026-12-01T10:00:00.250", "2026-12-01T10:00:00.250Z"),
    Since("a-date", "2026-12-01", "2026-12-01T00:00:00.000Z"),
]


@pytest.mark.parametrize("case", SINCE, ids=[c.test_id for c in SINCE])
def test_since_as_a_time_is_the_utc_time_events_carry(case: Since) -> None:
    assert since_iso(case.given) == case.iso


def test_since_as_an_age_is_that_long_before_now() -> None:
    before = datetime.now(timezone.utc) - timedelta(minutes=30)
    found = since_iso("30m")
    after = datetime.now(timezone.utc) - timedelta(minutes=30)
    assert found is not None and found.endswith("Z")
    moment = datetime.fromisoformat(found.replace("Z", "+00:00"))
    assert before - timedelta(milliseconds=1) <= moment <= after
    assert since_iso(None) is None


def test_a_since_that_is_neither_is_one_line() -> None:
    with pytest.raises(DevSessionsError) as caught:
        since_iso("yesterday-ish")
    assert "\n" not in str(caught.value) and "yesterday-ish" in str(caught.value)


def test_since_keeps_the_events_at_or_after_it_and_those_with_a_time() -> None:
    events = [
        Event("prompt", "s", "2026-12-01T09:59:59.999Z", text="old"),
        Event("prompt", "s", "2026-12-01T10:00:00.000Z", text="at"),
        Event("reply", "s", "2026-12-01T10:00:01.000Z", text="after"),
        Event("status", "s", "", state="idle"),
    ]
    assert [e.text for e in since_filter(events, T)] == ["at", "after"]
    assert since_filter(events, None) == events


# -- rounds and their drivers ---------------------------------------------------------------------------


class Scripted:
    """A pause that brings back what it was given, and counts how it was slept on."""

    def __init__(self, value: object) -> None:
        self.value = value
        self.blocked = 0
        self.awaited = 0

    def block(self) -> object:
        self.blocked += 1
        return self.value

    async def block_async(self) -> object:
        self.awaited += 1
        return self.value


def follower(pause: Scripted, got: list[object], closed: list[bool]) -> Rounds:
    try:
        yield [Event("prompt", "s", T, text="one")]
        got.append((yield pause))
        yield [Event("reply", "s", T, text="two"), Event("turn", "s", T, outcome="completed")]
    finally:
        closed.append(True)


def test_drive_yields_each_round_s_events_and_sends_back_what_a_pause_brought() -> None:
    pause, got, closed = Scripted("woken"), [], []  # type: ignore[var-annotated]
    events = list(drive(follower(pause, got, closed)))
    assert [e.text or e.outcome for e in events] == ["one", "two", "completed"]
    assert (pause.blocked, got, closed) == (1, ["woken"], [True])


def test_drive_async_awaits_the_pauses_and_closes_a_follower_left_early() -> None:
    pause, got, closed = Scripted("woken"), [], []  # type: ignore[var-annotated]

    async def first_two() -> list[Event]:
        stream = drive_async(follower(pause, got, closed))
        found = [await stream.__anext__(), await stream.__anext__()]
        await stream.aclose()
        return found

    events = asyncio.run(first_two())
    assert [e.text for e in events] == ["one", "two"]
    assert (pause.awaited, pause.blocked, closed) == (1, 0, [True])


def test_merged_streams_give_every_event_and_raise_a_stream_s_error() -> None:
    def stream(name: str, count: int) -> Iterator[Event]:
        for n in range(count):
            yield Event("reply", name, T, text=f"{name}{n}")

    found = list(merged([stream("a", 3), stream("b", 2)]))
    assert sorted(e.text for e in found) == ["a0", "a1", "a2", "b0", "b1"]
    assert [e.text for e in found if e.session_id == "a"] == ["a0", "a1", "a2"]  # each in its order

    def broken() -> Iterator[Event]:
        yield Event("reply", "c", T, text="c0")
        raise DevSessionsError("c: the follower failed")

    with pytest.raises(DevSessionsError, match="the follower failed"):
        list(merged([stream("a", 1), broken()]))


# -- Claude's transcript as events (recorded from the real Claude Code) ----------------------------------


class Recorded(NamedTuple):
    test_id: str
    path: str
    talk: list[tuple[str, str]]
    """(kind, its text, tool or outcome), in order."""


PLAIN = [("prompt", "before the error"), ("reply", "before the error"), ("turn", "completed")]
FAILED = [("prompt", "boom <<error:500>>"), ("turn", "failed")]
AFTER = [("prompt", "after the error"), ("reply", "after the error"), ("turn", "completed")]
ANSWERED = (
    'Your questions have been answered: "Which colour?"="Blue". '
    "You can now continue with these answers in mind."
)
ASKED = [
    ("prompt", "pick one <<ask>>"),
    ("tool", "AskUserQuestion: Which colour?"),
    ("result", ANSWERED),
    ("reply", f"ANSWER: {ANSWERED}"),
    ("turn", "completed"),
    ("prompt", "after the answer"),
    ("reply", "after the answer"),
    ("turn", "completed"),
]
INTERRUPTED = [
    ("prompt", "long one <<slow:20>>"),
    ("reply", "l"),
    ("turn", "interrupted"),
    ("prompt", "after the interrupt"),
    ("reply", "after the interrupt"),
    ("turn", "completed"),
]
RECORDED = [
    Recorded("2.1.197-api-error", "api-error.jsonl", PLAIN + FAILED + AFTER),
    Recorded("2.1.332-api-error", "2.1.332/api-error.jsonl", PLAIN + FAILED + AFTER),
    Recorded("2.1.197-ask", "ask.jsonl", ASKED),
    Recorded("2.1.332-ask", "2.1.332/ask.jsonl", ASKED),
    Recorded("2.1.197-interrupt", "interrupt.jsonl", INTERRUPTED),
    Recorded("2.1.332-interrupt", "2.1.332/interrupt.jsonl", INTERRUPTED),
    Recorded(
        "first-turn-tool",
        "first-turn-tool.jsonl",
        [
            ("prompt", "run <<bash:echo hi there>>"),  # written after its reply: put first
            ("tool", "Bash: echo hi there"),
            ("result", "hi there"),
            ("reply", "OUTPUT: hi there"),
            ("turn", "completed"),
            ("prompt", "plain echo"),
            ("reply", "plain echo"),
            ("turn", "completed"),
            ("prompt", "think <<multi>>"),
            ("reply", "first part"),
            ("reply", "second part"),
            ("turn", "completed"),
        ],
    ),
    Recorded(
        "queued-and-folded-into-the-turn",
        "queued-fold.jsonl",
        [
            ("prompt", "tool first <<bash:sleep 3; echo done>>"),
            ("tool", "Bash: sleep 3; echo done"),
            ("prompt", "folded into the running turn"),
            ("result", "done"),
            ("reply", "OUTPUT: done"),
            ("turn", "completed"),
        ],
    ),
    Recorded(
        "queued-for-the-next-turn",
        "queued-next.jsonl",
        [
            ("prompt", "first <<slow:3>>"),
            ("reply", "first <<slow:3>>"),
            ("turn", "completed"),
            ("prompt", "second, queued behind the first"),
            ("reply", "second, queued behind the first"),
            ("turn", "completed"),
        ],
    ),
]


def talk_of(events: list[Event]) -> list[tuple[str, str]]:
    def what(event: Event) -> str:
        if event.kind == "tool":
            return f"{event.tool}: {event.target}"
        return event.outcome if event.kind == "turn" else event.text

    return [(e.kind, what(e)) for e in events]


@pytest.mark.parametrize("case", RECORDED, ids=[c.test_id for c in RECORDED])
def test_claude_s_recorded_transcripts_as_events(case: Recorded) -> None:
    lines = (TRANSCRIPTS / case.path).read_bytes().split(b"\n")
    events = tx.EventReader("fizz-top").feed(tx.parse_lines(lines))
    assert talk_of(events) == case.talk
    assert all(e.session_id == "fizz-top" and e.timestamp for e in events)


@pytest.mark.parametrize("case", RECORDED, ids=[c.test_id for c in RECORDED])
def test_claude_s_transcript_read_a_turn_at_a_time_gives_the_same_events(case: Recorded) -> None:
    """As a follower reads it: what is new at each wake-up (here: up to each turn's end)."""
    lines = (TRANSCRIPTS / case.path).read_bytes().split(b"\n")
    reader = tx.EventReader("fizz-top")
    events: list[Event] = []
    batch: list[bytes] = []
    for line in lines:
        batch.append(line)
        entries = list(tx.parse_lines([line]))
        if entries and (tx.is_turn_end(entries[0]) or entries[0].get("isApiErrorMessage")):
            events += reader.feed(tx.parse_lines(batch))
            batch = []
    events += reader.feed(tx.parse_lines(batch))
    assert talk_of(events) == case.talk


def test_the_failed_turn_of_2_1_197_is_one_turn_even_when_its_end_comes_in_a_later_read() -> None:
    lines = (TRANSCRIPTS / "api-error.jsonl").read_bytes().split(b"\n")
    reader = tx.EventReader("fizz-top")
    events = [e for line in lines for e in reader.feed(tx.parse_lines([line]))]  # a line per read
    assert [e.outcome for e in events if e.kind == "turn"] == ["completed", "failed", "completed"]


# -- Codex's notifications as events (the shapes recorded from Codex 0.171.0) ------------------------------


def fed(*notifications: Any) -> list[dict[str, Any]]:
    return [event for n in notifications for event in model.follow_events(n, T)]


def test_codex_notifications_of_a_turn_as_events() -> None:
    running = command("call-1", "make test")
    done = command("call-1", "make test", output="1\n2\n3\n4\n")
    events = fed(
        *started(TURN, "c-1", "run the tests"),
        note("item/started", turnId=TURN, item=running),
        note("item/completed", turnId=TURN, item=done),
        note("item/completed", turnId=TURN, item=agent("all green")),
        token_usage(TURN, 30, 8, 12),
        *ended(TURN, "completed"),
    )
    assert [(e["kind"], e.get("key")) for e in events] == [
        ("status", None),
        ("prompt", "item-c-1/prompt"),
        ("tool", "call-1/tool"),
        ("result", "call-1/result"),
        ("reply", "msg_8b81100269cd4ad2a27a70fd/reply"),
        ("tokens", None),
        ("status", None),
        ("turn", f"{TURN}/turn"),
    ]
    shown = [Event.from_json(e) for e in events]
    assert shown[0].state == "working" and shown[6].state == "idle"
    assert shown[1].text == "run the tests"
    assert (shown[2].tool, shown[2].target) == ("command", "/bin/bash -lc 'make test'")
    assert shown[3].text == "1\n2\n3\n… 1 more line(s)"
    assert shown[5].tokens == 42
    assert (shown[7].outcome, shown[7].seconds) == ("completed", 0.064)
    assert all(e.timestamp == T for e in shown)


def test_a_failed_codex_turn_and_its_questions_as_events() -> None:
    events = [Event.from_json(e) for e in fed(*failed(TURN), APPROVAL, QUESTIONS)]
    assert [(e.kind, e.state or e.outcome) for e in events] == [
        ("status", "error"),
        ("turn", "failed"),
        ("dialog", ""),
        ("dialog", ""),
    ]
    assert events[1].text.startswith("We\u2019re currently experiencing high demand")
    assert [e.text for e in events[2:]] == ["Run this command?", "Which colour?"]


def test_listed_codex_turns_as_events_keyed_as_the_notifications_key_them() -> None:
    done = command("call-1", "make test", output="ok\n")
    declined = {**command("call-2", "rm -rf /", output=""), "status": "declined"}
    finished = turn(TURN, "completed", user("c-1", "run it"), done, declined, agent("all green"))
    finished["completedAt"] = 1795980439
    running = turn("t-2", "inProgress", user("c-2", "and again"))
    events = model.log_events([finished, running])
    assert [(e["kind"], e.get("key")) for e in events] == [
        ("prompt", "item-c-1/prompt"),
        ("tool", "call-1/tool"),
        ("result", "call-1/result"),
        ("tool", "call-2/tool"),
        ("result", "call-2/result"),
        ("reply", "msg_8b81100269cd4ad2a27a70fd/reply"),
        ("turn", f"{TURN}/turn"),
        ("prompt", "item-c-2/prompt"),  # a running turn: its items so far, and no end
    ]
    assert events[4]["text"] == "declined"
    assert events[2]["timestamp"] == "2026-11-29T19:27:19.228Z"  # the command's end, from the listing
    # The same item from a notification has the same key, and says the same.
    (notified,) = fed(note("item/completed", turnId=TURN, item=done))
    assert {k: v for k, v in notified.items() if k != "timestamp"} == {
        k: v for k, v in events[2].items() if k != "timestamp"
    }


# -- what the progress line shows -------------------------------------------------------------------------


def line(*events: Event, seconds: float = 42, width: int = 200) -> str:
    shown = SessionLine("fizz-top", started=1000.0)
    for event in events:
        shown.apply(event)
    return shown.render(1000.0 + seconds, width)


def ev(kind: str, **fields: Any) -> Event:
    return Event(kind, "fizz-top", T, **fields)  # type: ignore[arg-type]


class Drawn(NamedTuple):
    test_id: str
    events: list[Event]
    seconds: float
    shown: str


DRAWN = [
    Drawn("at-first", [], 0, "fizz-top  working  0s  thinking  · 0 tool calls"),
    Drawn(
        "a-tool-call",
        [ev("prompt", text="go"), ev("tool", tool="Bash", target="pytest -q"), ev("tokens", tokens=48_200)],
        42,
        "fizz-top  working  42s  Bash: pytest -q  · 1 tool call · 48.2k tokens",
    ),
    Drawn(
        "replying-after-two-calls",
        [ev("tool", tool="Read", target="a.py"), ev("tool", tool="Edit"), ev("reply", text="done")],
        63,
        "fizz-top  working  1m03s  replying  · 2 tool calls",
    ),
    Drawn(
        "a-dialog",
        [ev("tool", tool="AskUserQuestion"), ev("dialog", text="Which colour?")],
        63,
        "fizz-top  waiting for input  1m03s  Which colour?",
    ),
    Drawn(
        "answered",
        [ev("dialog", text="Which colour?"), ev("status", state="working")],
        5,
        "fizz-top  working  5s  thinking  · 0 tool calls",
    ),
    Drawn(
        "the-turn-ended",
        [ev("tool", tool="Bash"), ev("turn", outcome="interrupted")],
        5,
        "fizz-top  interrupted  5s  Bash  · 1 tool call",
    ),
    Drawn(
        "the-next-turn-counts-afresh",
        [ev("tool", tool="Bash"), ev("turn", outcome="completed"), ev("prompt", text="next")],
        5,
        "fizz-top  completed  5s  thinking  · 0 tool calls",
    ),
    Drawn(
        "a-prompt-folded-into-the-turn-counts-on",
        [ev("prompt", text="go"), ev("tool", tool="Bash"), ev("prompt", text="and also")],
        5,
        "fizz-top  working  5s  Bash  · 1 tool call",
    ),
    Drawn(
        "an-agent-s-control-characters-are-shown-not-obeyed",
        [ev("tool", tool="Bash", target="echo \x1b[2J\x07")],
        5,
        "fizz-top  working  5s  Bash: echo ␛[2J␇  · 1 tool call",
    ),
]


@pytest.mark.parametrize("case", DRAWN, ids=[c.test_id for c in DRAWN])
def test_the_progress_line(case: Drawn) -> None:
    assert line(*case.events, seconds=case.seconds) == case.shown


def test_the_progress_line_fits_the_terminal() -> None:
    shown = line(ev("tool", tool="Bash", target="x" * 80), width=40)
    assert len(shown) == 39 and shown.endswith("…") and shown.startswith("fizz-top  working  42s  Bash: x")


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        return self.tty


class Wanted(NamedTuple):
    test_id: str
    tty: bool
    environ: dict[str, str]
    as_json: bool
    quiet: bool
    drawn: bool


WANTED = [
    Wanted("a-terminal", True, {"TERM": "xterm-256color"}, False, False, True),
    Wanted("no-term-set", True, {}, False, False, True),
    Wanted("a-pipe", False, {"TERM": "xterm"}, False, False, False),
    Wanted("json", True, {"TERM": "xterm"}, True, False, False),
    Wanted("quiet", True, {"TERM": "xterm"}, False, True, False),
    Wanted("no-color", True, {"TERM": "xterm", "NO_COLOR": ""}, False, False, False),
    Wanted("a-dumb-terminal", True, {"TERM": "dumb"}, False, False, False),
]


@pytest.mark.parametrize("case", WANTED, ids=[c.test_id for c in WANTED])
def test_where_the_progress_line_is_drawn(case: Wanted) -> None:
    stream = Stream(case.tty)
    assert wanted(stream, case.environ, as_json=case.as_json, quiet=case.quiet) is case.drawn


def test_no_progress_line_on_a_closed_stream() -> None:
    stream = Stream(True)
    stream.close()
    assert wanted(stream, {}) is False


# -- what logs --follow prints ------------------------------------------------------------------------------


class Printed(NamedTuple):
    test_id: str
    event: Event
    text: str | None


PRINTED = [
    Printed("a-prompt", ev("prompt", text="run it"), "[10:00:00] user: run it"),
    Printed("a-reply-over-lines", ev("reply", text="one\ntwo"), "[10:00:00] assistant: one\n    two"),
    Printed("a-tool-call", ev("tool", tool="Bash", target="make"), "[10:00:00] tool: Bash(make)"),
    Printed("a-result", ev("result", text="ok"), "[10:00:00] result: ok"),
    Printed(
        "a-turn",
        ev("turn", outcome="completed", seconds=2.25),
        "[10:00:00] turn: turn completed after 2.2 s",
    ),
    Printed(
        "a-failed-turn",
        ev("turn", outcome="failed", text="API Error: 500"),
        "[10:00:00] turn: turn failed: API Error: 500",
    ),
    Printed("a-dialog", ev("dialog", text="Which colour?"), "[10:00:00] dialog: Which colour?"),
    Printed("the-end", ev("status", state="exited"), "[10:00:00] status: the session ended"),
    Printed("a-status", ev("status", state="working"), None),
    Printed("tokens", ev("tokens", tokens=5), None),
    Printed("no-time", Event("prompt", "fizz-top", "", text="hi"), "[] user: hi"),
]


@pytest.mark.parametrize("case", PRINTED, ids=[c.test_id for c in PRINTED])
def test_a_line_of_logs_follow(case: Printed) -> None:
    assert text_line(case.event) == case.text


def test_logs_follow_prints_each_event_a_line_or_as_json() -> None:
    events = [ev("prompt", text="run it"), ev("tokens", tokens=5), ev("status", state="exited")]
    out = io.StringIO()
    print_events(iter(events), as_json=False, out=out)
    assert out.getvalue() == "[10:00:00] user: run it\n[10:00:00] status: the session ended\n"
    out = io.StringIO()
    print_events(iter(events), as_json=True, out=out)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [e.to_json() for e in events]
