"""Two machines sharing one PostgreSQL message store (issue 15): each with its own state directory,
tmux server and name (``tests/fakes/machines.py``), its sessions drawn by ``fakes/fake_claude.py``.
A session of one machine is a recipient on the other (by name when unique, ``name@machine``
always), a reply finds the sender's machine, a space reaches members on both, ``agents`` and ``msg
status`` say which machine; and each deliverer takes only its own machine's receipts."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev_sessions.config import Settings
from dev_sessions.messaging.deliver import Deliverer
from dev_sessions.messaging.store import open_store
from tests.conftest import DevSessions, eventually, one_line_error
from tests.fakes.machines import Machine, machines
from tests.fakes.postgres import Postgres


@pytest.fixture
def pg_url(postgres_server: Postgres) -> Iterator[str]:
    url = postgres_server.database()
    yield url
    postgres_server.drop(url)


@pytest.fixture
def two(pg_url: str, fake_claude: Path, tmp_path: Path, workdir: Path) -> Iterator[list[Machine]]:
    with machines(["alpha", "beta"], tmp_path / "machines", pg_url, workdir) as made:
        yield made


def _created(machine: Machine, workdir: Path) -> str:
    return machine.ok("create", "-q", "-p", str(workdir)).strip()


def test_a_dm_and_its_reply_cross_machines(two: list[Machine], workdir: Path) -> None:
    alpha, beta = two
    sa, sb = _created(alpha, workdir), _created(beta, workdir)
    # Known on the other machine as soon as create returns: by name, and as name@machine.
    sent = alpha.ok("msg", "send", "--from", sa, "--to", sb, "hello beta").strip()
    status = json.loads(alpha.ok("msg", "status", sent, "--json"))
    assert [(r["recipient"], r["machine"], r["via"]) for r in status["recipients"]] == [
        (sb, "beta", "conversation")
    ]
    assert f"  {sb}@beta: " in alpha.ok("msg", "status", sent)
    assert f"  {sb}: " in beta.ok("msg", "status", sent), "its own machine's session by its name"
    mail = json.loads(beta.ok("msg", "read", "--as", sb, "--json"))
    assert [(m["id"], m["from"], m["body"]) for m in mail] == [(int(sent), sa, "hello beta")]

    answer = beta.ok("msg", "reply", sent, "--from", sb, "hello alpha").strip()
    back = json.loads(beta.ok("msg", "status", answer, "--json"))["recipients"]
    assert [(r["recipient"], r["machine"], r["via"]) for r in back] == [(sa, "alpha", "conversation")]
    mail = json.loads(alpha.ok("msg", "read", "--as", sa, "--json"))
    assert [(m["from"], m["body"], m["replyTo"]) for m in mail] == [(sb, "hello alpha", int(sent))]

    again = beta.ok("msg", "send", "--from", sb, "--to", f"{sa}@alpha", "by its full name").strip()
    receipts = json.loads(beta.ok("msg", "status", again, "--json"))["recipients"]
    assert [(r["recipient"], r["machine"]) for r in receipts] == [(sa, "alpha")]


def test_a_space_reaches_members_on_both_machines(two: list[Machine], workdir: Path) -> None:
    alpha, beta = two
    sa, sb = _created(alpha, workdir), _created(beta, workdir)
    alpha.ok("space", "create", "team")
    alpha.ok("space", "join", "team", "--as", sa)
    beta.ok("space", "join", "team", "--as", sb)
    beta.ok("agents", "register", "lead")
    beta.ok("space", "join", "team", "--as", "lead")
    sent = alpha.ok("space", "send", "team", "standup in 5").strip()
    receipts = json.loads(beta.ok("msg", "status", sent, "--json"))["recipients"]
    assert sorted((r["recipient"], r["machine"], r["via"]) for r in receipts) == sorted(
        [(sa, "alpha", "conversation"), (sb, "beta", "conversation"), ("lead", None, "mailbox")]
    )
    for machine, name in ((alpha, sa), (beta, sb), (beta, "lead")):
        bodies = [m["body"] for m in json.loads(machine.ok("msg", "read", "--as", name, "--json"))]
        assert bodies == ["standup in 5"], (machine.name, name)


def test_agents_show_each_machine_and_presence(two: list[Machine], workdir: Path) -> None:
    alpha, beta = two
    sa, sb = _created(alpha, workdir), _created(beta, workdir)
    alpha.ok("agents", "heartbeat", "--as", "lead")
    rows = {(r["name"], r["machine"]): r for r in json.loads(beta.ok("agents", "--json"))}
    assert rows[(sb, "beta")]["kind"] == "session"
    assert "presence" not in rows[(sb, "beta")], "this machine's own sessions have a live status"
    assert (rows[(sa, "alpha")]["kind"], rows[(sa, "alpha")]["presence"]) == ("session", "online")
    assert (rows[("lead", "alpha")]["kind"], rows[("lead", "alpha")]["presence"]) == ("agent", "online")
    assert f"{sa}  session  " in beta.ok("agents") and "  on alpha" in beta.ok("agents")


def test_a_name_on_two_machines_must_be_given_with_its_machine(
    two: list[Machine], pg_url: str, workdir: Path
) -> None:
    alpha, _ = two
    _created(alpha, workdir)
    store = open_store(pg_url)
    store.publish_sessions("gamma", [("twin", "claude", None, "idle")])
    store.publish_sessions("delta", [("twin", "claude", None, "idle")])
    one_line_error(alpha("msg", "send", "--to", "twin", "which?"), 2, "twin@delta", "twin@gamma")
    sent = alpha.ok("msg", "send", "--to", "twin@gamma", "this one").strip()
    assert [(r.recipient, r.machine) for r in store.receipts(int(sent))] == [("twin", "gamma")]
    one_line_error(alpha("msg", "send", "--to", "twin@nowhere", "lost"), 1, "twin@nowhere")
    store.close()


def test_a_deliverer_takes_only_its_own_machines_receipts(
    two: list[Machine], pg_url: str, workdir: Path
) -> None:
    alpha, beta = two
    sa = _created(alpha, workdir)
    store = open_store(pg_url)
    # The same session name on another machine: its receipt is that machine's deliverer's.
    store.publish_sessions("gamma", [(sa, "claude", None, "idle")])
    to_alpha = store.send("user", {sa: "conversation"}, "here", machines={sa: "alpha"})
    to_gamma = store.send("user", {sa: "conversation"}, "there", machines={sa: "gamma"})
    for machine, expected in ((alpha, [to_alpha.id]), (beta, [])):
        deliverer = Deliverer(Settings.from_env(machine.env), machine.env)
        sessions = {s.id: s for s in deliverer.sessions.sessions()}
        assert [m.id for m, _ in deliverer.due(sessions) if m.id in (to_alpha.id, to_gamma.id)] == expected
        deliverer.store.close()
    store.close()


def test_a_machine_name_is_checked(pg_url: str, fake_claude: Path, tmp_path: Path, workdir: Path) -> None:
    with machines(["bad@name"], tmp_path / "machines", pg_url, workdir) as (odd,):
        one_line_error(odd("msg", "send", "--to", "user", "hi"), 2, "DEV_SESSIONS_MACHINE", "bad@name")


def test_sessions_publish_and_unpublish(two: list[Machine], pg_url: str, workdir: Path) -> None:
    alpha, _ = two
    sa = _created(alpha, workdir)
    store = open_store(pg_url)
    assert [(row[0], row[1]) for row in store.machine_sessions(sa)] == [(sa, "alpha")]
    alpha.ok("kill", sa)
    # Its machine's deliverer says it is gone (nobody else on alpha writes the list).
    eventually(lambda: store.machine_sessions(sa) == [], timeout=10)
    store.close()


def test_msg_migrate_copies_a_local_store_once(
    cli: DevSessions, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEV_SESSIONS_MESSAGES_URL", raising=False)
    monkeypatch.setenv("DEV_SESSIONS_MACHINE", "laptop")
    cli.ok("agents", "register", "alice")
    cli.ok("project", "create", "web", "--tags", "a,b")
    cli.ok("focus", "set", "web", "--as", "alice")
    cli.ok("space", "create", "org")
    cli.ok("space", "create", "team", "--parent", "org", "--project", "web")
    cli.ok("space", "join", "team", "--as", "alice")
    first = cli.ok("msg", "send", "--to", "alice", "first").strip()
    cli.ok("msg", "reply", first, "--from", "alice", "the answer")
    cli.ok("space", "send", "team", "--from", "user", "to the team")
    with_password = pg_url.replace("postgresql://", "postgresql://dstest:pw-never-shown@", 1)
    out = cli.ok("msg", "migrate", "--to", with_password)
    assert out.count("\n") == 1 and "pw-never-shown" not in out and "***" in out
    assert "3 messages (0 already there)" in out and "2 spaces (0 already there)" in out
    assert "1 projects (0 already there)" in out
    again = json.loads(cli.ok("msg", "migrate", "--to", "-", "--json", stdin=pg_url))
    assert again["messages"] == {"copied": 0, "already": 3}
    assert again["receipts"] == {"copied": 0, "already": 3}
    assert again["spaces"] == {"copied": 0, "already": 2}
    assert again["projects"] == {"copied": 0, "already": 1}
    assert again["members"] == {"copied": 0, "already": 1}
    assert again["agents"]["copied"] == 0 and again["agents"]["already"] >= 1
    store = open_store(pg_url)
    copies = store.feed()
    assert [(m.sender, m.body) for m in copies] == [
        ("user", "first"), ("alice", "the answer"), ("user", "to the team")
    ]  # fmt: skip
    reply = copies[1]
    assert (reply.reply_to, reply.thread) == (copies[0].id, copies[0].thread), "the thread renumbered"
    assert [r.state for r in store.receipts(copies[0].id)] == ["read"], "answering it read it"
    assert store.origin_machine(copies[0].id) == "laptop"
    assert [s.name for s in store.spaces()] == ["org", "team"]
    assert [(s.name, s.project) for s in store.spaces("web")] == [("team", "web")]
    project = store.project("web")
    assert project is not None and project.tags == ["a", "b"] and store.focus_of("alice").project == "web"
    store.close()


def test_msg_migrate_copies_reactions_pins_holders_and_a_pruned_thread(
    cli: DevSessions, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEV_SESSIONS_MESSAGES_URL", raising=False)
    monkeypatch.setenv("CLAUDE_CODE_SESSION_ID", "holder")
    cli.ok("agents", "register", "alice")
    monkeypatch.delenv("CLAUDE_CODE_SESSION_ID")
    root = cli.ok("msg", "send", "--to", "alice", "old question").strip()
    reply = cli.ok("msg", "reply", root, "--from", "alice", "an answer").strip()
    cli.ok("msg", "reply", reply, "another answer")
    cli.ok("msg", "react", reply, "👍")
    cli.ok("msg", "pin", reply, "--as", "alice")
    local = open_store(Path(os.environ["DEV_SESSIONS_HOME"]) / "messages.db")
    local.db.execute("UPDATE messages SET created_ms = 0 WHERE id = ?", (int(root),))
    local.close()
    cli.ok("msg", "prune", "--older-than", "30d")  # the thread's first message goes
    report = json.loads(cli.ok("msg", "migrate", "--to", pg_url, "--json"))
    assert (report["reactions"], report["pins"]) == ({"copied": 1, "already": 0}, {"copied": 1, "already": 0})
    store = open_store(pg_url)
    copies = store.feed()
    assert [m.body for m in copies] == ["an answer", "another answer"]
    assert len({m.thread for m in copies}) == 1, "what is left of a thread stays one thread"
    assert [(r.emoji, r.agents) for r in store.reactions(copies[0].id)] == [("👍", ("user",))]
    assert [(p.message.id, p.pinned_by) for p in store.pins()] == [(copies[0].id, "alice")]
    assert store.agent("alice").session == "claude:holder"  # type: ignore[union-attr]
    store.close()


def test_msg_migrate_to_a_server_that_does_not_answer_is_one_line(cli: DevSessions, tmp_path: Path) -> None:
    cli.ok("msg", "send", "--to", "user", "kept here")
    url = f"postgresql://someone:s3cret-pw@/team?host={tmp_path}/no-server&connect_timeout=2"
    result = cli("msg", "migrate", "--to", url)
    one_line_error(result, 1, "postgresql://someone:***@/team", "the messages server failed")
    assert "s3cret-pw" not in result.stderr + result.stdout
