"""The session library in process, against scripted fake backends: what ``SessionManager`` itself
decides (validation, the store, identities, grouping waits, kills), without an agent or a subprocess
per call."""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from pathlib import Path

import pytest

from dev_sessions.backend import Dialog, Option, Status
from dev_sessions.config import Settings
from dev_sessions.errors import BadAnswer, NoDialog, SessionNotFound, TmuxError, UsageError
from dev_sessions.results import Goal, Inspection, Killed
from dev_sessions.sessions import SessionManager
from tests.fakes.backend import FakeBackend, Turn

QUESTION = Dialog("Allow the edit?", options=(Option(1, "Yes"), Option(2, "No")))


@pytest.fixture
def claude() -> FakeBackend:
    return FakeBackend("claude")


@pytest.fixture
def codex() -> FakeBackend:
    return FakeBackend("codex")


def manager_for(claude: FakeBackend, codex: FakeBackend, **env: str) -> SessionManager:
    settings = Settings.from_env({**os.environ, **env})
    return SessionManager(settings, backends={"claude": claude, "codex": codex})


@pytest.fixture
def manager(claude: FakeBackend, codex: FakeBackend) -> SessionManager:
    return manager_for(claude, codex)


def stored(manager: SessionManager) -> dict[str, dict[str, object]]:
    return {r["championId"]: r for r in json.loads(manager.settings.store_path.read_text())["sessions"]}


# -- create ------------------------------------------------------------------------------------------------


def test_create_records_the_session_before_and_after_the_backend(
    manager: SessionManager, tmp_path: Path
) -> None:
    created = manager.create(path=str(tmp_path), description="fix it")
    record = stored(manager)[created.session.id]
    assert record["path"] == str(tmp_path.resolve())
    assert record["description"] == "fix it"
    assert record["parent"] == "user"
    assert created.started.facts == {"tmux": f"dev-{created.session.id}"}


def test_create_names_the_creator_from_the_environment(claude: FakeBackend, codex: FakeBackend) -> None:
    as_agent = manager_for(claude, codex, DEV_SESSIONS_AGENT="boss").create()
    assert as_agent.session.parent == "boss"
    inside = manager_for(claude, codex, DEV_SESSIONS_ID="fizz-top").create()
    assert inside.session.parent == "fizz-top"
    explicit = manager_for(claude, codex, DEV_SESSIONS_AGENT="boss").create(parent="other")
    assert explicit.session.parent == "other"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ({"cli": "grok"}, "--cli 'grok'"),
        ({"mode": "vm"}, "--mode 'vm'"),
        ({"cli": "codex", "mode": "docker"}, "not available for Codex"),
        ({"approvals": "sometimes"}, "--approvals 'sometimes'"),
        ({"plan": True}, "Plan mode is for Codex"),
        ({"path": "/no/such/dir"}, "no such directory"),
    ],
)
def test_create_refuses_bad_input_before_anything_runs(
    manager: SessionManager, claude: FakeBackend, args: dict[str, object], needle: str
) -> None:
    with pytest.raises(UsageError, match=needle.replace("(", r"\(")):
        manager.create(**args)  # type: ignore[arg-type]
    assert claude.calls == []
    assert not manager.settings.store_path.exists() or stored(manager) == {}


def test_a_create_that_fails_leaves_no_record(manager: SessionManager, claude: FakeBackend) -> None:
    claude.fail_create = TmuxError(args=["new-session"], detail="no space")
    with pytest.raises(TmuxError):
        manager.create()
    assert stored(manager) == {}


