"""The bridge's turn state and outcome decisions, without sockets: notifications in, answers out.

The notifications have the shapes the pinned app-servers send (``tests/fixtures/codex_notifications.py``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from dev_sessions.backend import choose
from dev_sessions.codex import model, turns
from dev_sessions.codex.protocol import Notification, ServerRequest
from tests.fixtures.codex_notifications import (
    APPROVAL,
    ELICITATION,
    ERROR_TEXT,
    NEXT,
    QUESTIONS,
    SYSTEM_ERROR,
    THREAD,
    TURN,
    agent,
    ended,
    failed,
    goal,
    note,
    started,
    status,
    turn,
    user,
)


def fed(*events: Notification | ServerRequest) -> turns.Thread:
    thread = turns.Thread(THREAD, subscribed=True, status={"type": "idle"})
    for event in events:
        thread.apply(event)
    return thread


def waits_for(target: turns.Target, thread: turns.Thread, *pages: list[dict[str, Any]]) -> object:
    """The wait's decision: the turn found (from the notifications, else the pages), then the outcome."""
    search = turns.TurnSearch(thread, target.turn_id, target.client_id)
    for page in pages:
        if search.found is not None or search.feed(page):
            break
    return turns.turn_outcome(thread, search.found, target)


SENT = turns.Target(TURN, "c-1")


# -- the reducer -------------------------------------------------------------------------------------


def test_a_plain_turn_completes() -> None:
    thread = fed(*started(TURN, "c-1", "hello"), *ended(TURN, "completed", agent("hello")))
    assert thread.status == {"type": "idle"}
    assert thread.client_turns == {"c-1": TURN}
    assert thread.finished[TURN]["status"] == "completed"
    assert waits_for(SENT, thread) == {"outcome": "completed", "error": None}


def test_a_running_turn_has_no_outcome_yet() -> None:
    thread = fed(*started(TURN, "c-1", "hello"))
    assert thread.state == ("working", "")
    assert waits_for(SENT, thread, [turn(TURN, "inProgress", user("c-1", "hello"))]) is None


def test_an_interrupted_turn() -> None:
    thread = fed(*started(TURN, "c-1", "<<hold:a>>"), *ended(TURN, "interrupted"))
    assert waits_for(SENT, thread) == {"outcome": "interrupted", "error": None}


def test_a_failed_turn_carries_its_error_text() -> None:
    thread = fed(*started(TURN, "c-1", "<<error:500>>"), *failed(TURN))
    assert thread.last_error == ERROR_TEXT
    assert waits_for(SENT, thread) == {"outcome": "failed", "error": ERROR_TEXT}
    assert turns.status(thread) == {"state": "error", "detail": ERROR_TEXT}


def test_a_thread_in_error_fails_the_wait_with_the_last_error_before_the_turn_shows() -> None:
    thread = fed(
        status("systemError"),
        note("error", turnId=TURN, willRetry=False, error={"message": "stream disconnected"}),
    )
    assert waits_for(SENT, thread, []) == {"outcome": "failed", "error": "stream disconnected"}
    bare = fed(status("systemError"))
    assert waits_for(SENT, bare, []) == {"outcome": "failed", "error": SYSTEM_ERROR}


def test_an_error_that_will_be_retried_is_not_the_last_error() -> None:
    thread = fed(note("error", turnId=TURN, willRetry=True, error={"message": "reconnecting 1/5"}))
    assert thread.last_error is None


class Wake(NamedTuple):
    test_id: str
    event: Notification
    wakes: bool


WAKES = [
    Wake("status", status("active"), True),
    Wake("turn started", note("turn/started", turn=turn(TURN, "inProgress")), True),
    Wake("turn completed", note("turn/completed", turn=turn(TURN, "completed")), True),
    Wake("request resolved", note("serverRequest/resolved", requestId=0), True),
    Wake("goal updated", note("thread/goal/updated", goal={"status": "active"}), True),
    Wake("goal cleared", note("thread/goal/cleared"), True),
    Wake("archived", note("thread/archived"), True),
    Wake("closed", note("thread/closed"), True),
    Wake("our message", note("item/started", turnId=TURN, item=user("c-1", "hi")), False),
    Wake("error", note("error", willRetry=False, error={"message": "x"}), False),
    Wake("agent message", note("item/completed", turnId=TURN, item=agent("hi")), False),
    Wake("token usage", note("thread/tokenUsage/updated", turnId=TURN, tokenUsage={}), False),
    Wake("queue changed", note("thread/queue/changed"), False),
    Wake("warning", note("warning", message="Model metadata for `fake-model` not found."), False),
]


