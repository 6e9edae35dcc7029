"""Issue 16's messaging extras through the real command line, on both engines (``messages_url``:
SQLite, and a real PostgreSQL server): reactions, pins, conversations, prune and the automatic
retention, context, stats, and names held by agent sessions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dev_sessions.messaging.store import MessageStore
from dev_sessions.store import Session, SessionStore
from tests.conftest import ROOT, SLOW, DevSessions, one_line_error

pytestmark = pytest.mark.usefixtures("messages_url")

DAY_MS = 86_400_000


def _agents(cli: DevSessions, *names: str) -> None:
    for name in names:
        cli.ok("agents", "register", name)


def _age(store: MessageStore, message_id: str | int, days: float) -> None:
    """Make a message ``days`` old (as if sent then): the arrangement a prune is tested on."""
    store.db.execute(
        "UPDATE messages SET created_ms = created_ms - ? WHERE id = ?", (int(days * DAY_MS), int(message_id))
    )


def _add_session(sid: str, parent: str | None, description: str = "") -> None:
    path = Path(os.environ["DEV_SESSIONS_HOME"]) / "sessions.json"
    with SessionStore(path).transaction() as doc:
        doc.put(Session(id=sid, internal_id="u-" + sid, cli="claude", path="/tmp", parent=parent,
                        description=description))  # fmt: skip


def test_reactions(cli: DevSessions) -> None:
    _agents(cli, "alice", "bob")
    sent = cli.ok("msg", "send", "--to", "bob", "--from", "alice", "deployed").strip()
    assert cli.ok("msg", "react", sent, "👍", "--as", "bob").strip() == f"bob reacted 👍 to {sent}"
    again = json.loads(cli.ok("msg", "react", sent, "👍", "--as", "bob", "--json"))
    assert again == {"message": int(sent), "emoji": "👍", "agent": "bob", "reacted": False}
    cli.ok("msg", "react", sent, "👍", "--as", "alice")
    cli.ok("msg", "react", sent, ":tada:", "--as", "alice")
    assert json.loads(cli.ok("msg", "reactions", sent, "--json")) == [
        {"emoji": "👍", "count": 2, "agents": ["bob", "alice"]},
        {"emoji": ":tada:", "count": 1, "agents": ["alice"]},
    ]
    assert cli.ok("msg", "reactions", sent).splitlines() == ["👍  2  bob, alice", ":tada:  1  alice"]
    assert (
        cli.ok("msg", "unreact", sent, ":tada:", "--as", "alice").strip()
        == f"alice took back :tada: on {sent}"
    )
    gone = json.loads(cli.ok("msg", "unreact", sent, ":tada:", "--as", "alice", "--json"))
    assert gone["removed"] is False
    assert [r["emoji"] for r in json.loads(cli.ok("msg", "reactions", sent, "--json"))] == ["👍"]
    # Bad input: one line each, nothing stored.
    one_line_error(cli("msg", "react", "9999", "👍"), 1, "message 9999: no such message")
    one_line_error(cli("msg", "reactions", "9999"), 1, "message 9999: no such message")
    one_line_error(cli("msg", "react", sent, "great"), 2, "'great' is not an emoji")
    one_line_error(cli("msg", "react", sent, ""), 2, "the reaction is empty")
    one_line_error(cli("msg", "react", sent, "\x1b[2J"), 2, "is not an emoji")
    one_line_error(cli("msg", "react", "forty-two", "👍"), 2, "'forty-two' is not a message id")
    assert [r["count"] for r in json.loads(cli.ok("msg", "reactions", sent, "--json"))] == [2]


def test_reactions_are_shown_wherever_the_message_is_read(cli: DevSessions) -> None:
    _agents(cli, "alice", "bob", "carol")
    cli.ok("space", "create", "release")
    for name in ("alice", "bob"):
        cli.ok("space", "join", "release", "--as", name)
    asked = cli.ok("msg", "send", "--to", "bob", "--from", "alice", "ship it?").strip()
    answer = cli.ok("msg", "reply", asked, "--from", "bob", "shipped").strip()
    posted = cli.ok("space", "send", "release", "--from", "alice", "frozen").strip()
    cli.ok("msg", "react", answer, "👍", "--as", "alice")
    cli.ok("msg", "react", answer, "👍", "--as", "carol")
    cli.ok("msg", "react", answer, ":tada:", "--as", "alice")
    cli.ok("msg", "react", posted, "✅", "--as", "bob")
    said = [
        {"emoji": "👍", "count": 2, "agents": ["alice", "carol"]},
        {"emoji": ":tada:", "count": 1, "agents": ["alice"]},
    ]

    def by_id(*args: str) -> dict[int, object]:
        return {m["id"]: m.get("reactions") for m in json.loads(cli.ok(*args, "--json"))}

    assert by_id("msg", "thread", asked) == {int(asked): None, int(answer): said}
    assert by_id("msg", "read", "--as", "alice")[int(answer)] == said
    assert by_id("msg", "feed")[int(posted)] == [{"emoji": "✅", "count": 1, "agents": ["bob"]}]
    assert by_id("msg", "search", "shipped") == {int(answer): said}
    assert by_id("space", "read", "release", "--as", "bob") == {
        int(posted): [{"emoji": "✅", "count": 1, "agents": ["bob"]}]
    }
    text = cli.ok("msg", "thread", asked).splitlines()
    assert text[-2:] == ["    shipped", "  reactions: 👍 2 (alice, carol) · :tada: 1 (alice)"]
    assert not any("reactions" in line for line in text[:-1])  # none on the question
    cli.ok("msg", "unreact", posted, "✅", "--as", "bob")
    assert by_id("msg", "feed")[int(posted)] is None


def test_pins_of_a_space_and_of_a_conversation(cli: DevSessions) -> None:
    _agents(cli, "alice", "bob", "carol")
    cli.ok("space", "create", "release")
    for name in ("alice", "bob"):
        cli.ok("space", "join", "release", "--as", name)
    rules = cli.ok("space", "send", "release", "--from", "alice", "freeze at 17:00").strip()
    direct = cli.ok(
        "msg", "send", "--to", "bob", "--from", "alice", "the staging password is in vault"
    ).strip()
    other = cli.ok("msg", "send", "--to", "carol", "--from", "alice", "not bob's").strip()
    assert cli.ok("msg", "pin", rules, "--as", "alice").strip() == f"{rules} pinned"
    assert cli.ok("msg", "pin", rules, "--as", "bob").strip() == f"{rules} was pinned already"
    assert json.loads(cli.ok("msg", "pin", direct, "--as", "bob", "--json")) == {
        "message": int(direct),
        "pinned": True,
        "changed": True,
    }
    cli.ok("msg", "pin", other, "--as", "carol")
    in_space = json.loads(cli.ok("msg", "pinned", "--space", "release", "--json"))
    assert [(p["id"], p["body"], p["pinnedBy"]) for p in in_space] == [
        (int(rules), "freeze at 17:00", "alice")
    ]
    between = json.loads(cli.ok("msg", "pinned", "--with", "alice", "--as", "bob", "--json"))
    assert [p["id"] for p in between] == [int(direct)]
    mine = json.loads(cli.ok("msg", "pinned", "--as", "bob", "--json"))
    assert [p["id"] for p in mine] == [int(rules), int(direct)], "not carol's"
    text = cli.ok("msg", "pinned", "--space", "release")
    assert "freeze at 17:00" in text and "(pinned by alice " in text
    assert cli.ok("msg", "unpin", direct).strip() == f"{direct} unpinned"
    assert cli.ok("msg", "unpin", direct).strip() == f"{direct} was not pinned"
    assert json.loads(cli.ok("msg", "pinned", "--with", "alice", "--as", "bob", "--json")) == []
    one_line_error(cli("msg", "pin", "9999"), 1, "message 9999: no such message")
    one_line_error(cli("msg", "pinned", "--space", "nowhere"), 1, "space nowhere: no such space")
    one_line_error(cli("msg", "pinned", "--space", "release", "--with", "bob"), 2, "a space or a peer")


def test_conversations(cli: DevSessions) -> None:
    _agents(cli, "alice", "bob")
    cli.ok("space", "create", "team")
    for name in ("alice", "bob"):
        cli.ok("space", "join", "team", "--as", name)
    question = cli.ok("msg", "send", "--to", "bob", "--from", "alice", "lunch?").strip()
    cli.ok("msg", "reply", question, "--from", "bob", "yes, at 12")
    cli.ok("space", "send", "team", "--from", "alice", "standup moved\nto 10:30")
    found = json.loads(cli.ok("msg", "conversations", "--as", "bob", "--json"))
    assert [
        (c["kind"], c["name"], c["participants"], c["messages"], c["unread"], c["last"]["body"])
        for c in found
    ] == [
        ("space", "team", ["alice", "bob"], 1, 1, "standup moved\nto 10:30"),
        ("direct", "alice", ["alice", "bob"], 2, 0, "yes, at 12"),
    ]
    assert found[0]["last"]["state"] == "delivered", "the last message with the reader's own state"
    text = cli.ok("msg", "conversations", "--as", "alice").splitlines()
    assert text[0] == "team (space)  1 message(s)  [alice, bob]"
    assert text[1].startswith("    last: ") and text[1].endswith("from alice: standup moved")
    assert text[2] == "with bob  2 message(s), 1 unread  [alice, bob]"
    nobody = cli("msg", "conversations", "--as", "carol")
    assert (nobody.returncode, nobody.stdout, nobody.stderr) == (0, "", "no conversations\n")


def test_prune_keeps_pins_and_threads_and_the_search_index(
    cli: DevSessions, message_store: MessageStore
) -> None:
    _agents(cli, "worker")
    root = cli.ok("msg", "send", "--to", "worker", "ancient question").strip()
    reply = cli.ok("msg", "reply", root, "--from", "worker", "ancient answer").strip()
    later = cli.ok("msg", "send", "--to", "worker", "--reply-to", reply, "recent follow-up").strip()
    rules = cli.ok("msg", "send", "--to", "worker", "ancient rules").strip()
    cli.ok("msg", "pin", rules)
    cli.ok("msg", "react", root, "👍", "--as", "worker")
    for message in (root, reply, rules):
        _age(message_store, message, 45)
    dry = json.loads(cli.ok("msg", "prune", "--older-than", "30d", "--dry-run", "--json"))
    assert {k: v for k, v in dry.items() if k != "before"} == {
        "pruned": 2,
        "keptPinned": 1,
        "detached": 1,
        "dryRun": True,
    }
    assert len(json.loads(cli.ok("msg", "feed", "--json"))) == 4, "a dry run deletes nothing"
    said = cli.ok("msg", "prune", "--older-than", "30d").strip()
    assert said.startswith("pruned 2 message(s) from before ")
    assert said.endswith(", kept 1 pinned, 1 reply kept without its parent")
    assert [m["body"] for m in json.loads(cli.ok("msg", "feed", "--json"))] == [
        "recent follow-up",
        "ancient rules",
    ]
    thread = json.loads(cli.ok("msg", "thread", later, "--json"))
    assert [(m["body"], m["replyTo"], m["thread"]) for m in thread] == [("recent follow-up", None, int(root))]
    assert json.loads(cli.ok("msg", "search", "ancient", "--json"))[0]["body"] == "ancient rules"
    assert len(json.loads(cli.ok("msg", "search", "ancient", "--json"))) == 1, "the index follows the prune"
    one_line_error(cli("msg", "thread", root), 1, f"message {root}: no such message")
    one_line_error(cli("msg", "reactions", root), 1, f"message {root}: no such message")
    again = json.loads(cli.ok("msg", "prune", "--older-than", "30d", "--json"))
    assert (again["pruned"], again["keptPinned"], again["dryRun"]) == (0, 1, False)
    for bad, why in (
        ("30 days", "'30 days' is not a duration"),
        ("0", "'0' is no age"),
        ("-1d", "not a duration"),
    ):
        one_line_error(cli("msg", "prune", "--older-than", bad), 2, "--older-than: ", why)


def test_the_automatic_retention_of_config_json(
    cli: DevSessions, message_store: MessageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = Path(os.environ["DEV_SESSIONS_HOME"])
    _agents(cli, "reader")
    state.mkdir(mode=0o700, exist_ok=True)  # on a server, nothing of the store is here
    (state / "config.json").write_text(json.dumps({"DEV_SESSIONS_MESSAGES_RETENTION": "7d"}))
    old = cli.ok("msg", "send", "--to", "reader", "from last month").strip()
    _age(message_store, old, 30)
    cli.ok("msg", "send", "--to", "reader", "today")
    assert len(json.loads(cli.ok("msg", "feed", "--json"))) == 2, "msg send and msg feed prune nothing"
    assert [m["body"] for m in json.loads(cli.ok("msg", "read", "--as", "reader", "--json"))] == ["today"]
    stamp = state / "retention.stamp"
    assert stamp.exists()
    # Within the hour nothing is pruned again; an hour later, it is.
    another = cli.ok("msg", "send", "--to", "reader", "from last week").strip()
    _age(message_store, another, 8)
    assert len(json.loads(cli.ok("msg", "read", "--as", "reader", "--json"))) == 2
    two_hours_ago = time.time() - 7200
    os.utime(stamp, (two_hours_ago, two_hours_ago))
    assert [m["body"] for m in json.loads(cli.ok("msg", "read", "--as", "reader", "--json"))] == ["today"]
    # The deliverer applies it too, as it runs (and a bad setting never stops it).
    third = cli.ok("msg", "send", "--to", "reader", "from the year before").strip()
    _age(message_store, third, 400)
    os.utime(stamp, (two_hours_ago, two_hours_ago))
    monkeypatch.setenv("DEV_SESSIONS_DELIVERER_LINGER", "0.1")
    deliverer = subprocess.run([sys.executable, "-m", "dev_sessions.messaging.deliver"], cwd=ROOT,
                               timeout=60 * SLOW, check=False)  # fmt: skip
    assert deliverer.returncode == 0
    assert [m["body"] for m in json.loads(cli.ok("msg", "feed", "--json"))] == ["today"]
    (state / "config.json").write_text(json.dumps({"DEV_SESSIONS_MESSAGES_RETENTION": "a month"}))
    one_line_error(cli("msg", "read"), 2, "DEV_SESSIONS_MESSAGES_RETENTION: 'a month' is not a duration")
    os.utime(stamp, (two_hours_ago, two_hours_ago))
    deliverer = subprocess.run([sys.executable, "-m", "dev_sessions.messaging.deliver"], cwd=ROOT,
                               timeout=60 * SLOW, check=False)  # fmt: skip
    assert deliverer.returncode == 0
    assert "retention: DEV_SESSIONS_MESSAGES_RETENTION: 'a month'" in (state / "deliverer.log").read_text()


def test_context_of_a_session_and_of_an_outside_agent(cli: DevSessions) -> None:
    _agents(cli, "boss")
    _add_session("fizz-top", "boss", "fix the flaky test")
    _add_session("buzz-mid", "fizz-top")
    cli.ok("space", "create", "team")
    cli.ok("space", "join", "team", "--as", "fizz-top")
    cli.ok("msg", "send", "--to", "boss", "--from", "user", "@fizz-top, the logs are in /tmp/ci")
    first = cli.ok("space", "send", "team", "--from", "boss", "read the CI logs").strip()
    latest = cli.ok("msg", "send", "--to", "fizz-top", "--from", "boss", "and report\nby noon").strip()
    found = json.loads(cli.ok("context", "--as", "fizz-top", "--json"))
    assert {k: found[k] for k in ("name", "kind", "parent", "cli", "description", "unread", "spaces")} == {
        "name": "fizz-top",
        "kind": "session",
        "parent": "boss",
        "cli": "claude",
        "description": "fix the flaky test",
        "unread": 2,
        "spaces": ["team"],
    }
    assert found["latestUnread"]["id"] == int(latest) != int(first)
    assert [m["body"] for m in found["mentions"]] == ["@fizz-top, the logs are in /tmp/ci"]
    assert (found["sessions"], found["leases"], found["focus"]) == (["buzz-mid"], [], None)
    text = cli.ok("context", "--as", "fizz-top").splitlines()
    assert text[:2] == ["you are fizz-top, a claude session on " + found["machine"] + ": fix the flaky test",
                        "parent: boss"]  # fmt: skip
    assert text[2] == f"unread: 2 (latest: {latest} from boss: and report; `dev-sessions msg read --unread`)"
    assert text[3:] == [
        "mentions: 1 lately",
        "  " + str(found["mentions"][0]["id"]) + " from user: @fizz-top, the logs are in /tmp/ci",
        "spaces: team",
        "your sessions: buzz-mid",
    ]
    boss = cli.ok("context", "--as", "boss").splitlines()
    assert boss[0].startswith("you are boss, an outside agent on ") and "parent" not in "".join(boss)
    one_line_error(cli("context", "--as", "no body"), 2, "'no body' is not a valid agent name")


def test_stats(cli: DevSessions, messages_url: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    _agents(cli, "a")
    _add_session("fizz-top", None)
    cli.ok("space", "create", "team")
    cli.ok("msg", "pin", cli.ok("msg", "send", "--to", "a", "one").strip())
    if messages_url is not None:  # a password in the URL is never shown (the tests' server trusts anyone)
        monkeypatch.setenv("DEV_SESSIONS_MESSAGES_URL", messages_url + "&password=s3cret-pw")
    found = json.loads(cli.ok("stats", "--json"))
    assert {k: found[k] for k in ("sessions", "agents", "messages", "unread", "spaces", "pinned")} == {
        "sessions": 1,
        "agents": 2,  # a, and user (who sent)
        "messages": 1,
        "unread": 1,
        "spaces": 1,
        "pinned": 1,
    }
    assert (found["projects"], found["leases"]) == (0, 0)
    text = cli.ok("stats")
    if messages_url is None:
        assert found["engine"] == "sqlite"
        assert found["store"] == str(Path(os.environ["DEV_SESSIONS_HOME"]) / "messages.db")
    else:
        assert found["engine"] == "postgres" and "password=***" in found["store"]
        assert "s3cret-pw" not in json.dumps(found) + text
    assert isinstance(found["schema"], int) and found["schema"] >= 5
    assert [line.split()[0] for line in text.splitlines()][:3] == ["sessions", "agents", "messages"]


def test_a_name_a_live_session_holds_is_not_taken_silently(
    cli: DevSessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_CODE_SESSION_ID", "one")
    assert cli.ok("agents", "register", "boss").strip() == "boss"
    assert cli.ok("agents", "register", "boss").strip() == "boss", "its own session again"
    monkeypatch.delenv("CLAUDE_CODE_SESSION_ID")
    monkeypatch.setenv("CODEX_THREAD_ID", "two")
    refused = cli("agents", "register", "boss")
    one_line_error(refused, 1, "boss: in use by session claude:one", "last seen ", "--takeover")
    one_line_error(cli("agents", "heartbeat", "--as", "boss"), 1, "in use by session claude:one")
    taken = cli("agents", "register", "boss", "--takeover", "--json")
    assert taken.returncode == 0 and taken.stderr == "boss: taken over from session claude:one\n"
    assert {k: json.loads(taken.stdout)[k] for k in ("session", "tookOverFrom")} == {
        "session": "codex:two",
        "tookOverFrom": "claude:one",
    }
    assert cli.ok("agents", "heartbeat", "--as", "boss", "--status", "planning").strip() == "boss"
    row = next(r for r in json.loads(cli.ok("agents", "--json")) if r["name"] == "boss")
    assert (row["session"], row["status"]) == ("codex:two", "planning")
    monkeypatch.delenv("CODEX_THREAD_ID")
    monkeypatch.setenv("DEV_SESSIONS_ID", "fizz-top")
    one_line_error(cli("agents", "register", "boss"), 1, "in use by session codex:two")
    assert cli.ok("agents", "heartbeat", "--as", "boss", "--takeover").strip() == "boss"
    assert json.loads(cli.ok("context", "--as", "boss", "--json"))["holder"] == "fizz-top"
    # Sending as the name is not registering it: it works, and the holder stays.
    monkeypatch.delenv("DEV_SESSIONS_ID")
    cli.ok("msg", "send", "--to", "user", "--from", "boss", "hello")
    assert json.loads(cli.ok("context", "--as", "boss", "--json"))["holder"] == "fizz-top"
