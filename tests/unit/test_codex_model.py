"""What app-server objects mean for dev-sessions: statuses, outcomes, messages, dialogs."""

from __future__ import annotations

import pytest

from dev_sessions.backend import choose
from dev_sessions.codex import model
from dev_sessions.codex.protocol import ServerRequest


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ({"type": "idle"}, "idle"),
        ({"type": "notLoaded"}, "idle"),
        ({"type": "active", "activeFlags": []}, "working"),
        ({"type": "active", "activeFlags": ["waitingOnApproval"]}, "waiting_for_input"),
        ({"type": "active", "activeFlags": ["waitingOnUserInput"]}, "waiting_for_input"),
        ({"type": "systemError"}, "error"),
    ],
)
def test_thread_states(status: dict[str, object], state: str) -> None:
    assert model.thread_state(status)[0] == state


def test_turn_outcomes() -> None:
    assert model.turn_outcome({"status": "inProgress"}) is None
    assert model.turn_outcome({"status": "completed", "error": None}) == ("completed", None)
    assert model.turn_outcome({"status": "interrupted"}) == ("interrupted", None)
    failed = {"status": "failed", "error": {"message": "unexpected status 503: boom"}}
    assert model.turn_outcome(failed) == ("failed", "unexpected status 503: boom")


def test_turn_carries_our_client_id() -> None:
    turn = {"items": [{"type": "userMessage", "clientId": "c-1", "content": []}, {"type": "agentMessage"}]}
    assert model.turn_carries(turn, "c-1")
    assert not model.turn_carries(turn, "c-2")


def test_agent_messages_in_order_skipping_empty_ones() -> None:
    turns = [
        {"items": [{"type": "userMessage"}, {"type": "agentMessage", "text": "one"}]},
        {"items": [{"type": "agentMessage", "text": ""}, {"type": "agentMessage", "text": "two"}]},
    ]
    assert model.agent_messages(turns) == ["one", "two"]


def test_log_items() -> None:
    turns = [
        {
            "status": "completed",
            "durationMs": 1500,
            "completedAt": 1795242789,
            "items": [
                {
                    "type": "userMessage",
                    "content": [{"type": "text", "text": "run it"}],
                    "startedAtMs": 1795242789000,
                },
                {"type": "commandExecution", "command": "/bin/bash -lc 'ls'", "aggregatedOutput": "a\nb\n"},
                {"type": "agentMessage", "text": "done"},
            ],
        }
    ]
    items = model.log_items(turns)
    assert [(i.role, i.text) for i in items] == [
        ("user", "run it"),
        ("tool", "command(/bin/bash -lc 'ls')"),
        ("result", "a b"),
        ("assistant", "done"),
        ("turn", "turn completed after 1.5 s"),
    ]
    assert items[0].timestamp.startswith("2026-11-21T")


COMMAND = ServerRequest(
    0,
    "item/commandExecution/requestApproval",
    {
        "threadId": "t",
        "command": "/bin/bash -lc 'touch x'",
        "cwd": "/w",
        "availableDecisions": ["accept", "cancel"],
    },
)


def test_command_approval_dialog_and_replies() -> None:
    dialog = model.dialog_for(COMMAND)
    assert dialog.question == "Run this command?"
    assert dialog.context == ("/bin/bash -lc 'touch x'", "in /w")
    assert dialog.options[0].label == "Yes"
    for answer, decision in [
        ("yes", "accept"),
        ("1", "accept"),
        ("2", "acceptForSession"),
        ("No, and carry", "decline"),
    ]:
        option, typed = choose("s", dialog, answer)
        assert typed is None
        assert model.approval_reply(option) == {"decision": decision}
    assert model.approval_reply(choose("s", dialog, "4")[0]) == {"decision": "cancel"}


def test_user_input_dialog_with_other_answer() -> None:
    request = ServerRequest(
        1,
        "item/tool/requestUserInput",
        {
            "threadId": "t",
            "questions": [
                {
                    "id": "q1",
                    "header": "Colour",
                    "question": "Which colour?",
                    "isOther": True,
                    "options": [
                        {"label": "Red", "description": "warm"},
                        {"label": "Blue", "description": "cold"},
                    ],
                },
                {"id": "q2", "header": "Size", "question": "How big?", "options": None},
            ],
        },
    )
    first = model.dialog_for(request)
    assert first.question == "Which colour?"
    assert [o.label for o in first.options] == ["Red", "Blue", model.OTHER_LABEL]
    assert first.context == ("Colour", "question 1 of 2")
    assert choose("s", first, "blue")[0].label == "Blue"
    assert choose("s", first, "teal, really") == (first.options[2], "teal, really")
    second = model.dialog_for(request, answered=1)
    assert second.question == "How big?"
    assert second.text_option is not None  # no options: free text only


def test_unknown_server_request_can_only_be_declined() -> None:
    dialog = model.dialog_for(
        ServerRequest(5, "mcpServer/elicitation/request", {"threadId": "t", "message": "hi"})
    )
    assert dialog.question == "mcpServer/elicitation/request?"
    assert [o.label for o in dialog.options] == ["Decline"]


def test_dialogs_cross_the_bridge_unchanged() -> None:
    from dev_sessions.backend import Dialog

    request = ServerRequest(
        1,
        "item/tool/requestUserInput",
        {
            "questions": [
                {
                    "id": "q",
                    "header": "H",
                    "question": "Q?",
                    "isOther": True,
                    "options": [{"label": "A", "description": "a"}],
                }
            ]
        },
    )
    dialog = model.dialog_for(request)
    again = Dialog.from_json(dialog.to_json())
    assert again == dialog


def test_collaboration_mode_names_a_model_and_the_modes_own_instructions() -> None:
    assert model.collaboration_mode("plan", "gpt-x") == {
        "mode": "plan",
        "settings": {"model": "gpt-x", "developer_instructions": None},
    }
    assert model.collaboration_mode("default", "gpt-x")["mode"] == "default"
    with pytest.raises(ValueError, match="unknown collaboration mode 'pair'"):
        model.collaboration_mode("pair", "gpt-x")