@pytest.mark.parametrize("case", WAKES, ids=[c.test_id for c in WAKES])
def test_which_notifications_wake_a_waiter(case: Wake) -> None:
    assert turns.Thread(THREAD).apply(case.event) is case.wakes


def test_events_name_their_thread() -> None:
    assert turns.thread_of(status("idle")) == THREAD
    assert turns.thread_of(Notification("thread/started", {"thread": {"id": THREAD}})) == THREAD
    assert turns.thread_of(Notification("account/rateLimits/updated", {"rateLimits": {}})) is None


# -- questions the thread waits on ---------------------------------------------------------------------


def test_an_approval_is_waited_for_answered_and_resolved() -> None:
    thread = fed(*started(TURN, "c-1", "<<bash:touch x>>"), status("active", "waitingOnApproval"), APPROVAL)
    decided = waits_for(SENT, thread, [turn(TURN, "inProgress", user("c-1", "x"))])
    assert decided == turns.AskDialog("waitingOnApproval")
    dialog = thread.dialog()
    assert dialog is not None
    assert turns.status(thread) == {"state": "waiting_for_input", "detail": "waitingOnApproval"}
    assert decided.outcome(dialog) == {
        "outcome": "waiting_for_input",
        "dialog": dialog.to_json(),
        "error": "waitingOnApproval",
    }
    assert dialog.question == "Run this command?"
    assert dialog.context == ("/bin/bash -lc 'touch x'", "in /work")
    option, typed = choose("s", dialog, "3")
    assert thread.answer(APPROVAL, option, typed) == turns.Reply(result={"decision": "decline"})
    thread.resolved(APPROVAL)
    assert thread.pending() is None


def test_the_app_server_resolving_a_request_takes_it_away() -> None:
    thread = fed(APPROVAL, note("serverRequest/resolved", requestId=0))
    assert thread.pending() is None and thread.dialog() is None


def test_several_questions_are_answered_one_at_a_time_and_go_back_together() -> None:
    thread = fed(status("active", "waitingOnUserInput"), QUESTIONS)
    decided = waits_for(SENT, thread, [])
    assert decided == turns.AskDialog("waitingOnUserInput")
    first = thread.dialog()
    assert first is not None
    assert (first.question, first.context) == ("Which colour?", ("Colour", "question 1 of 2"))
    option, typed = choose("s", first, "blue")
    reply = thread.answer(QUESTIONS, option, typed)
    assert reply.more
    second = thread.dialog()
    assert second is not None and second.question == "Which size?"
    option, typed = choose("s", second, "huge, really")
    assert typed == "huge, really"
    assert thread.answer(QUESTIONS, option, typed) == turns.Reply(
        result={"answers": {"colour": {"answers": ["Blue"]}, "size": {"answers": ["huge, really"]}}}
    )
    thread.resolved(QUESTIONS)
    assert thread.pending() is None and thread.partial == {}


def test_an_elicitation_can_only_be_declined() -> None:
    thread = fed(status("active", "waitingOnUserInput"), ELICITATION)
    assert waits_for(SENT, thread, []) == turns.AskDialog("waitingOnUserInput")
    dialog = thread.dialog()
    assert dialog is not None and dialog.question == "mcpServer/elicitation/request?"
    option, typed = choose("s", dialog, "1")
    assert thread.answer(ELICITATION, option, typed) == turns.Reply(error=turns.DECLINED)


def test_the_oldest_request_is_asked_first() -> None:
    thread = fed(QUESTIONS, APPROVAL)
    assert thread.pending() is QUESTIONS


