"""End to end: the real Codex app-server, offline against the fake Responses server.

The fake answers every prompt with the prompt itself, so `last-message` proves byte-exact delivery.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from dev_sessions.selftest.fakes.openai_responses import GOAL_MARKER, FakeResponses, last_user_text
from tests.conftest import DevSessions, eventually
from tests.e2e.test_claude import NASTY, one_mb_text
from tests.fakes.agents import AgentSet

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("warm_commands")]


def create(cli: DevSessions, *args: str) -> str:
    return cli.ok("create", "--cli", "codex", "-q", *args).strip()


def last(cli: DevSessions, sid: str) -> str:
    messages = json.loads(cli.ok("last-message", sid, "--json"))
    assert len(messages) == 1
    return str(messages[0])


def daemon() -> dict[str, Any] | None:
    path = Path(os.environ["DEV_SESSIONS_HOME"]) / "codex" / "app-server.json"
    return json.loads(path.read_text()) if path.exists() else None


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[1][0] != "Z"


def test_round_trip_of_nasty_text(cli: DevSessions, codex: FakeResponses) -> None:
    sid = create(cli)
    assert cli.ok("send", sid, NASTY).strip() == f"{sid}: sent"
    assert cli.ok("wait", sid, "--timeout", "60").startswith(f"{sid}: completed")
    assert last(cli, sid) == NASTY
    assert codex.prompts()[-1] == NASTY


def test_round_trip_of_one_megabyte(cli: DevSessions, codex: FakeResponses, tmp_path: Path) -> None:
    text = one_mb_text()
    (tmp_path / "big.txt").write_text(text)
    sid = create(cli)
    assert cli.ok("ask", sid, "--file", str(tmp_path / "big.txt"), "--timeout", "120") == text + "\n"


def test_the_session_keeps_one_thread_and_its_history(cli: DevSessions, codex: FakeResponses) -> None:
    sid = create(cli)
    thread = json.loads(cli.ok("inspect", sid))["session"]["internalId"]
    assert cli.ok("ask", sid, "remember the word apple", "--timeout", "60") == "remember the word apple\n"
    assert cli.ok("ask", sid, "which word?", "--timeout", "60") == "which word?\n"
    assert json.loads(cli.ok("inspect", sid))["session"]["internalId"] == thread
    history = json.dumps(codex.requests[-1]["body"]["input"])
    assert "remember the word apple" in history
    assert json.loads(cli.ok("last-message", sid, "-n", "2", "--json")) == [
        "remember the word apple",
        "which word?",
    ]


def test_slow_turn_times_out_with_124_then_completes(cli: DevSessions, codex: FakeResponses) -> None:
    sid = create(cli)
    cli.ok("send", sid, "slow <<slow:3>>")
    eventually(lambda: cli.ok("status", sid).strip() == "working")
    result = cli("wait", sid, "--timeout", "1")
    assert result.returncode == 124
    assert "still running after 1 s" in result.stderr
    cli.ok("wait", sid, "--timeout", "60")
    assert last(cli, sid) == "slow <<slow:3>>"
    assert cli.ok("status", sid).strip() == "idle"


def bridge_said(needle: str) -> int:
    """How many times the Codex bridge's log has said ``needle`` (a wait that starts to block says
    ``<id>: waiting for the turn to end``)."""
    log = Path(os.environ["DEV_SESSIONS_HOME"]) / "codex" / "bridge.log"
    return log.read_text().count(needle) if log.exists() else 0


def test_interrupt_ends_a_pending_wait(cli: DevSessions, codex: FakeResponses) -> None:
    sid = create(cli)
    cli.ok("send", sid, "long one <<hold>>")  # runs until interrupted: the model never answers
    eventually(lambda: codex.holding() == 1)
    assert cli.ok("status", sid).strip() == "working"
    waiter = cli.start("wait", sid, "--timeout", "60")
    eventually(lambda: bridge_said(f"{sid}: waiting for the turn to end") == 1)  # the wait blocks
    assert cli.ok("interrupt", sid).strip() == f"{sid}: interrupted"
    result = waiter.finish()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{sid}: interrupted"
    assert cli.ok("interrupt", sid).strip() == f"{sid}: nothing to interrupt (idle)"
    assert cli.ok("ask", sid, "after the interrupt", "--timeout", "60") == "after the interrupt\n"


def test_failed_turn_is_reported_with_its_error(cli: DevSessions, codex: FakeResponses) -> None:
    sid = create(cli)
    cli.ok("send", sid, "fail please <<error:503>>")
    result = cli("wait", sid, "--timeout", "60")
    assert result.returncode == 1
    assert "turn failed: unexpected status 503" in result.stderr
    assert "fake server error on request" in result.stderr
    assert json.loads(cli("wait", sid, "--json").stdout)[0]["outcome"] == "failed"


def test_prompt_sent_during_a_turn_is_queued_as_the_next_turn(cli: DevSessions, codex: FakeResponses) -> None:
    sid = create(cli)
    cli.ok("send", sid, "first <<hold>>")
    eventually(lambda: codex.holding() == 1)
    assert (
        cli.ok("send", sid, "second, queued").strip()
        == f"{sid}: queued (a turn is running; this prompt goes next)"
    )
    codex.release()
    cli.ok("wait", sid, "--timeout", "60")
    assert json.loads(cli.ok("last-message", sid, "-n", "2", "--json")) == [
        "first <<hold>>",
        "second, queued",
    ]


def test_steer_adds_to_the_running_turn(cli: DevSessions, codex: FakeResponses) -> None:
    sid = create(cli)
    cli.ok("send", sid, "steer me <<hold>>")  # never answered: Codex drops it for the steered request
    eventually(lambda: codex.holding() == 1)
    assert cli.ok("send", "--steer", sid, "go this way").strip() == f"{sid}: steered into the running turn"
    cli.ok("wait", sid, "--timeout", "60")
    assert last(cli, sid) == "go this way"
    result = cli("send", "--steer", sid, "nothing runs now")
    assert result.returncode == 2
    assert "no running turn to steer" in result.stderr


def test_approval_is_waiting_for_input_and_answered_with_respond(
    cli: DevSessions, codex: FakeResponses, workdir: Path
) -> None:
    made = workdir / "made.txt"
    sid = create(cli, "--approvals", "untrusted")
    cli.ok("send", sid, f"please <<bash:touch {made} && echo made>>")
    result = cli("wait", sid, "--timeout", "60")
    assert result.returncode == 1
    assert "Run this command?" in result.stderr
    assert f"touch {made}" in result.stderr
    status = json.loads(cli.ok("status", sid, "--json"))
    assert status["status"] == "waiting_for_input"
    assert status["dialog"]["options"][0]["label"] == "Yes"
    refused = cli("send", sid, "meanwhile")
    assert refused.returncode == 1
    assert "waiting for an answer to 'Run this command?'" in refused.stderr
    assert not made.exists()
    assert cli.ok("respond", sid, "yes").strip() == f"{sid}: answered 1. Yes"
    cli.ok("wait", sid, "--timeout", "60")
    assert made.exists()
    assert "made" in last(cli, sid)


def test_declined_command_lets_the_turn_carry_on(
    cli: DevSessions, codex: FakeResponses, workdir: Path
) -> None:
    made = workdir / "never.txt"
    sid = create(cli, "--approvals", "untrusted")
    cli.ok("send", sid, f"please <<bash:touch {made}>>")
    eventually(lambda: cli.ok("status", sid).startswith("waiting_for_input"))
    cli.ok("respond", sid, "3")
    cli.ok("wait", sid, "--timeout", "60")
    assert not made.exists()
    assert "rejected" in last(cli, sid)


def test_app_server_killed_mid_session_is_restarted_with_the_history(
    cli: DevSessions, codex: FakeResponses
) -> None:
    sid = create(cli)
    cli.ok("ask", sid, "remember the word pear", "--timeout", "60")
    before = daemon()
    assert before is not None
    cli.ok("send", sid, "cut short <<slow:10>>")
    eventually(lambda: cli.ok("status", sid).strip() == "working")
    os.kill(before["pid"], signal.SIGKILL)
    result = cli("wait", sid, "--timeout", "60")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{sid}: interrupted")
    assert cli.ok("ask", sid, "still there?", "--timeout", "60") == "still there?\n"
    after = daemon()
    assert after is not None and after["pid"] != before["pid"]
    assert "remember the word pear" in json.dumps(codex.requests[-1]["body"]["input"])


def test_parallel_creates_share_one_app_server_and_the_last_kill_stops_it(
    cli: DevSessions, codex: FakeResponses
) -> None:
    with ThreadPoolExecutor(3) as pool:
        ids = list(pool.map(lambda _: create(cli), range(3)))
    assert len(set(ids)) == 3
    pids = {json.loads(cli.ok("inspect", sid))["appServer"]["pid"] for sid in ids}
    assert len(pids) == 1
    (pid,) = pids
    assert alive(pid)
    cli.ok("kill", ids[0], ids[1])
    assert alive(pid), "the app-server must live while a Codex session does"
    cli.ok("kill", ids[2])
    eventually(lambda: not alive(pid), timeout=10)
    assert daemon() is None


def test_looking_never_starts_the_app_server(cli: DevSessions, codex: FakeResponses) -> None:
    sid = create(cli)
    cli.ok("ask", sid, "hello", "--timeout", "60")
    from tests.conftest import stop_codex

    stop_codex(Path(os.environ["DEV_SESSIONS_HOME"]))
    assert daemon() is None
    assert cli.ok("status", sid).splitlines()[0] == "idle"
    assert json.loads(cli.ok("list", "--json"))[0]["live"] == "idle"
    assert daemon() is None
    # The next command that needs it brings the thread back, history included.
    assert cli.ok("ask", sid, "back again", "--timeout", "60") == "back again\n"
    assert json.loads(cli.ok("last-message", sid, "-n", "2", "--json")) == ["hello", "back again"]


def test_goal_runs_until_met(cli: DevSessions, codex: FakeResponses) -> None:
    sid = create(cli)
    assert cli.ok("goal", sid).strip() == f"{sid}: no goal"
    # A budget the turns stay under: they cost ~6,000 tokens (as the current Codex counts them), and a
    # goal over its budget ends budgetLimited, which `wait --goal` reports as interrupted (Codex 0.169
    # in a run on a loaded machine, with a budget of 5,000).
    out = cli.ok("goal", sid, "Ship the feature", "--budget", "1000000")
    assert "Ship the feature" in out
    result = cli.ok("wait", sid, "--goal", "--timeout", "60")
    assert result.startswith(f"{sid}: completed")
    goal = json.loads(cli.ok("goal", sid, "--json"))
    assert goal["status"] == "complete"
    assert goal["objective"] == "Ship the feature"
    assert goal["tokenBudget"] == 1_000_000
    assert cli.ok("goal", sid, "--clear").strip() == f"{sid}: goal cleared"
    assert cli.ok("goal", sid).strip() == f"{sid}: no goal"


def goal_turns(codex: FakeResponses) -> int:
    """How many turns Codex started by itself to work on the thread goal."""
    return sum(1 for r in codex.recorded() if last_user_text(r["body"]).startswith(GOAL_MARKER))


def test_goal_pause_and_resume(cli: DevSessions, codex: FakeResponses) -> None:
    sid = create(cli)
    cli.ok("send", sid, "first this <<hold>>")  # a turn runs while the goal is set and paused
    eventually(lambda: codex.holding() == 1)
    assert json.loads(cli.ok("goal", sid, "Ship it", "--json"))["status"] == "active"
    assert json.loads(cli.ok("goal", sid, "--pause", "--json"))["status"] == "paused"
    codex.release()
    assert cli.ok("wait", sid, "--timeout", "60").startswith(f"{sid}: completed")
    # Paused, Codex does not take the goal up by itself, and wait --goal has nothing to wait for.
    assert cli.ok("wait", sid, "--goal", "--timeout", "10").strip() == f"{sid}: interrupted"
    assert json.loads(cli.ok("goal", sid, "--json"))["status"] == "paused"
    assert cli.ok("status", sid).strip() == "idle"
    assert goal_turns(codex) == 0
    assert json.loads(cli.ok("goal", sid, "--resume", "--json"))["status"] == "active"
    assert cli.ok("wait", sid, "--goal", "--timeout", "60").startswith(f"{sid}: completed")
    assert json.loads(cli.ok("goal", sid, "--json"))["status"] == "complete"
    assert goal_turns(codex) >= 1, "resumed, Codex worked on the goal by itself"


def test_create_with_a_model(cli: DevSessions, codex: FakeResponses) -> None:
    sid = create(cli, "--model", "gpt-test-model")
    assert json.loads(cli.ok("inspect", sid))["session"]["model"] == "gpt-test-model"
    cli.ok("ask", sid, "which model?", "--timeout", "60")
    assert codex.recorded()[-1]["body"]["model"] == "gpt-test-model"
    other = create(cli)  # without --model: the one of Codex's own config
    cli.ok("ask", other, "and you?", "--timeout", "60")
    assert codex.recorded()[-1]["body"]["model"] == "fake-model"


SANDBOXES = {"never": "danger-full-access", "on-request": "workspace-write", "untrusted": "workspace-write"}


def sandbox_told(codex: FakeResponses, prompt: str) -> str:
    """The sandbox mode Codex tells the model of, in the request that carried ``prompt``."""
    body = next(r["body"] for r in reversed(codex.recorded()) if last_user_text(r["body"]) == prompt)
    found = re.search(r"`sandbox_mode` is `([a-z-]+)`", json.dumps(body["input"]))
    assert found, "Codex no longer tells the model its sandbox mode this way"
    return found.group(1)


def test_each_approvals_value_sets_its_sandbox(cli: DevSessions, codex: FakeResponses) -> None:
    ids = {approvals: create(cli, "--approvals", approvals) for approvals in SANDBOXES}
    for approvals, sid in ids.items():
        cli.ok("ask", sid, f"sandbox for {approvals}?", "--timeout", "60")
        assert sandbox_told(codex, f"sandbox for {approvals}?") == SANDBOXES[approvals], approvals
    # The app-server restores a thread's approval policy after a restart, but not its sandbox: the
    # bridge gives it again.
    before = daemon()
    assert before is not None
    os.kill(before["pid"], signal.SIGKILL)
    eventually(lambda: not alive(before["pid"]))
    cli.ok("ask", ids["on-request"], "after a restart?", "--timeout", "60")
    assert sandbox_told(codex, "after a restart?") == "workspace-write"


def rollouts(kind: str, thread: str) -> list[Path]:
    """The thread's rollout files under $CODEX_HOME/sessions (live) or archived_sessions."""
    return list((Path(os.environ["CODEX_HOME"]) / kind).rglob(f"rollout-*-{thread}.jsonl"))


