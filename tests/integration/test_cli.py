"""The command line around an agent: tmux, the store, ids, refusals and exit reports.

The agent here is tests/fakes/fake_claude.py, which only draws Claude Code's screens; the real agent's
behaviour is covered in tests/e2e.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from libtmux.server import Server

from dev_sessions.errors import HostUnreachable
from dev_sessions.store import Session, SessionStore
from tests.conftest import DevSessions, eventually, git_repo, need, one_line_error
from tests.fakes.sshd import UNREACHABLE, Sshd


def tmux_sessions(server: Server) -> set[str]:
    proc = subprocess.run(
        ["tmux", "-L", str(server.socket_name), "list-sessions", "-F", "#{session_name}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return set(proc.stdout.split())


# -- bad input ---------------------------------------------------------------------------------------


def test_version(cli: DevSessions) -> None:
    assert cli.ok("--version").startswith("dev-sessions ")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["create", "--bogus"], "--bogus"),
        (["create", "--path", "/does/not/exist"], "--path /does/not/exist: no such directory"),
        (["create", "--cli", "gpt"], "--cli 'gpt'"),
        (["create", "--approvals", "sometimes"], "--approvals 'sometimes'"),
        (["create", "--mode", "cloud"], "--mode 'cloud'"),
        (["create", "--plan"], "--plan: Plan mode is for Codex sessions (create --cli codex --plan)"),
        (["send", "fizz-top", "hi", "--steer", "--plan"], "--steer adds to the running turn"),
        (["send", "fizz-top", "hi", "--steer", "--no-plan"], "send --plan or --no-plan without --steer"),
        (["send", "fizz-top"], "give a MESSAGE or --file"),
        (["send", "fizz-top", "hi", "--file", "x"], "not both"),
        (["send", "fizz-top", "--file", "/no/such/file"], "--file /no/such/file: no such file"),
        (["wait", "fizz-top", "--timeout", "soon"], "is not a duration"),
        (["kill"], "give session ids, or --all"),
        (["kill", "a-top", "--all"], "give session ids, or --all"),
        (["last-message", "fizz-top", "-n", "0"], "-n must be at least 1"),
        (["wait"], "Missing argument"),
        (["selftest", "--cli", "gpt"], "--cli 'gpt': choose claude, codex or all"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(cli: DevSessions, args: list[str], needle: str) -> None:
    one_line_error(cli(*args), 2, needle)


def test_path_that_is_a_file_is_refused(cli: DevSessions, tmp_path: Path) -> None:
    file = tmp_path / "f"
    file.write_text("x")
    one_line_error(cli("create", "--path", str(file)), 2, "not a directory")


@pytest.mark.parametrize(
    "command", ["status", "send", "wait", "last-message", "logs", "inspect", "kill", "interrupt"]
)
def test_unknown_session_is_one_line_naming_it(cli: DevSessions, command: str) -> None:
    args = [command, "nope-top"] + (["hello"] if command == "send" else [])
    one_line_error(cli(*args), 1, "nope-top: no such session")


def test_junk_id_is_not_found_rather_than_passed_to_tmux(cli: DevSessions) -> None:
    one_line_error(cli("status", "../../etc;ls"), 1, "no such session")


def test_empty_message_is_refused(cli: DevSessions) -> None:
    one_line_error(cli("send", "nope-top", "  \n"), 2, "the message is empty")


def test_message_file_that_is_not_text_is_refused(cli: DevSessions, tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"\xff\xfe\x00binary")
    one_line_error(cli("send", "nope-top", "--file", str(blob)), 2, "not UTF-8")


def test_corrupt_store_is_reported_with_its_path(cli: DevSessions, tmp_path: Path) -> None:
    store = Path(os.environ["DEV_SESSIONS_HOME"]) / "sessions.json"
    store.parent.mkdir(parents=True)
    store.write_text("{not json")
    result = cli("list")
    one_line_error(result, 1, str(store), "moved to")
    assert cli("list").returncode == 0
    assert list(store.parent.glob("sessions.json.corrupt-*"))


def test_debug_switch_shows_tracebacks(cli: DevSessions, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEV_SESSIONS_DEBUG", "1")
    result = cli("status", "nope-top")
    assert result.returncode == 1
    assert "Traceback" in result.stderr


# -- with a (fake) agent -----------------------------------------------------------------------------


def test_create_list_status_inspect_kill(
    cli: DevSessions, fake_claude: Path, tmux_server: Server, workdir: Path
) -> None:
    sid = cli.ok("create", "-q", "--description", "fake one").strip()
    assert f"dev-{sid}" in tmux_sessions(tmux_server)
    rows = json.loads(cli.ok("list", "--json"))
    assert [(r["championId"], r["live"], r["description"]) for r in rows] == [(sid, "idle", "fake one")]
    assert cli.ok("status", sid).strip() == "idle"
    facts = json.loads(cli.ok("inspect", sid))
    assert facts["tmux"]["alive"] is True
    assert facts["session"]["path"] == str(workdir.resolve())
    assert cli.ok("kill", sid).strip() == f"{sid}: killed"
    assert f"dev-{sid}" not in tmux_sessions(tmux_server)
    assert json.loads(cli.ok("list", "--json")) == []


def test_list_shows_tokens_and_lists_without_them_past_a_bad_price_table(
    cli: DevSessions, fake_claude: Path
) -> None:
    sid = cli.ok("create", "-q", "--description", "fake one").strip()
    head, row = cli.ok("list").splitlines()
    assert head.split() == ["ID", "CLI", "STATUS", "AGE", "TOKENS", "PATH", "DESCRIPTION"]
    cells = row.split()
    assert cells[:3] == [sid, "claude", "idle"] and cells[4] == "0"  # no transcript yet: no tokens
    (Path(os.environ["DEV_SESSIONS_HOME"]) / "prices.json").write_text("{")
    listed = cli("list")
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[1].split()[4] == "-"
    assert listed.stderr.count("\n") == 1 and "prices.json" in listed.stderr, listed.stderr


def test_agent_gets_the_callers_environment_and_its_flags(
    cli: DevSessions, fake_claude: Path, monkeypatch: pytest.MonkeyPatch, tmux_server: Server, workdir: Path
) -> None:
    # The tmux server is started by an earlier session with a different environment: the new session
    # must still get the caller's variables.
    monkeypatch.setenv("FIRST_ONLY", "1")
    first = cli.ok("create", "-q").strip()
    monkeypatch.delenv("FIRST_ONLY")
    monkeypatch.setenv("CALLER_VAR", "value with spaces")
    monkeypatch.setenv("CLAUDECODE", "1")
    monkeypatch.setenv("CLAUDE_CODE_CHILD_SESSION", "1")
    sid = cli.ok("create", "-q", "--approvals", "on-request").strip()
    seen = json.loads(fake_claude.read_text())
    assert seen["env"]["CALLER_VAR"] == "value with spaces"
    assert seen["env"]["DEV_SESSIONS_ID"] == sid
    assert seen["env"]["IS_SANDBOX"] == "1"
    assert "CLAUDECODE" not in seen["env"]
    assert "CLAUDE_CODE_CHILD_SESSION" not in seen["env"]
    assert seen["cwd"] == str(workdir.resolve())
    record = json.loads(cli.ok("inspect", sid))["session"]
    # Prompts on: 2.1.332 defaults to auto mode, so the classic prompts are asked for; our hooks are
    # added for this run only (--settings), never written into the user's settings.
    home = Path(os.environ["DEV_SESSIONS_HOME"])
    assert seen["argv"] == [
        "--session-id", record["internalId"], "--permission-mode", "default",
        "--settings", str(home / "claude" / "hooks.json"),
    ]  # fmt: skip
    # The hooks report into the session's events file; the editor key hands over the spool.
    assert seen["env"]["DEV_SESSIONS_EVENTS"] == str(home / "events" / f"{sid}.jsonl")
    assert seen["env"]["DEV_SESSIONS_SPOOL"] == str(home / "spool" / sid)
    assert seen["env"]["VISUAL"] == str(home / "bin" / "ds-editor")
    assert record["delivery"] == "editor"
    assert record["parent"] == "user"  # created from outside any session
    cli.ok("kill", first, sid)
    assert not (home / "events" / f"{sid}.jsonl").exists()  # kill leaves nothing of the session


def test_full_permissions_by_default(cli: DevSessions, fake_claude: Path) -> None:
    sid = cli.ok("create", "-q").strip()
    hooks = str(Path(os.environ["DEV_SESSIONS_HOME"]) / "claude" / "hooks.json")
    argv = json.loads(fake_claude.read_text())["argv"]
    assert argv[2:] == ["--dangerously-skip-permissions", "--settings", hooks]
    cli.ok("kill", sid)


def test_plan_mode_is_refused_for_a_claude_session(cli: DevSessions, fake_claude: Path) -> None:
    sid = cli.ok("create", "-q").strip()
    one_line_error(cli("send", sid, "hello", "--plan"), 2, f"{sid}: --plan and --no-plan are for Codex")
    one_line_error(cli("send", sid, "hello", "--no-plan"), 2, f"{sid}: --plan and --no-plan are for Codex")
    assert "collaborationMode" not in json.loads(cli.ok("inspect", sid))["session"]
    cli.ok("kill", sid)


def test_agent_that_dies_at_start_is_reported_and_cleaned_up(
    cli: DevSessions, fake_claude: Path, monkeypatch: pytest.MonkeyPatch, tmux_server: Server
) -> None:
    monkeypatch.setenv("FAKE_CLAUDE_MODE", "exit")
    result = cli("create")
    # tmux 3.3 sometimes marks such a pane dead without ever giving its exit status.
    one_line_error(result, 1, "claude did not start: claude exited", "refuses to start")
    assert not any(name.startswith("dev-") for name in tmux_sessions(tmux_server))
    assert json.loads(cli.ok("list", "--json")) == []


def test_session_on_a_dialog_is_waiting_for_input_and_refuses_send(
    cli: DevSessions, fake_claude: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CLAUDE_MODE", "dialog")
    result = cli("create")
    assert result.returncode == 0
    sid = result.stdout.strip()
    assert "waiting for input" in result.stderr
    assert "1. Yes, I trust this folder" in result.stderr
    status = json.loads(cli.ok("status", sid, "--json"))
    assert status["status"] == "waiting_for_input"
    assert (
        status["dialog"]["question"] == "Quick safety check: Is this a project you created or one you trust?"
    )
    assert [o["label"] for o in status["dialog"]["options"]] == ["Yes, I trust this folder", "No, exit"]
    shown = cli("status", sid)
    assert shown.returncode == 0 and shown.stdout == "waiting_for_input\n"  # one word on stdout
    assert (
        "1. Yes, I trust this folder" in shown.stderr and f"dev-sessions respond {sid} ANSWER" in shown.stderr
    )
    one_line_error(cli("send", sid, "hello"), 1, "waiting for an answer", f"respond {sid}")
    one_line_error(cli("respond", sid, "maybe"), 2, "matches none of")
    result = cli("wait", sid, "--timeout", "5")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"dev-sessions: {sid}: waiting for input\n")
    assert "1. Yes, I trust this folder" in result.stderr


def test_create_waits_for_a_slow_input_box(
    cli: DevSessions, fake_claude: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CLAUDE_MODE", "late")
    monkeypatch.setenv("FAKE_CLAUDE_DELAY", "1.5")
    started = time.monotonic()
    sid = cli.ok("create", "-q").strip()
    assert time.monotonic() - started >= 1.5
    assert cli.ok("status", sid).strip() == "idle"


def test_ready_timeout_bounds_the_wait_for_the_input_box(
    cli: DevSessions, fake_claude: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The agent draws nothing for a minute; DEV_SESSIONS_READY_TIMEOUT says how long to wait for it.
    monkeypatch.setenv("FAKE_CLAUDE_MODE", "late")
    monkeypatch.setenv("FAKE_CLAUDE_DELAY", "60")
    monkeypatch.setenv("DEV_SESSIONS_READY_TIMEOUT", "1")
    started = time.monotonic()
    created = cli("create", timeout=15)  # well under the default of 30 s
    assert time.monotonic() - started >= 1.0
    assert created.returncode == 0, created.stderr
    sid = created.stdout.strip()
    assert f"{sid}: started, but its input box has not shown yet" in created.stderr
    assert cli.ok("status", sid).splitlines()[0] == "starting", "create returned before the agent was ready"
    # send waits for the input box just as long, then says so.
    one_line_error(cli("send", sid, "hello"), 1, f"{sid}: input box not ready after 1 s")


def test_session_whose_agent_died_is_exited(cli: DevSessions, fake_claude: Path) -> None:
    sid = cli.ok("create", "-q").strip()
    pid = json.loads(cli.ok("inspect", sid))["tmux"]["pid"]
    os.kill(pid, 9)
    eventually(lambda: cli.ok("status", sid).splitlines()[0] == "exited", timeout=5)
    assert "exit" in cli.ok("status", sid)
    one_line_error(cli("send", sid, "hi"), 1, "claude exited", f"dev-sessions kill {sid}")
    result = cli("wait", sid)
    assert result.returncode == 1
    assert json.loads(cli.ok("list", "--json"))[0]["live"] == "exited"
    cli.ok("kill", sid)


def test_wait_without_a_send_returns_at_once(cli: DevSessions, fake_claude: Path) -> None:
    sid = cli.ok("create", "-q").strip()
    assert cli.ok("wait", sid, "--timeout", "5").strip() == f"{sid}: idle (no turn to wait for)"


def test_twenty_parallel_creates_get_twenty_sessions(
    cli: DevSessions, fake_claude: Path, tmux_server: Server
) -> None:
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: cli("create", "-q", timeout=120), range(20)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results if r.returncode]
    ids = [r.stdout.strip() for r in results]
    assert len(set(ids)) == 20
    stored = {r["championId"] for r in json.loads(cli.ok("list", "--json"))}
    assert stored == set(ids)
    assert {f"dev-{i}" for i in ids} <= tmux_sessions(tmux_server)
    killed = cli.ok("kill", "--all").split("\n")
    assert len([k for k in killed if k]) == 20
    assert not any(name.startswith("dev-") for name in tmux_sessions(tmux_server))


def test_kill_older_than(cli: DevSessions, fake_claude: Path) -> None:
    sid = cli.ok("create", "-q").strip()
    young = cli("kill", "--older-than", "1h")
    assert (young.returncode, young.stdout, young.stderr) == (0, "", "no sessions to kill\n")
    assert [r["championId"] for r in json.loads(cli.ok("list", "--json"))] == [sid]

    def killed_once_a_second_old() -> str:
        result = cli("kill", "--older-than", "1s")
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert eventually(killed_once_a_second_old, timeout=5) == f"{sid}: killed\n"
    assert json.loads(cli.ok("list", "--json")) == []


def _recorded(session_id: str, **changes: object) -> None:
    """A record put into this test's store as it is (a session on a host, an old one)."""
    store = SessionStore(Path(os.environ["DEV_SESSIONS_HOME"]) / "sessions.json")
    with store.transaction() as doc:
        found = doc.sessions.get(session_id)
        base = found or Session(id=session_id, internal_id="far", cli="claude", path="/srv")
        doc.put(base.evolve(**changes))


