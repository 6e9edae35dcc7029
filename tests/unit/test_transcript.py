"""The transcript parser, on transcripts recorded from the real Claude Code (see record_transcripts.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from dev_sessions.claude import transcript as tx

FIXTURES = Path(__file__).parents[1] / "fixtures" / "transcripts"


def load(name: str) -> tuple[list[bytes], list[dict[str, Any]]]:
    lines = (FIXTURES / f"{name}.jsonl").read_bytes().split(b"\n")
    marks = json.loads((FIXTURES / f"{name}.marks.json").read_text())["sends"]
    return lines, marks


def entries(name: str) -> list[tx.Entry]:
    return list(tx.parse_lines(load(name)[0]))


def carries(entry: tx.Entry, text: str) -> bool:
    """Whether an entry is the prompt ``text`` arriving in the conversation."""
    if tx.user_text(entry) == text:
        return True
    attachment = entry.get("attachment") or {}
    return attachment.get("type") == "queued_command" and attachment.get("prompt") == text


class Send(NamedTuple):
    test_id: str
    scenario: str
    index: int


SENDS = [
    Send(f"{scenario}-{index}", scenario, index)
    for scenario, count in [
        ("first-turn-tool", 3),
        ("api-error", 3),
        ("interrupt", 2),
        ("ask", 2),
        ("queued-next", 2),
        ("queued-fold", 2),
    ]
    for index in range(count)
]


@pytest.mark.parametrize("case", SENDS, ids=[s.test_id for s in SENDS])
def test_turn_of_each_send_ends_where_the_recorded_session_ended_it(case: Send) -> None:
    lines, marks = load(case.scenario)
    mark = marks[case.index]
    after = list(tx.parse_lines(lines[mark["line"] :]))
    tracker = tx.TurnTracker(queued=mark["queued"], ahead=mark["ahead"])
    ended_at = None
    for position, entry in enumerate(after):
        result = tracker.feed([entry])
        if result is not None:
            ended_at = position
            break
    assert ended_at is not None, "the turn never ended"
    assert result.outcome == mark["expect"]
    # The turn that ended is the one that carried this prompt, not an earlier one. (A first turn may be
    # written out of order, its prompt after its end, so only later sends are held to this.)
    carried = [i for i, e in enumerate(after) if carries(e, mark["text"])]
    assert carried, "the prompt never shows in the transcript"
    if case.index > 0:
        assert carried[0] <= ended_at


def test_queued_prompt_that_runs_next_skips_the_running_turns_end() -> None:
    lines, marks = load("queued-next")
    mark = marks[1]
    assert mark["queued"] is True
    after = list(tx.parse_lines(lines[mark["line"] :]))
    ends = [i for i, e in enumerate(after) if tx.is_turn_end(e)]
    assert len(ends) == 2, "the recording should hold the running turn's end and the queued turn's end"
    tracker = tx.TurnTracker(queued=True)
    assert tracker.feed(after[: ends[0] + 1]) is None
    assert tracker.feed(after[ends[0] + 1 :]) == tx.TurnResult("completed")


def test_queued_prompt_folded_into_the_running_turn_ends_with_it() -> None:
    lines, marks = load("queued-fold")
    mark = marks[1]
    after = list(tx.parse_lines(lines[mark["line"] :]))
    assert any((e.get("attachment") or {}).get("type") == "queued_command" for e in after)
    assert sum(tx.is_turn_end(e) for e in after) == 1
    assert tx.TurnTracker(queued=True).feed(after) == tx.TurnResult("completed")


def test_unqueued_tracker_counts_the_first_turn_end_even_when_it_comes_before_the_prompt() -> None:
    # The recorded first turn with a tool call wrote the assistant entry before the user entry.
    found = entries("first-turn-tool")
    kinds = [e.get("type") for e in found if e.get("type") in ("user", "assistant")]
    assert kinds[0] == "assistant", "fixture no longer shows the out-of-order first turn"
    assert tx.TurnTracker().feed(found) == tx.TurnResult("completed")


def test_api_error_turn_is_failed_with_the_error_text() -> None:
    lines, marks = load("api-error")
    result = tx.TurnTracker().feed(tx.parse_lines(lines[marks[1]["line"] :]))
    assert result is not None
    assert result.outcome == "failed"
    assert result.error is not None and "API Error: 500" in result.error


def test_interrupted_turn_is_reported_without_a_turn_end() -> None:
    lines, marks = load("interrupt")
    after = list(tx.parse_lines(lines[marks[0]["line"] :]))
    first_end = next(i for i, e in enumerate(after) if tx.is_interrupt(e))
    assert not any(tx.is_turn_end(e) for e in after[:first_end])
    assert tx.TurnTracker().feed(after) == tx.TurnResult("interrupted")


def test_assistant_blocks_of_one_message_are_joined_and_thinking_is_left_out() -> None:
    messages = tx.assistant_messages(entries("first-turn-tool"))
    assert [m.text for m in messages] == ["OUTPUT: hi there", "plain echo", "first part\n\nsecond part"]
    assert "pondering" not in messages[-1].text


def test_the_log_is_in_time_order_with_tool_calls_and_results() -> None:
    # The recording wrote the first turn's tool call before its prompt; the log puts them in order.
    log = tx.conversation(entries("first-turn-tool"))
    roles = [item.role for item in log]
    assert roles[:5] == ["user", "tool", "result", "assistant", "turn"]
    assert log[1].text.startswith("Bash(echo hi there")
    assert log[2].text == "hi there"
    assert [i.timestamp for i in log] == sorted(i.timestamp for i in log)


def test_api_error_message_is_marked() -> None:
    messages = tx.assistant_messages(entries("api-error"))
    assert [m.api_error for m in messages] == [False, True, False]


def test_answered_question_reply_is_the_last_message() -> None:
    messages = tx.assistant_messages(entries("ask"))
    assert messages[-2].text.startswith('ANSWER: Your questions have been answered: "Which colour?"="Blue"')


def test_interrupted_partial_reply_is_still_a_message() -> None:
    messages = tx.assistant_messages(entries("interrupt"))
    assert messages[0].text
    assert "long one <<slow:20>>".startswith(messages[0].text)
    assert messages[-1].text == "after the interrupt"


def test_bad_lines_are_skipped() -> None:
    lines = [b'{"type":"user","message":{"content":"hi"}}', b"{broken", b"[1,2]", b"", b'{"type":"x"}']
    assert [e["type"] for e in tx.parse_lines(lines)] == ["user", "x"]


def test_counts_from_raw_bytes() -> None:
    data = (FIXTURES / "queued-next.jsonl").read_bytes()
    assert tx.count_turn_ends(data) == 2
    assert tx.queue_depth(data) == 0
    assert tx.queue_depth(b'{"type":"queue-operation","operation":"enqueue"}\n') == 1


def test_sidechain_entries_do_not_end_the_turn() -> None:
    side = {"type": "system", "subtype": "turn_duration", "isSidechain": True}
    end = {"type": "system", "subtype": "turn_duration"}
    tracker = tx.TurnTracker()
    assert tracker.feed([side]) is None
    assert tracker.feed([end]) == tx.TurnResult("completed")


def test_other_system_entries_do_not_end_the_turn() -> None:
    tracker = tx.TurnTracker()
    for subtype in ("api_error", "local_command", "compact_boundary", "stop_hook_summary"):
        assert tracker.feed([{"type": "system", "subtype": subtype}]) is None


def test_queue_handed_back_means_the_prompt_will_not_run() -> None:
    tracker = tx.TurnTracker(queued=True)
    result = tracker.feed([{"type": "queue-operation", "operation": "popAll"}])
    assert result is not None and result.outcome == "interrupted"


def test_prompt_queued_behind_another_waits_for_its_own_hand_over() -> None:
    tracker = tx.TurnTracker(queued=True, ahead=1)
    first_taken = [
        {"type": "queue-operation", "operation": "dequeue"},
        {"type": "user", "message": {"content": "the other prompt"}},
        {"type": "system", "subtype": "turn_duration"},
    ]
    assert tracker.feed(first_taken) is None
    ours = [
        {"type": "queue-operation", "operation": "dequeue"},
        {"type": "system", "subtype": "turn_duration"},
        {"type": "user", "message": {"content": "ours"}},
        {"type": "system", "subtype": "turn_duration"},
    ]
    assert tracker.feed(ours[:2]) is None
    assert tracker.feed(ours[2:]) == tx.TurnResult("completed")
