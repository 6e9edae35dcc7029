"""Messaging across real processes: concurrent writers, waiting for mail, the command line; every test
on both engines (``messages_url``: SQLite, and a real PostgreSQL server), and what only a server
brings (its URL, its failures) at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dev_sessions.messaging.store import MessageStore, open_store, store_for
from tests.conftest import ROOT, SLOW, DevSessions, eventually

pytestmark = pytest.mark.usefixtures("messages_url")

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from dev_sessions.messaging.store import open_store
    where = sys.argv[1]
    store = open_store(where if "://" in where else Path(where))
    for n in range(int(sys.argv[3])):
        store.send(sys.argv[2], {"inbox": "mailbox"}, f"{sys.argv[2]} #{n}")
    """
)


def _where(messages_url: str | None, tmp_path: Path) -> str:
    return messages_url or str(tmp_path / "messages.db")


def _open(where: str) -> MessageStore:
    return open_store(where if "://" in where else Path(where))


def test_concurrent_writers_lose_nothing(tmp_path: Path, messages_url: str | None) -> None:
    where = _where(messages_url, tmp_path)
    _open(where).close()  # created once, so that the writers race on messages, not on the schema
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, where, f"w{n}", "200"], cwd=ROOT, stderr=subprocess.PIPE
        )
        for n in range(5)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=120 * SLOW)
        assert writer.returncode == 0, err
    store = _open(where)
    bodies = [m.body for m in store.inbox("inbox")]
    assert len(bodies) == 1000
    assert len(set(bodies)) == 1000
    for n in range(5):
        mine = [b for b in bodies if b.startswith(f"w{n} #")]
        assert mine == [f"w{n} #{i}" for i in range(200)], "each writer's messages keep their order"


def test_a_killed_writer_leaves_whole_messages_only(tmp_path: Path, messages_url: str | None) -> None:
    where = _where(messages_url, tmp_path)
    _open(where).close()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, where, "w", "100000"], cwd=ROOT)
    store = _open(where)
    eventually(lambda: store.last_id() >= 200)  # killed in the middle of its writing, not before
    writer.kill()
    writer.wait()
    ids = [m.id for m in store.inbox("inbox")]
    assert len(ids) >= 200
    assert all(len(store.receipts(i)) == 1 for i in ids[-50:]), "a message never loses its receipt"
    orphans = """SELECT count(*) FROM messages m
                 WHERE NOT EXISTS (SELECT 1 FROM receipts r WHERE r.message = m.id)"""
    assert store.db.execute(orphans).fetchone()[0] == 0, "no message without its receipt, anywhere"
    if store.engine == "sqlite":
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_msg_wait_wakes_on_a_send(cli: DevSessions) -> None:
    cli.ok("agents", "register", "listener")
    waiter = cli.start("msg", "wait", "--as", "listener", "--timeout", "30", "--json", debug=True)
    # It looked, found nothing, and blocks: what it prints later came from the send below.
    waiter.said("listener: waiting for a message")
    sent = cli.ok("msg", "send", "--to", "listener", "wake up").strip()
    result = waiter.finish()
    assert result.returncode == 0, result.stderr
    (message,) = json.loads(result.stdout)
    assert (message["id"], message["body"], message["from"]) == (int(sent), "wake up", "user")
    assert cli.ok("msg", "read", "--as", "listener", "--unread", "--json").strip() == "[]"


def test_msg_wait_times_out_with_124(cli: DevSessions) -> None:
    result = cli("msg", "wait", "--timeout", "0.3")
    assert result.returncode == 124
    assert result.stderr.strip() == "dev-sessions: user: no message within 0.3 s"


def test_unknown_recipient_is_refused_and_nothing_stored(cli: DevSessions) -> None:
    result = cli("msg", "send", "--to", "nobody", "hello?")
    assert result.returncode == 1  # no such thing: 1, like `send unknown-id`
    assert "nobody: no session, agent or space has that name" in result.stderr
    assert json.loads(cli.ok("msg", "feed", "--json")) == []