def test_kill_all_and_older_than_go_on_past_a_host_that_does_not_answer(
    cli: DevSessions, fake_claude: Path, sshd: Sshd, tmux_server: Server
) -> None:
    hour_ago = "2000-01-01T00:00:00.000Z"
    old, young = cli.ok("create", "-q").strip(), cli.ok("create", "-q").strip()
    _recorded(old, created_at=hour_ago)
    far = ["far-top", "away-mid"]
    for sid in far:
        _recorded(sid, host=UNREACHABLE, created_at=hour_ago)
    code = HostUnreachable(host=UNREACHABLE, detail="").exit_code  # exit 1, from the table

    def refusals(stderr: str) -> dict[str, str]:
        lines = [line for line in stderr.splitlines() if line]
        assert len(lines) == len(far) and "Traceback" not in stderr, stderr
        return {line.split(":")[1].strip(): line for line in lines}

    aged = cli("kill", "--older-than", "30m")
    assert aged.returncode == code and aged.stdout == f"{old}: killed\n", aged
    for sid, line in refusals(aged.stderr).items():
        assert line.startswith(f"dev-sessions: {sid}: not killed: {UNREACHABLE}: no ssh connection (")
        assert line.endswith(f"its record is kept (`dev-sessions kill --forget {sid}` drops it)")
    assert set(refusals(aged.stderr)) == set(far)
    assert f"dev-{old}" not in tmux_sessions(tmux_server) and f"dev-{young}" in tmux_sessions(tmux_server)

    # Named one by one, the same: the one that can be killed is, the other is said.
    both = cli("kill", far[0], young)
    assert both.returncode == code and both.stdout == f"{young}: killed\n", both
    assert both.stderr.startswith(f"dev-sessions: {far[0]}: not killed: {UNREACHABLE}: no ssh connection (")
    assert both.stderr.count("\n") == 1
    young = cli.ok("create", "-q").strip()

    every = cli("kill", "--all", "--json")
    assert every.returncode == code, every
    answers = {entry["id"]: entry for entry in json.loads(every.stdout)}
    assert answers[young] == {"id": young, "killed": True, "host": None, "worktree": None, "note": None}
    for sid in far:
        assert answers[sid]["killed"] is False and answers[sid]["host"] == UNREACHABLE
        assert answers[sid]["error"].startswith(f"{UNREACHABLE}: no ssh connection (")
    assert set(refusals(every.stderr)) == set(far)
    assert not any(name.startswith("dev-") for name in tmux_sessions(tmux_server))
    assert sorted(r["championId"] for r in json.loads(cli.ok("list", "--json"))) == sorted(far)

    forgotten = cli("kill", "--forget", *far)
    assert forgotten.returncode == 0 and forgotten.stdout == "".join(f"{sid}: killed\n" for sid in far)
    assert json.loads(cli.ok("list", "--json")) == []