def test_kill_archives_the_thread(cli: DevSessions, codex: FakeResponses) -> None:
    sid, other = create(cli), create(cli)
    thread = json.loads(cli.ok("inspect", sid))["session"]["internalId"]
    cli.ok("ask", sid, "keep this", "--timeout", "60")
    assert len(rollouts("sessions", thread)) == 1 and rollouts("archived_sessions", thread) == []
    assert cli.ok("kill", sid).strip() == f"{sid}: killed"
    assert rollouts("sessions", thread) == []
    assert len(rollouts("archived_sessions", thread)) == 1
    assert daemon() is not None, "another Codex session lives: the app-server stays"
    assert cli.ok("ask", other, "still here", "--timeout", "60") == "still here\n"


def test_the_bridge_leaves_when_idle(
    cli: DevSessions, codex: FakeResponses, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEV_SESSIONS_BRIDGE_LINGER", "1")
    sid = create(cli)
    cli.ok("ask", sid, "remember me", "--timeout", "60")
    facts = json.loads(cli.ok("inspect", sid))
    bridge, server = facts["bridge"]["pid"], facts["appServer"]["pid"]
    socket = Path(facts["bridge"]["socket"])
    eventually(lambda: not alive(bridge), timeout=20)  # it looks every 5 s
    assert not socket.exists()
    assert alive(server), "threads and turns never depend on the bridge"
    assert cli.ok("ask", sid, "anyone there?", "--timeout", "60") == "anyone there?\n"
    again = json.loads(cli.ok("inspect", sid))
    assert again["bridge"]["pid"] != bridge and again["appServer"]["pid"] == server
    assert json.loads(cli.ok("last-message", sid, "-n", "2", "--json")) == ["remember me", "anyone there?"]


def test_a_session_that_never_ran_a_turn_outlives_its_bridge(
    cli: DevSessions, codex: FakeResponses, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEV_SESSIONS_BRIDGE_LINGER", "1")
    sid = create(cli)
    bridge = json.loads(cli.ok("inspect", sid))["bridge"]["pid"]
    eventually(lambda: not alive(bridge), timeout=20)
    assert cli.ok("ask", sid, "first words", "--timeout", "60") == "first words\n"


def test_logs_show_the_conversation(cli: DevSessions, codex: FakeResponses) -> None:
    sid = create(cli)
    cli.ok("ask", sid, "hello log", "--timeout", "60")
    items = json.loads(cli.ok("logs", sid, "--json"))
    assert [(i["role"], i["text"]) for i in items if i["role"] in ("user", "assistant")] == [
        ("user", "hello log"),
        ("assistant", "hello log"),
    ]
    assert items[-1]["role"] == "turn"
    result = cli("logs", sid, "--pane")
    assert result.returncode == 2
    assert "no terminal" in result.stderr


def test_twenty_concurrent_waits_on_one_session(cli: DevSessions, codex: FakeResponses) -> None:
    sid = create(cli)
    cli.ok("send", sid, "many waiters <<hold>>")  # the turn runs until the test lets it end
    eventually(lambda: codex.holding() == 1)
    with ThreadPoolExecutor(20) as pool:
        waits = [pool.submit(cli, "wait", sid, "--timeout", "120") for _ in range(20)]
        eventually(lambda: bridge_said(f"{sid}: waiting for the turn to end") == 20, timeout=60)
        assert cli.ok("status", sid).strip() == "working", "all twenty wait on the running turn"
        codex.release()
        results = [w.result() for w in waits]
    assert [r.returncode for r in results] == [0] * 20, [r.stderr for r in results if r.returncode]
    assert all(r.stdout.startswith(f"{sid}: completed") for r in results)
    assert last(cli, sid) == "many waiters <<hold>>"


def test_the_pinned_codex_is_the_one_tested(codex: FakeResponses, agents: AgentSet) -> None:
    out = subprocess.run(
        [os.environ["DEV_SESSIONS_CODEX_BIN"], "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().endswith(agents.codex_version)


# -- Plan mode and its questions (request_user_input) ----------------------------------------------


def answers(reply: str) -> dict[str, list[str]]:
    """What Codex handed the model as the answers to its questions (the fake echoes the tool output
    as ``ANSWER: {"answers": {ID: {"answers": [...]}}}``; the ids' order varies)."""
    assert reply.startswith("ANSWER: "), reply
    return {qid: a["answers"] for qid, a in json.loads(reply.removeprefix("ANSWER: "))["answers"].items()}


def test_question_in_plan_mode_is_waiting_for_input_and_answered_with_respond(
    cli: DevSessions, codex: FakeResponses
) -> None:
    sid = create(cli, "--plan")
    assert json.loads(cli.ok("inspect", sid))["session"]["collaborationMode"] == "plan"
    cli.ok("send", sid, "choose <<ask>>")
    result = cli("wait", sid, "--timeout", "60")
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"dev-sessions: {sid}: waiting for input" in result.stderr
    assert "Which colour?" in result.stderr
    assert "1. Red - The colour red" in result.stderr
    assert "2. Blue - The colour blue" in result.stderr
    assert f"answer with: dev-sessions respond {sid} ANSWER" in result.stderr

    shown = cli("status", sid)
    assert shown.returncode == 0
    assert shown.stdout == "waiting_for_input\n"  # one word on stdout, the question on stderr
    assert shown.stderr.splitlines() == [
        "  Colour",
        "  Which colour?",
        "    1. Red - The colour red",
        "    2. Blue - The colour blue",
        "    3. Other (type an answer)",
        f"  answer with: dev-sessions respond {sid} ANSWER",
    ]
    status = json.loads(cli.ok("status", sid, "--json"))
    assert status["status"] == "waiting_for_input"
    assert status["detail"] == "waitingOnUserInput"
    assert status["source"] == "app-server"
    assert status["dialog"] == {
        "question": "Which colour?",
        "context": ["Colour"],
        "options": [
            {"number": 1, "label": "Red", "description": "The colour red", "keys": []},
            {"number": 2, "label": "Blue", "description": "The colour blue", "keys": []},
            {"number": 3, "label": "Other (type an answer)", "description": "", "keys": []},
        ],
        "takesText": True,
        "textOption": 3,
    }

    assert cli.ok("respond", sid, "2").strip() == f"{sid}: answered 2. Blue"
    assert cli.ok("wait", sid, "--timeout", "60").startswith(f"{sid}: completed")
    assert answers(last(cli, sid)) == {"colour": ["Blue"]}
    assert cli.ok("status", sid).strip() == "idle"


def test_a_question_is_answered_by_label_or_free_text_and_one_at_a_time(
    cli: DevSessions, codex: FakeResponses
) -> None:
    sid = create(cli, "--plan")
    cli.ok("send", sid, "three things <<ask:3>>")
    eventually(lambda: cli.ok("status", sid).strip() == "waiting_for_input")
    first = json.loads(cli.ok("status", sid, "--json"))["dialog"]
    assert (first["question"], first["context"]) == ("Which colour?", ["Colour", "question 1 of 3"])
    one_line = cli("send", sid, "typing into a question")
    assert one_line.returncode == 1
    assert "waiting for an answer to 'Which colour?'" in one_line.stderr
    assert (
        cli.ok("respond", sid, "red").strip() == f"{sid}: answered 1. Red (more questions follow: see status)"
    )
    result = cli("wait", sid, "--timeout", "60")
    assert result.returncode == 1
    assert "question 2 of 3" in result.stderr
    assert "Which size?" in result.stderr
    assert cli.ok("respond", sid, "Lar").strip().startswith(f"{sid}: answered 2. Large")  # a unique start
    assert json.loads(cli.ok("status", sid, "--json"))["dialog"]["question"] == "Which shape?"
    assert cli.ok("respond", sid, "a sort of rhombus").strip() == f"{sid}: answered 3. a sort of rhombus"
    assert cli.ok("wait", sid, "--timeout", "60").startswith(f"{sid}: completed")
    assert answers(last(cli, sid)) == {"colour": ["Red"], "size": ["Large"], "shape": ["a sort of rhombus"]}
    assert codex.prompts() == ["three things <<ask:3>>"], "nothing typed into the question became a prompt"


REFUSED = "ANSWER: request_user_input is unavailable in Default mode"


def mode_told(codex: FakeResponses, prompt: str) -> str | None:
    """The collaboration mode Codex last told the model of (a developer message), in the request that
    carried ``prompt``: "plan", "default", or None when it never said."""
    body = next(r["body"] for r in reversed(codex.recorded()) if last_user_text(r["body"]) == prompt)
    told = re.findall(r"<collaboration_mode># (Plan Mode|Collaboration Mode: Default)", json.dumps(body))
    return None if not told else ("plan" if told[-1] == "Plan Mode" else "default")


def test_send_switches_plan_mode_on_and_off(cli: DevSessions, codex: FakeResponses) -> None:
    sid = create(cli)
    assert "collaborationMode" not in json.loads(cli.ok("inspect", sid))["session"]
    # Default mode: Codex offers the model the tool but answers the call itself; nobody is asked.
    assert cli.ok("ask", sid, "choose <<ask>>", "--timeout", "60") == REFUSED + "\n"
    assert mode_told(codex, "choose <<ask>>") is None

    assert cli.ok("send", sid, "--plan", "plan it <<ask>>").strip() == f"{sid}: sent"
    assert json.loads(cli.ok("inspect", sid))["session"]["collaborationMode"] == "plan"
    result = cli("wait", sid, "--timeout", "60")
    assert result.returncode == 1 and "Which colour?" in result.stderr
    assert mode_told(codex, "plan it <<ask>>") == "plan"
    cli.ok("respond", sid, "Red")
    cli.ok("wait", sid, "--timeout", "60")
    assert answers(last(cli, sid)) == {"colour": ["Red"]}

    cli.ok("send", sid, "still planning <<ask>>")  # the mode stays until switched
    eventually(lambda: cli.ok("status", sid).strip() == "waiting_for_input")
    cli.ok("respond", sid, "1")
    cli.ok("wait", sid, "--timeout", "60")
    assert answers(last(cli, sid)) == {"colour": ["Red"]}

    cli.ok("send", sid, "--no-plan", "build it <<ask>>")
    assert cli.ok("wait", sid, "--timeout", "60").startswith(f"{sid}: completed")
    assert last(cli, sid) == REFUSED
    assert mode_told(codex, "build it <<ask>>") == "default"
    assert json.loads(cli.ok("inspect", sid))["session"]["collaborationMode"] == "default"


def test_interrupt_drops_an_open_question(cli: DevSessions, codex: FakeResponses) -> None:
    sid = create(cli, "--plan")
    cli.ok("send", sid, "choose <<ask>>")
    eventually(lambda: cli.ok("status", sid).strip() == "waiting_for_input")
    assert cli.ok("interrupt", sid).strip() == f"{sid}: interrupted"
    assert cli.ok("wait", sid, "--timeout", "60").strip() == f"{sid}: interrupted"
    assert cli.ok("status", sid).strip() == "idle"
    result = cli("respond", sid, "Red")
    assert result.returncode == 1
    assert f"{sid}: nothing to answer (status idle)" in result.stderr
    assert cli.ok("ask", sid, "plans go on", "--timeout", "60") == "plans go on\n"


def test_an_open_question_outlives_its_bridge(cli: DevSessions, codex: FakeResponses) -> None:
    sid = create(cli, "--plan")
    cli.ok("send", sid, "choose <<ask>>")
    eventually(lambda: cli.ok("status", sid).strip() == "waiting_for_input")
    bridge = json.loads(cli.ok("inspect", sid))["bridge"]["pid"]
    os.kill(bridge, signal.SIGKILL)
    eventually(lambda: not alive(bridge))
    # A new bridge resumes the thread, and the app-server asks it the open question again.
    assert json.loads(cli.ok("status", sid, "--json"))["dialog"]["question"] == "Which colour?"
    assert json.loads(cli.ok("inspect", sid))["bridge"]["pid"] != bridge
    assert cli.ok("respond", sid, "blue").strip() == f"{sid}: answered 2. Blue"
    assert cli.ok("wait", sid, "--timeout", "60").startswith(f"{sid}: completed")
    assert answers(last(cli, sid)) == {"colour": ["Blue"]}


def test_plan_mode_outlives_an_app_server_restart(cli: DevSessions, codex: FakeResponses) -> None:
    sid = create(cli, "--plan")
    assert cli.ok("ask", sid, "first, a plan", "--timeout", "60") == "first, a plan\n"
    before = daemon()
    assert before is not None
    os.kill(before["pid"], signal.SIGKILL)
    eventually(lambda: not alive(before["pid"]))
    cli.ok("send", sid, "choose <<ask>>")
    result = cli("wait", sid, "--timeout", "60")
    assert result.returncode == 1 and "Which colour?" in result.stderr
    after = daemon()
    assert after is not None and after["pid"] != before["pid"]
    cli.ok("respond", sid, "red")
    cli.ok("wait", sid, "--timeout", "60")
    assert answers(last(cli, sid)) == {"colour": ["Red"]}


def test_plan_mode_is_told_not_enforced(cli: DevSessions, codex: FakeResponses, workdir: Path) -> None:
    made = workdir / "made.txt"
    sid = create(cli, "--plan")
    cli.ok("send", sid, f"<<bash:touch {made} && echo made>>")
    assert cli.ok("wait", sid, "--timeout", "60").startswith(f"{sid}: completed")
    assert mode_told(codex, f"<<bash:touch {made} && echo made>>") == "plan"
    assert made.exists(), "the command ran: Plan mode is instructions to the model, not a sandbox"
