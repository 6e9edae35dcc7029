"""End to end: the real Claude Code in tmux, offline against the fake Anthropic server.

The fake answers every prompt with the prompt itself, so `last-message` proves byte-exact delivery.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from libtmux.server import Server

from dev_sessions.selftest.fakes.anthropic import FakeAnthropic
from dev_sessions.selftest.offline import prepare_claude_home
from dev_sessions.tmux import Tmux
from tests.conftest import DevSessions, eventually
from tests.fakes.agents import AgentSet

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("warm_commands")]

NASTY = (
    "Quotes \"double\" and 'single', $HOME and ${PATH} and $(date), `backticks`, \\backslash\\,\n"
    "tmux key names: C-c C-d Enter Escape M-x BSpace, and ; | & > < * ? ~ #\n"
    "ünïcödé ✓ 日本語 🚀 — “smart quotes”\n"
    "\n"
    "    indented line after a blank one"
)


def one_mb_text() -> str:
    lines = []
    size = 0
    n = 0
    while size < 1024 * 1024:
        line = f"line {n}: $HOME `x` \"q\" 'q' ünï C-c Enter {'x' * (n % 70)}"
        lines.append(line)
        size += len(line.encode()) + 1
        n += 1
    return "\n".join(lines)


def create(cli: DevSessions, *args: str) -> str:
    return cli.ok("create", "-q", *args).strip()


def last(cli: DevSessions, sid: str) -> str:
    messages = json.loads(cli.ok("last-message", sid, "--json"))
    assert len(messages) == 1
    return str(messages[0])


def test_round_trip_of_nasty_text(cli: DevSessions, claude: FakeAnthropic) -> None:
    sid = create(cli)
    assert cli.ok("send", sid, NASTY).strip() == f"{sid}: sent"
    assert cli.ok("wait", sid, "--timeout", "60").startswith(f"{sid}: completed")
    assert last(cli, sid) == NASTY
    assert claude.prompts()[-1] == NASTY


# Every C0 control character but the line breaks and the tab, and DEL: each must arrive as its
# Unicode control picture (U+2400 + code, U+2421 for DEL), so that a message can never type keys.
CONTROLS = "".join(chr(c) for c in range(0x20) if chr(c) not in "\t\n\r") + "\x7f"
PICTURES = {ord(c): 0x2400 + ord(c) for c in CONTROLS if c != "\x7f"} | {0x7F: 0x2421}


def test_what_send_delivers_as_it_is_and_what_it_changes(cli: DevSessions, claude: FakeAnthropic) -> None:
    sent = (
        "a tab\there, a lone\rcarriage return, a crlf\r\nline, ESC [31m: \x1b[31mred\x1b[0m,\n"
        f"controls [{CONTROLS}] and unicode ✓ 日本語 🚀 — untouched"
    )
    sid = create(cli)
    cli.ok("send", sid, "--file", "-", stdin=sent)  # stdin: a NUL cannot be an argument
    cli.ok("wait", sid, "--timeout", "60")
    # What the README states: exact (a tab too), except CR and CRLF arrive as line breaks, and other
    # control characters as their control pictures (␛ for ESC).
    changed = sent.replace("\r\n", "\n").replace("\r", "\n").translate(PICTURES)
    assert "␛[31mred␛[0m" in changed and "\x1b" not in changed and "\t" in changed
    for arrived in (claude.prompts()[-1], last(cli, sid)):
        assert arrived == changed


def test_round_trip_of_one_megabyte_from_a_file(
    cli: DevSessions, claude: FakeAnthropic, tmp_path: Path
) -> None:
    text = one_mb_text()
    source = tmp_path / "big.txt"
    source.write_text(text)
    sid = create(cli)
    cli.ok("send", sid, "--file", str(source))
    cli.ok("wait", sid, "--timeout", "120")
    assert last(cli, sid) == text


def test_message_from_stdin(cli: DevSessions, claude: FakeAnthropic) -> None:
    sid = create(cli)
    cli.ok("send", sid, "--file", "-", stdin="from stdin\nwith two lines")
    cli.ok("wait", sid, "--timeout", "60")
    assert last(cli, sid) == "from stdin\nwith two lines"


def test_ask_prints_the_reply(cli: DevSessions, claude: FakeAnthropic) -> None:
    sid = create(cli)
    assert cli.ok("ask", sid, "are you there?", "--timeout", "60") == "are you there?\n"
    assert cli.ok("ask", sid, "and again", "--timeout", "60") == "and again\n"
    assert json.loads(cli.ok("last-message", sid, "-n", "2", "--json")) == ["are you there?", "and again"]


def test_status_is_working_during_a_slow_reply_and_idle_after(
    cli: DevSessions, claude: FakeAnthropic
) -> None:
    sid = create(cli)
    assert cli.ok("status", sid).strip() == "idle"
    cli.ok("send", sid, "take your time <<hold>>")
    eventually(lambda: claude.holding() == 1)  # the turn runs until the test lets it end
    assert cli.ok("status", sid).strip() == "working"
    assert json.loads(cli.ok("list", "--json"))[0]["live"] == "working"
    claude.release()
    cli.ok("wait", sid, "--timeout", "60")
    assert cli.ok("status", sid).strip() == "idle"
    assert json.loads(cli.ok("list", "--json"))[0]["live"] == "idle"


def test_wait_times_out_with_124(cli: DevSessions, claude: FakeAnthropic) -> None:
    sid = create(cli)
    cli.ok("send", sid, "slow <<hold>>")
    result = cli("wait", sid, "--timeout", "1")
    assert result.returncode == 124
    assert "still running after 1 s" in result.stderr
    claude.release()
    assert cli.ok("wait", sid, "--timeout", "60").startswith(f"{sid}: completed")


def test_question_is_waiting_for_input_and_answered_with_respond(
    cli: DevSessions, claude: FakeAnthropic
) -> None:
    sid = create(cli)
    cli.ok("send", sid, "choose <<ask>>")
    result = cli("wait", sid, "--timeout", "60")
    assert result.returncode == 1
    assert "waiting for input" in result.stderr
    assert "Which colour?" in result.stderr
    status = json.loads(cli.ok("status", sid, "--json"))
    assert status["status"] == "waiting_for_input"
    assert status["dialog"]["question"] == "Which colour?"
    assert [o["label"] for o in status["dialog"]["options"]][:2] == ["Red", "Blue"]
    one_line = cli("send", sid, "typing into a dialog")
    assert one_line.returncode == 1
    assert "waiting for an answer" in one_line.stderr
    assert cli.ok("respond", sid, "blue").strip() == f"{sid}: answered 2. Blue"
    cli.ok("wait", sid, "--timeout", "60")
    assert '"Which colour?"="Blue"' in last(cli, sid)
    assert cli.ok("status", sid).strip() == "idle"


def test_question_answered_with_free_text(cli: DevSessions, claude: FakeAnthropic) -> None:
    sid = create(cli)
    cli.ok("send", sid, "choose <<ask>>")
    eventually(lambda: cli.ok("status", sid).startswith("waiting_for_input"))
    cli.ok("respond", sid, "a sort of teal")
    cli.ok("wait", sid, "--timeout", "60")
    assert '"Which colour?"="a sort of teal"' in last(cli, sid)


def test_permission_prompt_when_approvals_are_asked_for(
    cli: DevSessions, claude: FakeAnthropic, workdir: Path
) -> None:
    made = workdir / "made.txt"
    sid = create(cli, "--approvals", "on-request")
    cli.ok("send", sid, f"please <<bash:touch {made}>>")
    result = cli("wait", sid, "--timeout", "60")
    assert result.returncode == 1
    assert "Do you want to proceed?" in result.stderr
    assert not made.exists()
    cli.ok("respond", sid, "yes")
    cli.ok("wait", sid, "--timeout", "60")
    assert made.exists()
    assert last(cli, sid).startswith("OUTPUT:")


def test_interrupt_ends_a_pending_wait(cli: DevSessions, claude: FakeAnthropic) -> None:
    sid = create(cli)
    cli.ok("send", sid, "long one <<hold>>")  # runs until interrupted: the model never answers
    eventually(lambda: claude.holding() == 1)
    assert cli.ok("status", sid).strip() == "working"
    waiter = cli.start("wait", sid, "--timeout", "60", debug=True)
    waiter.said(f"{sid}: waiting for the turn to end")  # blocked on the running turn
    assert cli.ok("interrupt", sid).strip() == f"{sid}: interrupted"
    result = waiter.finish()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{sid}: interrupted")
    assert cli.ok("status", sid).strip() == "idle"
    assert cli.ok("interrupt", sid).strip() == f"{sid}: nothing to interrupt (idle)"
    # Whatever the interrupt left in the input box must not leak into the next prompt.
    assert cli.ok("ask", sid, "after the interrupt", "--timeout", "60") == "after the interrupt\n"


def test_text_left_in_the_input_box_is_not_sent_with_the_next_prompt(
    cli: DevSessions, claude: FakeAnthropic
) -> None:
    # Claude puts an interrupted prompt back into its box, at times after the interrupt has returned;
    # a send (pasted or through the editor key) must send only its own text.
    sid = create(cli)
    tmux = Tmux(os.environ["DEV_SESSIONS_TMUX_SOCKET"])
    for text in ("a short one", "a\ttab through the editor"):
        tmux.send_keys(f"dev-{sid}", ["left over in the box"], literal=True)
        eventually(lambda: "left over in the box" in tmux.scrollback(f"dev-{sid}"))
        assert cli.ok("ask", sid, text, "--timeout", "60") == text + "\n"
        assert claude.prompts()[-1] == text


def test_interrupt_after_part_of_the_reply(cli: DevSessions, claude: FakeAnthropic) -> None:
    sid = create(cli)
    cli.ok("send", sid, "abcdefghij <<slow:6>>")
    eventually(lambda: claude.streamed >= 3)
    cli.ok("interrupt", sid)
    assert cli.ok("wait", sid, "--timeout", "10").strip() == f"{sid}: interrupted"
    partial = last(cli, sid)
    assert partial and "abcdefghij <<slow:6>>".startswith(partial)


def test_failed_turn_is_reported_with_the_api_error(cli: DevSessions, claude: FakeAnthropic) -> None:
    sid = create(cli)
    cli.ok("send", sid, "fail please <<error:500>>")
    result = cli("wait", sid, "--timeout", "60")
    assert result.returncode == 1
    assert "turn failed: API Error: 500" in result.stderr
    assert json.loads(cli("wait", sid, "--json").stdout)[0]["outcome"] == "failed"


def test_prompt_sent_during_a_turn_is_queued_and_waited_for(cli: DevSessions, claude: FakeAnthropic) -> None:
    sid = create(cli)
    cli.ok("send", sid, "first <<hold>>")
    eventually(lambda: claude.holding() == 1)
    assert (
        cli.ok("send", sid, "second, queued").strip()
        == f"{sid}: queued (a turn is running; this prompt goes next)"
    )
    claude.release()
    cli.ok("wait", sid, "--timeout", "60")
    assert last(cli, sid) == "second, queued"


def test_wait_reports_an_agent_that_died(cli: DevSessions, claude: FakeAnthropic) -> None:
    sid = create(cli)
    pid = json.loads(cli.ok("inspect", sid))["tmux"]["pid"]
    cli.ok("send", sid, "long one <<hold>>")
    eventually(lambda: claude.holding() == 1)
    assert cli.ok("status", sid).strip() == "working"
    waiter = cli.start("wait", sid, "--timeout", "60", debug=True)
    waiter.said(f"{sid}: waiting for the turn to end")
    os.kill(pid, signal.SIGKILL)
    result = waiter.finish()
    assert result.returncode == 1
    assert f"dev-sessions: {sid}: claude exited" in result.stderr
    assert result.stdout == "", "the turn never ended: the agent did"


def test_create_stops_on_a_real_first_run_dialog(
    cli: DevSessions, claude: FakeAnthropic, workdir: Path, tmp_path: Path
) -> None:
    # Claude trusts only the work dir now: a session elsewhere meets its trust-this-folder screen.
    prepare_claude_home(Path(os.environ["HOME"]), trusted=workdir)
    elsewhere = tmp_path / "untrusted"
    elsewhere.mkdir()
    created = cli("create", "--path", str(elsewhere))
    assert created.returncode == 0, created.stderr
    sid = created.stdout.strip()
    assert created.stderr.startswith(f"dev-sessions: {sid}: started, but waiting for input\n")
    assert "Yes, I trust this folder" in created.stderr
    assert f"answer with: dev-sessions respond {sid} ANSWER" in created.stderr
    status = json.loads(cli.ok("status", sid, "--json"))
    assert status["status"] == "waiting_for_input"
    assert status["dialog"]["question"].startswith(
        "Quick safety check: Is this a project you created or one you trust?"
    )
    # 2.1.197 numbers the options (Yes first); 2.1.332 lists them unnumbered, "No, exit" first and
    # preselected (a blind Enter would exit): answering by label picks the right one on both.
    labels = [o["label"] for o in status["dialog"]["options"]]
    assert sorted(labels) == ["No, exit", "Yes, I trust this folder"]
    assert status["source"] == "screen"  # before Claude runs any hook, only the screen knows
    refused = cli("send", sid, "too early")
    assert refused.returncode == 1 and "waiting for an answer" in refused.stderr
    number = labels.index("Yes, I trust this folder") + 1
    answered = cli.ok("respond", sid, "yes, i trust").strip()
    assert answered == f"{sid}: answered {number}. Yes, I trust this folder"
    eventually(lambda: cli.ok("status", sid).strip() == "idle")
    assert cli.ok("ask", sid, "trusted now", "--timeout", "60") == "trusted now\n"
    assert claude.prompts() == ["trusted now"], "nothing typed into the dialog reached the model"


def test_kill_leaves_no_tmux_session_and_no_agent(
    cli: DevSessions, claude: FakeAnthropic, tmux_server: Server
) -> None:
    sid = create(cli)
    pid = json.loads(cli.ok("inspect", sid))["tmux"]["pid"]
    cli.ok("kill", sid)
    names = [s.session_name for s in tmux_server.sessions]
    assert f"dev-{sid}" not in names
    eventually(lambda: not Path(f"/proc/{pid}").exists(), timeout=5)
    assert json.loads(cli.ok("list", "--json")) == []


def test_three_sessions_fanned_out_in_parallel(cli: DevSessions, claude: FakeAnthropic) -> None:
    with ThreadPoolExecutor(3) as pool:
        ids = list(pool.map(lambda _: create(cli), range(3)))
    assert len(set(ids)) == 3
    for n, sid in enumerate(ids):
        cli.ok("send", sid, f"task {n} for {sid} <<slow:1>>")
    out = cli.ok("wait", *ids, "--timeout", "90")
    assert [line.split(":")[0] for line in out.splitlines()] == ids
    for n, sid in enumerate(ids):
        assert last(cli, sid) == f"task {n} for {sid} <<slow:1>>"


def test_logs_show_the_conversation(cli: DevSessions, claude: FakeAnthropic) -> None:
    sid = create(cli)
    cli.ok("ask", sid, "hello log", "--timeout", "60")
    items = json.loads(cli.ok("logs", sid, "--json"))
    assert [(i["role"], i["text"]) for i in items if i["role"] in ("user", "assistant")] == [
        ("user", "hello log"),
        ("assistant", "hello log"),
    ]
    assert items[-1]["role"] == "turn"
    assert "hello log" in cli.ok("logs", sid, "--pane")


def test_the_pinned_claude_is_the_one_tested(claude: FakeAnthropic, agents: AgentSet) -> None:
    binary = os.environ["DEV_SESSIONS_CLAUDE_BIN"]
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith(agents.claude_version)


def test_docker_mode_runs_claude_through_the_wrapper(
    cli: DevSessions, claude: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in for `clauded`: records that it ran, then runs Claude as a container would.
    ran = tmp_path / "wrapper-ran"
    wrapper = tmp_path / "bin" / "clauded"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$@" > {ran}\nexec "{os.environ["DEV_SESSIONS_CLAUDE_BIN"]}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("DEV_SESSIONS_CLAUDE_BIN", "/nonexistent/claude")  # docker mode must not use it
    sid = cli.ok("create", "-q", "--mode", "docker").strip()
    assert ran.read_text().startswith("--session-id ")
    assert json.loads(cli.ok("inspect", sid))["session"]["mode"] == "docker"
    assert cli.ok("ask", sid, "through the container", "--timeout", "60") == "through the container\n"


def test_docker_mode_is_refused_for_codex_and_without_a_wrapper(
    cli: DevSessions, claude: FakeAnthropic
) -> None:
    refused = cli("create", "--cli", "codex", "--mode", "docker")
    assert refused.returncode == 2
    assert "not available for Codex sessions yet" in refused.stderr
    missing = cli("create", "--mode", "docker")
    assert missing.returncode == 1
    assert "clauded: not found" in missing.stderr
    assert json.loads(cli.ok("list", "--json")) == []


def test_long_and_many_lined_text_arrives_typed_not_as_pasted_content(
    cli: DevSessions, claude: FakeAnthropic
) -> None:
    # 2.1.332 wraps a paste of more than 3 lines or 800 characters in <pasted_content> tags, turns a
    # pasted tab into spaces and a leading "!" into a shell command: sent through the editor key, none.
    sent = "!not a shell command\n" + "\n".join(f"line {n}\twith a tab" for n in range(40)) + "\n" + "x" * 900
    sid = create(cli)
    cli.ok("send", sid, sent)
    cli.ok("wait", sid, "--timeout", "60")
    assert claude.prompts()[-1] == sent
    assert last(cli, sid) == sent


def test_text_taller_than_the_input_box_is_sent(cli: DevSessions, claude: FakeAnthropic) -> None:
    # 70 lines: more than either version shows of its input box (2.1.332 scrolls it under a "↑ N more"
    # rule past about 20 lines, 2.1.197 lets it run off the top of the screen past about 45), so the
    # screen never shows the first line of the text that landed.
    sent = "\n".join(f"line {n}\twith a tab" for n in range(70))
    sid = create(cli)
    assert cli.ok("send", sid, sent).strip() == f"{sid}: sent"
    cli.ok("wait", sid, "--timeout", "60")
    assert claude.prompts()[-1] == sent
    assert last(cli, sid) == sent


def test_status_is_one_word_and_says_its_source(cli: DevSessions, claude: FakeAnthropic) -> None:
    sid = create(cli)
    shown = cli("status", sid)
    assert (shown.returncode, shown.stdout, shown.stderr) == (0, "idle\n", "")
    assert json.loads(cli.ok("status", sid, "--json"))["source"] == "claude-state"
    cli.ok("send", sid, "choose <<ask>>")
    eventually(lambda: cli.ok("status", sid) == "waiting_for_input\n")
    shown = cli("status", sid)
    assert shown.stdout == "waiting_for_input\n" and "Which colour?" in shown.stderr
    found = json.loads(cli.ok("status", sid, "--json"))
    assert found["source"] == "hooks"  # the question came from Claude's PermissionRequest hook
    assert found["dialog"]["question"] == "Which colour?"
    assert [o["label"] for o in found["dialog"]["options"]][:3] == ["Red", "Blue", "Type something."]
    cli.ok("respond", sid, "blue")
    cli.ok("wait", sid, "--timeout", "60")
    assert '"Which colour?"="Blue"' in last(cli, sid)


def test_create_with_a_model_reaches_claude(cli: DevSessions, claude: FakeAnthropic) -> None:
    sid = create(cli, "--model", "claude-fancy-9")
    assert cli.ok("ask", sid, "which model?", "--timeout", "60") == "which model?\n"
    models = {r["body"].get("model") for r in claude.recorded() if r["body"].get("messages")}
    assert models == {"claude-fancy-9"}


def test_after_clear_the_session_follows_the_new_conversation(
    cli: DevSessions, claude: FakeAnthropic
) -> None:
    sid = create(cli)
    assert cli.ok("ask", sid, "before the clear", "--timeout", "60") == "before the clear\n"
    follower = cli.start("logs", sid, "--follow", "--json")  # a stream started before the clear
    first = json.loads(cli.ok("inspect", sid))["session"]["internalId"]
    cli.ok("send", sid, "/clear")
    eventually(lambda: json.loads(cli.ok("inspect", sid))["session"]["internalId"] != first)
    facts = json.loads(cli.ok("inspect", sid))
    assert facts["session"]["previousIds"] == [first]
    assert cli.ok("ask", sid, "after the clear", "--timeout", "60") == "after the clear\n"
    assert json.loads(cli.ok("last-message", sid, "-n", "5", "--json")) == ["after the clear"]
    assert facts["transcript"]["path"].endswith(f"{facts['session']['internalId']}.jsonl")
    # The stream went on into the new transcript.
    eventually(lambda: follower.stdout.count('"kind":"turn"') == 2, 30)
    cli.ok("kill", sid)
    followed = follower.finish(30)
    talk = [(e["kind"], e.get("text")) for e in map(json.loads, followed.stdout.splitlines())]
    assert [t for t in talk if t[0] in ("prompt", "reply")] == [
        ("prompt", "before the clear"),
        ("reply", "before the clear"),
        ("prompt", "after the clear"),
        ("reply", "after the clear"),
    ], followed.stdout


def test_one_liners_a_paste_would_change_arrive_exactly(cli: DevSessions, claude: FakeAnthropic) -> None:
    # A plain one-line text is pasted (quicker); these are not: a paste would run "!..." as a shell
    # command, turn a tab into spaces, wrap "ultraplan" in <pasted_content> (2.1.332).
    sid = create(cli)
    for text in ("!echo not a command", "a\ttab", "please ultraplan this", "# not a memory"):
        assert cli.ok("ask", sid, text, "--timeout", "60") == text + "\n", text
        assert claude.prompts()[-1] == text