def test_module_and_script_entry_points_agree(cli: DevSessions) -> None:
    script = Path(sys.executable).with_name("dev-sessions")
    if not script.exists():
        need(f"no console script {script} (scripts/test installs the package into .venv)")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True).stdout
    assert out == cli.ok("--version")


@pytest.mark.parametrize("args", [["status", "fizz-top"], ["list"], ["msg", "read"], ["--help"]])
def test_other_commands_do_not_import_the_selftest_or_the_mcp_sdk(cli: DevSessions, args: list[str]) -> None:
    # The selftest's runner and fake model servers are imported only when `selftest` runs.
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dev_sessions", *args],
        capture_output=True, text=True, cwd=cli.cwd, check=False,
    )  # fmt: skip
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
    assert [name for name in imported if name.startswith("dev_sessions.selftest")] == []
    # Nor the MCP server and its SDK (half a second of imports), nor pydantic, which it brings; nor
    # the dashboard's web server (aiohttp), nor the TUI's Textual; nor PostgreSQL's driver, which only
    # a postgresql:// DEV_SESSIONS_MESSAGES_URL needs.
    heavy = ("mcp", "mcp_types", "pydantic", "dev_sessions.mcp", "starlette", "anyio", "aiohttp")
    heavy += ("dev_sessions.dashboard", "psycopg")
    assert "dev_sessions.messaging.postgres" not in imported
    assert [name for name in imported if name.split(".")[0] in heavy or name.startswith(heavy)] == []