def test_a_new_id_avoids_the_store_and_what_the_backend_holds(
    manager: SessionManager, claude: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dev_sessions import ids

    first = manager.create().session.id
    claude.reserved = {"lux-top"}
    seen: list[set[str]] = []
    real = ids.allocate

    def allocate(in_use: Collection[str], rng: object = None) -> str:
        seen.append(set(in_use))
        return real(in_use)

    monkeypatch.setattr(ids, "allocate", allocate)
    second = manager.create().session.id
    assert seen == [{first, "lux-top"}]
    assert second not in (first, "lux-top")


def test_yolo_is_native(manager: SessionManager) -> None:
    assert manager.create(mode="yolo").session.mode == "native"


# -- talking -----------------------------------------------------------------------------------------------


def test_send_then_wait_then_read(manager: SessionManager, claude: FakeBackend) -> None:
    sid = manager.create().session.id
    claude.enqueue("four")
    session = manager.send(sid, "2+2?")
    assert session.last_send == {"offset": 1}
    assert stored(manager)[sid]["lastSend"] == {"offset": 1}
    (result,) = manager.wait([sid], 5)
    assert (result.session_id, result.outcome) == (sid, "completed")
    assert manager.last_messages(sid) == ["four"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [("", "empty"), ("  \n", "empty"), ("x" * (64 * 1024 * 1024 + 1), "over 64 MB")],
)
def test_send_refuses_what_it_cannot_deliver(
    manager: SessionManager, claude: FakeBackend, text: str, needle: str
) -> None:
    sid = manager.create().session.id
    with pytest.raises(UsageError, match=needle):
        manager.send(sid, text)
    assert [c for c in claude.calls if c[0] == "send"] == []


def test_plan_mode_is_recorded_and_cannot_steer(manager: SessionManager, codex: FakeBackend) -> None:
    sid = manager.create(cli="codex").session.id
    manager.send(sid, "plan it", plan=True)
    assert codex.calls[-1] == ("send", sid, "plan it", False, "plan")
    assert manager.get(sid).collaboration == "plan"
    manager.send(sid, "now do it", plan=False)
    assert manager.get(sid).collaboration == "default"
    with pytest.raises(UsageError, match="--steer"):
        manager.send(sid, "more", steer=True, plan=True)


def test_wait_groups_by_cli_and_keeps_the_order_asked(
    manager: SessionManager, claude: FakeBackend, codex: FakeBackend
) -> None:
    a = manager.create().session.id
    b = manager.create(cli="codex").session.id
    c = manager.create().session.id
    claude.enqueue("one", Turn(outcome="failed", error="overloaded"))
    codex.enqueue("two")
    manager.send(a, "go")
    manager.send(b, "go")
    manager.send(c, "go")
    results = manager.wait([c, b, a, c], 1)
    assert [(r.session_id, r.outcome) for r in results] == [(c, "failed"), (b, "completed"), (a, "completed")]
    assert results[0].error == "overloaded"
    assert {call[1] for call in claude.calls if call[0] == "wait"} == {(c, a)}


def test_wait_refuses_nothing_and_negative_time(manager: SessionManager) -> None:
    with pytest.raises(UsageError, match="at least one"):
        manager.wait([])
    sid = manager.create().session.id
    with pytest.raises(UsageError, match="negative"):
        manager.wait([sid], -1)


def test_ask_answers_only_a_turn_that_ended(manager: SessionManager, claude: FakeBackend) -> None:
    sid = manager.create().session.id
    claude.enqueue("done", Turn("half", outcome="waiting_for_input", dialog=QUESTION))
    assert manager.ask(sid, "do it")[1] == ["done"]
    result, messages = manager.ask(sid, "and this")
    assert (result.outcome, result.dialog, messages) == ("waiting_for_input", QUESTION, [])


def test_respond_answers_the_dialog_or_says_why_not(manager: SessionManager, claude: FakeBackend) -> None:
    sid = manager.create().session.id
    with pytest.raises(NoDialog):
        manager.respond(sid, "1")
    claude.enqueue(Turn(outcome="waiting_for_input", dialog=QUESTION))
    manager.send(sid, "edit")
    with pytest.raises(BadAnswer) as caught:
        manager.respond(sid, "maybe")
    assert caught.value.exit_code == 2
    assert manager.respond(sid, "yes") == "1. Yes"


def test_interrupt_and_status(manager: SessionManager, claude: FakeBackend) -> None:
    sid = manager.create().session.id
    assert manager.interrupt(sid) is False
    claude.enqueue(Turn(outcome="running"))
    manager.send(sid, "long job")
    assert manager.status(sid) == Status("working", source="hooks")
    assert manager.wait([sid], 0.5)[0].outcome == "timeout"
    assert manager.interrupt(sid) is True
    assert manager.wait([sid])[0].outcome == "interrupted"


def test_last_messages_needs_a_count(manager: SessionManager) -> None:
    sid = manager.create().session.id
    with pytest.raises(UsageError, match="-n"):
        manager.last_messages(sid, 0)


# -- goals, logs, inspect ------------------------------------------------------------------------------


def test_goal_is_checked_and_typed(manager: SessionManager) -> None:
    sid = manager.create(cli="codex").session.id
    assert manager.goal(sid) is None
    with pytest.raises(UsageError, match="objective is empty"):
        manager.goal(sid, "set", "  ")
    with pytest.raises(UsageError, match="--budget"):
        manager.goal(sid, "set", "ship it", 0)
    with pytest.raises(UsageError, match="unknown action"):
        manager.goal(sid, "explode")
    goal = manager.goal(sid, "set", "ship it", 500)
    assert goal == Goal("ship it", "active", 500, 0, 0, goal.record if goal else {})
    paused = manager.goal(sid, "pause")
    assert paused is not None and paused.status == "paused"


def test_logs_screen_and_inspect(manager: SessionManager, claude: FakeBackend) -> None:
    sid = manager.create().session.id
    claude.enqueue("hi there")
    manager.send(sid, "hello")
    assert [(i.role, i.text) for i in manager.logs(sid)] == [("user", "hello"), ("assistant", "hi there")]
    assert manager.screen(sid) == "> hello\n"
    found = manager.inspect(sid)
    assert isinstance(found, Inspection)
    assert found.session.id == sid and found.status.state == "idle"
    usage = found.facts.pop("usage")
    assert found.facts == {"tmux": {"session": f"dev-{sid}", "pane": "%1"}}
    assert isinstance(usage, dict) and (usage["input"], usage["output"], usage["turns"]) == (5, 8, 1)


# -- lookups, lists, kills -----------------------------------------------------------------------------------


@pytest.mark.parametrize("wanted", ["nope-none", "NOT AN ID", "../etc", ""])
def test_unknown_ids_are_not_found(manager: SessionManager, wanted: str) -> None:
    with pytest.raises(SessionNotFound) as caught:
        manager.status(wanted)
    assert isinstance(caught.value, LookupError)


def test_list_shows_a_backend_failure_as_starting(
    manager: SessionManager, claude: FakeBackend, codex: FakeBackend
) -> None:
    a = manager.create().session.id
    b = manager.create(cli="codex").session.id
    claude.failing_status = "server exited"
    rows = {s.id: st for s, st in manager.list_sessions()}
    assert rows[a].state == "starting" and "server exited" in rows[a].detail
    assert rows[b].state == "idle"


def test_list_and_kill_by_parent(claude: FakeBackend, codex: FakeBackend) -> None:
    boss = manager_for(claude, codex, DEV_SESSIONS_AGENT="boss")
    mine = boss.create().session.id
    theirs = manager_for(claude, codex).create().session.id
    assert [s.id for s, _ in boss.list_sessions(parent="boss")] == [mine]
    assert [k.id for k in boss.kill_all(parent="boss")] == [mine]
    assert [s.id for s, _ in boss.list_sessions()] == [theirs]


def test_the_last_kill_of_a_cli_retires_its_backend(
    manager: SessionManager, claude: FakeBackend, codex: FakeBackend
) -> None:
    a = manager.create().session.id
    b = manager.create().session.id
    c = manager.create(cli="codex").session.id
    assert [k.id for k in manager.kill([a, a])] == [a]
    assert claude.retired == 0
    assert manager.kill([b]) == [Killed(b)]
    assert (claude.retired, codex.retired) == (1, 0)
    assert stored(manager).keys() == {c}
    with pytest.raises(SessionNotFound):
        manager.kill([a])


def test_kill_older_than_leaves_the_young(manager: SessionManager) -> None:
    old = manager.create().session.id
    young = manager.create().session.id
    with manager.store.transaction() as doc:
        doc.put(doc.get(old).evolve(created_at="2020-01-01T00:00:00.000Z"))
    assert manager.kill_older_than(3600) == [Killed(old)]
    assert [s.id for s, _ in manager.list_sessions()] == [young]