def test_a_lost_connection_voids_the_requests_and_the_subscription() -> None:
    thread = fed(status("active", "waitingOnApproval"), APPROVAL)
    thread.disconnected()
    assert not thread.subscribed and thread.pending() is None
    assert thread.status == {"type": "active", "activeFlags": ["waitingOnApproval"]}


# -- which turn a wait is about ------------------------------------------------------------------------


def test_the_client_id_decides_which_turn_carries_the_message() -> None:
    # turn/start answered with the id of a turn left "in progress"; ours runs as NEXT.
    thread = fed(*started(NEXT, "c-1", "hello"), *ended(NEXT, "completed", agent("hello")))
    target = turns.Target(TURN, "c-1")
    assert turns.TurnSearch(thread, target.turn_id, target.client_id).found == thread.finished[NEXT]
    assert waits_for(target, thread) == {"outcome": "completed", "error": None}


def test_a_turn_not_seen_ending_is_found_in_the_pages_by_its_message() -> None:
    thread = fed(status("idle"))  # a new bridge: it saw nothing of the turn
    search = turns.TurnSearch(thread, TURN, "c-1")
    assert search.found is None
    assert not search.feed([turn("other", "completed", user("c-0", "before"))])
    assert search.feed([turn(TURN, "completed", user("c-1", "hello"), agent("hello"))])
    assert search.found is not None and search.found["id"] == TURN


def test_without_a_client_id_the_turn_id_decides() -> None:
    search = turns.TurnSearch(fed(), TURN, None)
    assert search.feed([turn("other", "completed"), turn(TURN, "interrupted")])
    assert search.found is not None and search.found["status"] == "interrupted"


def test_the_search_gives_up_after_the_newest_turns() -> None:
    search = turns.TurnSearch(fed(), None, "c-1")
    page = [turn(f"t{n}", "completed", user(f"c{n}", "x")) for n in range(20)]
    assert not search.feed(page)
    assert not search.feed(page)
    assert search.feed(page), f"stops after {turns.TURN_SCAN} turns"
    assert search.found is None


def test_a_wait_with_nothing_sent_follows_the_running_turn() -> None:
    assert turns.Target().follows_running
    assert not turns.Target.from_json({"turnId": None, "clientId": "c-1", "mode": "started"}).follows_running
    assert turns.running_turn([turn(TURN, "inProgress")]) == TURN
    assert turns.running_turn([turn(TURN, "completed")]) is None
    assert turns.running_turn([]) is None
    assert turns.idle() == {"outcome": "idle"}


# -- queued sends ----------------------------------------------------------------------------------

QUEUED = turns.Target.from_json({"turnId": None, "clientId": "c-7", "mode": "queued"})
QUEUE_LIST = {
    "data": [
        {
            "id": "019a228c-b03c-7d50-87e2-70f75df4ba09",
            "input": [{"type": "text", "text": "next", "text_elements": []}],
            "clientUserMessageId": "c-7",
            "responsesapiClientMetadata": None,
        }
    ],
    "nextCursor": None,
}


def test_a_prompt_goes_in_steered_queued_or_as_a_turn() -> None:
    assert turns.send_mode(None, steer=False) == "started"
    assert turns.send_mode(TURN, steer=False) == "queued"
    assert turns.send_mode(TURN, steer=True) == "steered"


def test_a_queued_prompt_waits_behind_the_running_turn_then_runs() -> None:
    assert turns.Target(None, "c-7", queued=True) == QUEUED
    thread = fed(*started(TURN, "c-6", "<<hold:b>>"), note("thread/queue/changed"))
    assert waits_for(QUEUED, thread, [turn(TURN, "inProgress", user("c-6", "x"))]) is None
    assert turns.in_queue(QUEUE_LIST, "c-7") and not turns.in_queue(QUEUE_LIST, "c-8")
    thread = fed(*started(TURN, "c-6", "<<hold:b>>"), *ended(TURN, "completed", agent("<<hold:b>>")))
    # Idle between the two turns, and the prompt in no turn yet: only the queue can tell.
    assert waits_for(QUEUED, thread, [turn(TURN, "completed", user("c-6", "x"))]) == turns.CheckQueue("c-7")
    for event in [*started(NEXT, "c-7", "next"), *ended(NEXT, "completed", agent("next"))]:
        thread.apply(event)
    assert waits_for(QUEUED, thread) == {"outcome": "completed", "error": None}