@pytest.mark.parametrize(
    "args", [["status", "fizz-top"], ["list"], ["msg", "read"], ["install-skill", "--help"]]
)
def test_other_commands_do_not_import_install_mcp(cli: DevSessions, args: list[str]) -> None:
    # install-mcp's module (and the TOML parser) is imported only when install-mcp / uninstall-mcp run.
    def imported(argv: list[str]) -> list[str]:
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "dev_sessions", *argv],
            capture_output=True, text=True, cwd=cli.cwd, check=False,
        )  # fmt: skip
        return [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line]

    assert [n for n in imported(args) if n in ("dev_sessions.install_mcp", "tomllib", "tomli")] == []
    assert "dev_sessions.install_mcp" in imported(["uninstall-mcp", "--global", "--local"])


def test_worktree_from_the_command_line(cli: DevSessions, fake_claude: Path, workdir: Path) -> None:
    repo = workdir / "repo"
    git_repo(repo)
    made = cli("create", "-q", "--worktree", "--path", str(repo))  # --worktree takes no value here
    assert made.returncode == 0, made.stderr
    sid = made.stdout.strip()
    named = cli.ok("create", "-q", "-p", str(repo), "--worktree", "topic").strip()
    rows = {r["championId"]: r for r in json.loads(cli.ok("list", "--json"))}
    assert rows[sid]["branch"] == f"dev-sessions/{sid}" and rows[named]["branch"] == "topic"
    assert rows[sid]["path"] == rows[sid]["worktree"] == str(workdir / ".worktrees" / sid)
    assert f"[dev-sessions/{sid}]" in cli.ok("list")
    (Path(rows[named]["worktree"]) / "wip.txt").write_text("not committed\n")
    killed = cli("kill", sid, named)
    assert killed.returncode == 0, killed.stderr
    assert killed.stdout == f"{sid}: killed\n{named}: killed\n"
    assert (
        killed.stderr
        == f"{named}: worktree kept at {rows[named]['worktree']} (branch topic): 1 uncommitted change(s)\n"
    )
    assert not Path(rows[sid]["worktree"]).exists() and Path(rows[named]["worktree"]).exists()
    refused = cli("create", "--worktree", "--path", str(workdir))
    one_line_error(refused, 2, "is not in a git repository")