def test_a_conversation_between_outside_agents(cli: DevSessions) -> None:
    cli.ok("agents", "register", "alice")
    cli.ok("agents", "register", "bob")
    first = cli.ok(
        "msg",
        "send",
        "--to",
        "bob",
        "--from",
        "alice",
        "--priority",
        "high",
        "--metadata",
        '{"task": 7}',
        "ready?",
    ).strip()
    inbox = json.loads(cli.ok("msg", "read", "--as", "bob", "--unread", "--json"))
    assert [(m["from"], m["body"], m["priority"], m["metadata"]) for m in inbox] == [
        ("alice", "ready?", "high", {"task": 7})
    ]
    reply = cli.ok("msg", "reply", first, "--from", "bob", "yes").strip()
    thread = json.loads(cli.ok("msg", "thread", reply, "--json"))
    assert [m["body"] for m in thread] == ["ready?", "yes"]
    status = json.loads(cli.ok("msg", "status", first, "--json"))
    assert [(r["recipient"], r["state"]) for r in status["recipients"]] == [("bob", "read")]
    assert [m["body"] for m in json.loads(cli.ok("msg", "search", "ready", "--json"))] == ["ready?"]
    assert cli.ok("msg", "mark-read", "--all", "--as", "alice").strip() == "1 marked read"
    bad = cli("msg", "send", "--to", "bob", "--metadata", "[1]", "x")
    assert bad.returncode == 2 and "JSON object" in bad.stderr


def test_spaces_from_the_command_line(cli: DevSessions) -> None:
    for name in ("a", "b"):
        cli.ok("agents", "register", name)
    cli.ok("space", "create", "org", "-d", "everyone")
    cli.ok("space", "create", "team", "--parent", "org")
    cli.ok("space", "join", "team", "--as", "a")
    cli.ok("space", "join", "team", "--as", "b")
    assert cli.ok("space", "members", "team").split() == ["a", "b"]
    sent = cli.ok("space", "send", "team", "--from", "a", "ship it").strip()
    assert [r["recipient"] for r in json.loads(cli.ok("msg", "status", sent, "--json"))["recipients"]] == [
        "b"
    ]
    assert [m["body"] for m in json.loads(cli.ok("space", "read", "team", "--json"))] == ["ship it"]
    assert [s["name"] for s in json.loads(cli.ok("space", "list", "--json"))] == ["org", "team"]
    names = {row["name"] for row in json.loads(cli.ok("agents", "--json"))}
    assert {"a", "b", "user"} <= names
    cli.ok("agents", "heartbeat", "--as", "a", "--status", "reviewing")
    online = json.loads(cli.ok("agents", "--online", "--json"))
    assert {"name": "a", "kind": "agent", "status": "reviewing"}.items() <= next(
        r for r in online if r["name"] == "a"
    ).items()


def test_never_two_deliverers(cli: DevSessions) -> None:
    from dev_sessions.config import Settings
    from dev_sessions.messaging import deliver

    argv = [sys.executable, "-m", "dev_sessions.messaging.deliver"]
    first = subprocess.Popen(argv, cwd=ROOT)
    settings = Settings.from_env()
    eventually(lambda: deliver.running(settings))  # the first one holds the lock
    second = subprocess.Popen(argv, cwd=ROOT)
    assert second.wait(timeout=10 * SLOW) == 0, "the second one must leave at once"
    assert first.poll() is None, "while the first one carries on"
    assert deliver.ensure_deliverer(settings, os.environ) is False
    first.wait(timeout=30 * SLOW)  # nothing to deliver: it goes after its linger
    assert not deliver.running(settings)


def test_work_queued_while_the_deliverer_stops_is_not_lost(
    cli: DevSessions, monkeypatch: pytest.MonkeyPatch, messages_url: str | None
) -> None:
    """The deliverer has found nothing left, but still holds its lock when a message is queued: the
    sender finds "a deliverer runs" and starts none. That deliverer must take the message itself.

    On a server shared by several machines a session unknown here is another machine's: the message
    stays queued for that machine's deliverer, and this one does not go on for it."""
    import logging

    from dev_sessions.config import Settings
    from dev_sessions.messaging import deliver

    monkeypatch.setenv("DEV_SESSIONS_DELIVERER_LINGER", "0.1")
    settings = Settings.from_env()
    real_run = deliver.Deliverer.run
    runs: list[int] = []

    def run(self: deliver.Deliverer) -> None:
        real_run(self)
        runs.append(len(runs) + 1)
        if len(runs) == 1:  # between its last look and letting go: the race
            queued = self.store.send("me", {"ghost": "conversation"}, "late")
            assert deliver.ensure_deliverer(settings, os.environ) is False  # "one runs": none started
            runs.append(queued.id)

    monkeypatch.setattr(deliver.Deliverer, "run", run)
    handlers = list(logging.getLogger("dev_sessions").handlers)
    try:
        deliver.main()
    finally:
        logging.getLogger("dev_sessions").handlers = handlers
    (receipt,) = store_for(settings).receipts(runs[1])
    assert not deliver.running(settings)
    log = (settings.home / "deliverer.log").read_text()
    if messages_url is None:
        assert len(runs) == 3, runs  # it looked again, and went on
        assert (receipt.state, receipt.reason) == ("failed", "no session named ghost any more")
        assert "work came in while stopping; going on" in log
    else:
        assert len(runs) == 2, runs  # it looked again, and left the message to the machine of ghost
        assert (receipt.state, receipt.reason) == ("queued", None)
        assert "going on" not in log