def test_a_queued_prompt_that_left_the_queue_without_running_was_interrupted() -> None:
    assert turns.left_queue() == {
        "outcome": "interrupted",
        "error": "the queued prompt left the queue without running",
    }


def test_only_a_queued_prompt_is_looked_for_in_the_queue() -> None:
    thread = fed(status("idle"))
    assert waits_for(turns.Target(None, "c-1", queued=False), thread, []) is None
    assert waits_for(turns.Target(TURN, None, queued=True), thread, []) is None


# -- goals -----------------------------------------------------------------------------------------


class GoalCase(NamedTuple):
    test_id: str
    goal: dict[str, Any] | None
    outcome: str | None


GOALS = [
    GoalCase("cleared", None, "completed"),
    GoalCase("complete", goal("complete"), "completed"),
    GoalCase("paused", goal("paused"), "interrupted"),
    GoalCase("blocked", goal("blocked"), "interrupted"),
    GoalCase("budget limited", goal("budgetLimited"), "interrupted"),
    GoalCase("usage limited", goal("usageLimited"), "interrupted"),
    GoalCase("active", goal("active"), None),
]


@pytest.mark.parametrize("case", GOALS, ids=[c.test_id for c in GOALS])
def test_goal_outcomes(case: GoalCase) -> None:
    decided = turns.goal_outcome(fed(status("active")), case.goal)
    if case.outcome is None:
        assert decided is None
    else:
        assert decided == {"outcome": case.outcome, "goal": case.goal}


def test_an_active_goal_on_a_thread_that_waits_for_input_shows_the_question() -> None:
    thread = fed(status("active", "waitingOnApproval"), APPROVAL)
    decided = turns.goal_outcome(thread, goal("active"))
    assert decided == turns.AskDialog("waitingOnApproval")


def test_the_goal_follows_its_notifications() -> None:
    thread = fed(note("thread/goal/updated", turnId=None, goal=goal("active")))
    assert thread.goal == goal("active")
    thread.apply(note("thread/goal/updated", turnId=TURN, goal=goal("complete")))
    assert thread.goal == goal("complete")
    thread.apply(note("thread/goal/cleared"))
    assert thread.goal is None


# -- status ----------------------------------------------------------------------------------------


class StatusCase(NamedTuple):
    test_id: str
    status: dict[str, Any]
    answer: dict[str, str]


STATUSES = [
    StatusCase("idle", {"type": "idle"}, {"state": "idle", "detail": ""}),
    StatusCase("not loaded", {"type": "notLoaded"}, {"state": "idle", "detail": ""}),
    StatusCase("working", {"type": "active", "activeFlags": []}, {"state": "working", "detail": ""}),
    StatusCase(
        "waiting",
        {"type": "active", "activeFlags": ["waitingOnUserInput"]},
        {"state": "waiting_for_input", "detail": "waitingOnUserInput"},
    ),
    StatusCase("error", {"type": "systemError"}, {"state": "error", "detail": SYSTEM_ERROR}),
]


@pytest.mark.parametrize("case", STATUSES, ids=[c.test_id for c in STATUSES])
def test_status_answers(case: StatusCase) -> None:
    assert turns.status(turns.Thread(THREAD, status=case.status)) == case.answer


def test_a_thread_the_app_server_does_not_know_has_exited() -> None:
    assert turns.unknown_thread("thread not loaded: x") == {
        "state": "exited",
        "detail": "the app-server does not know the thread (thread not loaded: x)",
    }
    assert turns.at_rest() == {"state": "idle", "detail": turns.AT_REST}


def test_a_failed_turn_without_a_message_still_says_it_failed() -> None:
    thread = fed(note("turn/completed", turn=turn(TURN, "failed")))
    assert turns.turn_outcome(thread, thread.finished[TURN], turns.Target(TURN)) == {
        "outcome": "failed",
        "error": "the turn failed",
    }
    assert model.turn_outcome(thread.finished[TURN]) == ("failed", "the turn failed")