def test_call_answers_one_api_call_from_stdin(cli: DevSessions) -> None:
    """What a remote host's dev-sessions is asked over ssh: JSON in, one JSON line out, exit 0."""
    cli.ok("agents", "register", "boss")
    body = "line one\n$(not run) `nor this` ; \u00e9\u2603\n"
    request = {"api": "messages", "method": "send", "args": {"to": "boss", "body": body, "sender": "me"}}
    answer = json.loads(cli.ok("call", stdin=json.dumps(request)))
    assert answer["result"]["$"] == "dev_sessions.messaging.records:Message"
    assert answer["result"]["body"] == body and answer["result"]["sender"] == "me"
    cases = [
        ({"api": "sessions", "method": "status", "args": {"session_id": "nope-top"}}, "SessionNotFound", 1),
        ({"api": "sessions", "method": "store", "args": {}}, "NoSuchCall", 1),
        ({"api": "sessions", "method": "status", "args": {"session_id": 3}}, "BadRequest", 1),
        ({"api": "sessions", "method": "status", "args": {"nope": 1}}, "BadRequest", 1),
        ({"api": "messages", "method": "send", "args": {"to": "boss", "body": " "}}, "UsageError", 2),
    ]
    for request, kind, code in cases:
        result = cli("call", stdin=json.dumps(request))
        assert result.returncode == 0, result.stderr
        error = json.loads(result.stdout)["error"]
        assert (error["kind"], error["exit"]) == (kind, code), error
    assert json.loads(cli.ok("call", stdin="not json"))["error"]["kind"] == "BadRequest"
    assert "call" not in cli.ok("--help").split()