def bodies(out: str) -> list[str]:
    return [m["body"] for m in json.loads(out)]


def test_a_space_message_reaches_its_members_not_sub_spaces(cli: DevSessions) -> None:
    for name in ("lead", "dev", "intern"):
        cli.ok("agents", "register", name)
    cli.ok("space", "create", "org")
    cli.ok("space", "create", "team", "--parent", "org")
    cli.ok("space", "join", "org", "--as", "lead")
    cli.ok("space", "join", "org", "--as", "dev")
    cli.ok("space", "join", "team", "--as", "dev")
    cli.ok("space", "join", "team", "--as", "intern")  # in the sub-space only
    sent = cli.ok("space", "send", "org", "--from", "lead", "all hands at 3").strip()
    receipts = json.loads(cli.ok("msg", "status", sent, "--json"))["recipients"]
    assert [r["recipient"] for r in receipts] == ["dev"]
    assert bodies(cli.ok("msg", "read", "--as", "dev", "--json")) == ["all hands at 3"]
    assert bodies(cli.ok("msg", "read", "--as", "intern", "--json")) == []
    assert bodies(cli.ok("space", "read", "team", "--json")) == []


def test_spaces_nest_three_levels_through_the_command_line(cli: DevSessions) -> None:
    cli.ok("space", "create", "org")
    cli.ok("space", "create", "team", "--parent", "org")
    cli.ok("space", "create", "squad", "--parent", "team")
    too_deep = cli("space", "create", "pair", "--parent", "squad")
    assert too_deep.returncode == 2
    assert "space pair: spaces nest at most 3 levels deep" in too_deep.stderr
    listed = {s["name"]: s["parent"] for s in json.loads(cli.ok("space", "list", "--json"))}
    assert listed == {"org": None, "team": "org", "squad": "team"}


def test_leaving_a_space(cli: DevSessions) -> None:
    for name in ("a", "b"):
        cli.ok("agents", "register", name)
    cli.ok("space", "create", "crew")
    cli.ok("space", "join", "crew", "--as", "a")
    cli.ok("space", "join", "crew", "--as", "b")
    assert cli.ok("space", "leave", "crew", "--as", "b").strip() == "b left crew"
    assert cli.ok("space", "leave", "crew", "--as", "b").strip() == "b was not in crew"
    assert cli.ok("space", "members", "crew").split() == ["a"]
    sent = cli.ok("space", "send", "crew", "--from", "user", "still there?").strip()
    receipts = json.loads(cli.ok("msg", "status", sent, "--json"))["recipients"]
    assert [r["recipient"] for r in receipts] == ["a"]


def test_msg_wait_peek_leaves_the_message_unread(cli: DevSessions) -> None:
    cli.ok("agents", "register", "reader")
    cli.ok("msg", "send", "--to", "reader", "look but do not touch")
    peeked = cli.ok("msg", "wait", "--as", "reader", "--peek", "--timeout", "10", "--json")
    assert bodies(peeked) == ["look but do not touch"]
    assert bodies(cli.ok("msg", "read", "--as", "reader", "--unread", "--json")) == ["look but do not touch"]
    taken = cli.ok("msg", "wait", "--as", "reader", "--timeout", "10", "--json")
    assert bodies(taken) == ["look but do not touch"]
    assert bodies(cli.ok("msg", "read", "--as", "reader", "--unread", "--json")) == []


def test_msg_read_marks_read_only_when_asked(cli: DevSessions) -> None:
    cli.ok("agents", "register", "reader")
    cli.ok("msg", "send", "--to", "reader", "one")
    assert bodies(cli.ok("msg", "read", "--as", "reader", "--json")) == ["one"]
    assert bodies(cli.ok("msg", "read", "--as", "reader", "--unread", "--json")) == ["one"]
    assert bodies(cli.ok("msg", "read", "--as", "reader", "--mark-read", "--json")) == ["one"]
    assert bodies(cli.ok("msg", "read", "--as", "reader", "--unread", "--json")) == []
    assert bodies(cli.ok("msg", "read", "--as", "reader", "--json")) == ["one"]


def test_msg_read_since_and_limit(cli: DevSessions) -> None:
    cli.ok("agents", "register", "reader")
    ids = [cli.ok("msg", "send", "--to", "reader", f"number {n}").strip() for n in range(4)]
    second = json.loads(cli.ok("msg", "thread", ids[1], "--json"))[0]["createdAt"]
    since = bodies(cli.ok("msg", "read", "--as", "reader", "--since", second, "--json"))
    assert since == ["number 1", "number 2", "number 3"]
    assert len(bodies(cli.ok("msg", "read", "--as", "reader", "--since", "1h", "--json"))) == 4
    assert bodies(cli.ok("msg", "read", "--as", "reader", "--since", "2099-01-01T00:00:00Z", "--json")) == []
    # --limit: the newest N, still oldest first.
    assert bodies(cli.ok("msg", "read", "--as", "reader", "--limit", "2", "--json")) == [
        "number 2",
        "number 3",
    ]
    bad = cli("msg", "read", "--as", "reader", "--limit", "0")
    assert bad.returncode == 2 and "--limit must be at least 1" in bad.stderr


def test_msg_feed_since(cli: DevSessions) -> None:
    cli.ok("agents", "register", "a")
    first = cli.ok("msg", "send", "--to", "a", "early").strip()
    cli.ok("msg", "send", "--to", "a", "late")
    cli.ok("msg", "send", "--to", "user", "--from", "a", "back to you")
    created = json.loads(cli.ok("msg", "thread", first, "--json"))[0]["createdAt"]
    assert bodies(cli.ok("msg", "feed", "--json")) == ["early", "late", "back to you"]
    later = json.loads(cli.ok("msg", "feed", "--json"))[1]["createdAt"]
    assert bodies(cli.ok("msg", "feed", "--since", later, "--json")) == ["late", "back to you"]
    assert bodies(cli.ok("msg", "feed", "--since", created, "--json")) == ["early", "late", "back to you"]
    assert bodies(cli.ok("msg", "feed", "--since", "2099-01-01T00:00:00Z", "--json")) == []


def test_msg_send_reply_to_joins_the_thread(cli: DevSessions) -> None:
    cli.ok("agents", "register", "alice")
    question = cli.ok("msg", "send", "--to", "alice", "which branch?").strip()
    answer = cli.ok("msg", "send", "--to", "user", "--from", "alice", "--reply-to", question, "main").strip()
    thread = json.loads(cli.ok("msg", "thread", answer, "--json"))
    assert [(m["id"], m["body"], m["replyTo"]) for m in thread] == [
        (int(question), "which branch?", None),
        (int(answer), "main", int(question)),
    ]
    # Answering a message is reading it.
    assert bodies(cli.ok("msg", "read", "--as", "alice", "--unread", "--json")) == []
    missing = cli("msg", "send", "--to", "alice", "--reply-to", "9999", "hm")
    assert (missing.returncode, missing.stderr) == (1, "dev-sessions: message 9999: no such message\n")
    assert len(json.loads(cli.ok("msg", "feed", "--json"))) == 2, "nothing stored for a bad reply"


def test_msg_mark_read_by_id(cli: DevSessions) -> None:
    cli.ok("agents", "register", "reader")
    ids = [cli.ok("msg", "send", "--to", "reader", f"m{n}").strip() for n in range(3)]
    assert cli.ok("msg", "mark-read", ids[0], ids[2], "--as", "reader").strip() == "2 marked read"
    assert bodies(cli.ok("msg", "read", "--as", "reader", "--unread", "--json")) == ["m1"]
    states = {
        mid: json.loads(cli.ok("msg", "status", mid, "--json"))["recipients"][0]["state"] for mid in ids
    }
    assert states == {ids[0]: "read", ids[1]: "delivered", ids[2]: "read"}
