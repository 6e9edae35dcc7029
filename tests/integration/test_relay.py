"""Messages to and from sessions on a remote host, through a real sshd (tests/fakes/sshd.py).

The sessions here are records only (no agent runs: the end-to-end tests in tests/e2e/test_hosts.py
have real ones); what is checked is the messaging between the two stores: a message to a session on
the host is relayed into the host's store (for the host's deliverer), its state is the host's, and
what the session there sends back is brought here by ``msg read`` and ``msg wait``, once.

Every test runs on each engine (``messages_url``): both sides on SQLite, then both on PostgreSQL (a
database each on the tests' server: two stores, as two machines that do not share one). The sides
only talk through ssh, so the engine of one does not change the other's code: these two runs put
both sides' code on both engines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev_sessions.config import Settings
from dev_sessions.messaging.messenger import Messenger
from dev_sessions.store import Session, SessionStore
from tests.conftest import DevSessions, serving_sshd
from tests.fakes.postgres import Postgres
from tests.fakes.sshd import ALIAS, UNREACHABLE, Sshd

SID = "fizz-top"


@pytest.fixture
def sshd(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, messages_url: str | None, request: pytest.FixtureRequest
) -> Iterator[Sshd]:
    """The ``sshd`` of tests/conftest.py, the host's store on the engine of this side's
    (``messages_url``, set for every command run here): on PostgreSQL, a database of its own."""
    if messages_url is None:
        with serving_sshd(isolated, monkeypatch) as running:
            yield running
        return
    server: Postgres = request.getfixturevalue("postgres_server")
    host_url = server.database()
    with serving_sshd(
        isolated, monkeypatch, extra=lambda _: {"DEV_SESSIONS_MESSAGES_URL": host_url}
    ) as running:
        yield running  # stopped with every process of the host's, its deliverer too
        for home in (Settings.from_env().home, running.remote.state):
            assert not (home / "messages.db").exists(), f"{home}: a local store on a server's run"
    server.drop(host_url)


def record(home: Path, session: Session) -> None:
    with SessionStore(home / "sessions.json").transaction() as doc:
        doc.put(session)


@pytest.fixture
def remote_session(sshd: Sshd) -> str:
    """``fizz-top``: a session on ``remote-box`` made by ``user`` here (as ``create --host`` records it
    on both sides); no agent runs in it, so the host's deliverer queues what it gets."""
    there = Session(id=SID, internal_id="", cli="claude", path=str(sshd.remote.home), parent="user")
    record(sshd.remote.state, there)
    record(Settings.from_env().home, there.evolve(host=ALIAS))
    return SID


def host_messenger(sshd: Sshd) -> Messenger:
    """The host's own messaging, as a session there uses it (its store, its settings)."""
    return Messenger(Settings.from_env({**sshd.remote.environ, "DEV_SESSIONS_DELIVERER_LINGER": "0"}))


def status(cli: DevSessions, message_id: str) -> dict[str, object]:
    (only,) = json.loads(cli.ok("msg", "status", message_id, "--json"))["recipients"]
    return dict(only)


def test_a_message_to_a_remote_session_is_stored_on_its_host_and_its_state_is_the_hosts(
    cli: DevSessions, sshd: Sshd, remote_session: str
) -> None:
    body = "rerun the tests\n\ttabs, 'quotes' and $(not a command) \u2603"
    mid = cli.ok("msg", "send", "--to", remote_session, "--priority", "high", body).strip()
    there = host_messenger(sshd)
    (got,) = there.store.inbox(remote_session)
    assert (got.sender, got.body, got.priority) == ("user", body, "high")
    assert got.metadata is not None and got.metadata["relayed"]["id"] == int(mid)
    receipt = status(cli, mid)
    # Its state is the host's: no agent runs in that session, so the host's deliverer could not put it
    # in, and says why; the reason here names the host and the message there first.
    (there_receipt,) = there.store.receipts(got.id)
    assert receipt["via"] == "host" and receipt["state"] == there_receipt.state == "failed"
    assert receipt["reason"] == f"on {ALIAS} as message {got.id}: {there_receipt.reason}"
    assert "its tmux session is gone" in str(there_receipt.reason)
    text = cli.ok("msg", "status", mid)
    assert f"{remote_session}: failed: on {ALIAS} as message {got.id}: " in text
    # The sender is known on the host from now on: the session can write to it by name.
    assert there.known("user") == "agent"


def test_answers_from_the_remote_session_come_back_once_and_replies_thread_on_both_sides(
    cli: DevSessions, sshd: Sshd, remote_session: str
) -> None:
    mid = int(cli.ok("msg", "send", "--to", remote_session, "what is the answer?").strip())
    there = host_messenger(sshd)
    (asked,) = there.store.inbox(remote_session)
    # The session on the host answers (`msg reply`), and also writes to its parent, who is here.
    answered = there.reply(asked.id, "42", sender=remote_session)
    there.send("parent", "and I am done", sender=remote_session)
    there.send("user", "not for you: written by someone else on the host", sender="someone-there")
    read = json.loads(cli.ok("msg", "read", "--json"))
    assert [(m["from"], m["body"]) for m in read] == [
        (remote_session, "42"),
        (remote_session, "and I am done"),
    ]
    reply, done = read
    assert reply["replyTo"] == mid and reply["thread"] == mid  # the same thread here as there
    assert reply["metadata"]["host"] == ALIAS and reply["metadata"]["remoteId"] == answered.id
    assert done["replyTo"] is None and done["thread"] == done["id"]  # a new message, its own thread
    # Copied once, and read on the host (only ours: the host's own mail stays unread there).
    assert json.loads(cli.ok("msg", "read", "--json")) == read
    assert [m.body for m in there.store.inbox("user", unread=True)] == [
        "not for you: written by someone else on the host"
    ]
    # A reply here goes back to the session there, answering its message there.
    answer = cli.ok("msg", "reply", str(reply["id"]), "thanks").strip()
    (last,) = [m for m in there.store.inbox(remote_session) if m.body == "thanks"]
    assert last.reply_to == reply["metadata"]["remoteId"] and last.sender == "user"
    assert str(status(cli, answer)["reason"]).startswith(f"on {ALIAS} as message {last.id}")


def test_msg_wait_brings_an_answer_from_the_host_while_it_waits(
    cli: DevSessions, sshd: Sshd, remote_session: str
) -> None:
    waiting = cli.start("msg", "wait", "--timeout", "60", "--json", debug=True)
    waiting.said("user: waiting for a message")  # it has looked on the host once, and found nothing
    host_messenger(sshd).send("parent", "finished", sender=remote_session)
    done = waiting.finish(60)
    assert done.returncode == 0, done.stderr
    (message,) = json.loads(done.stdout)
    assert (message["from"], message["body"], message["metadata"]["host"]) == (
        remote_session,
        "finished",
        ALIAS,
    )


def test_a_host_that_does_not_answer_keeps_the_message_and_says_so_in_one_line(
    cli: DevSessions, sshd: Sshd
) -> None:
    record(
        Settings.from_env().home,
        Session(id="buzz-low", internal_id="", cli="claude", path="/", host=UNREACHABLE),
    )
    sent = cli("msg", "send", "--to", "buzz-low", "hello over there")
    assert sent.returncode == 0
    mid = sent.stdout.strip()
    assert sent.stderr.count("\n") == 1 and f"{UNREACHABLE}: no ssh connection" in sent.stderr
    assert sent.stderr.startswith(f"message {mid} to buzz-low: not delivered: {UNREACHABLE}: ")
    assert sent.stderr.endswith("; retrying in the background\n")
    receipt = status(cli, mid)
    assert (receipt["state"], receipt["via"], receipt["retrying"]) == ("failed", "host", True)
    # Reading here does not hang on that host, and still shows what is here.
    cli.ok("msg", "send", "--to", "user", "a local one")
    assert [m["body"] for m in json.loads(cli.ok("msg", "read", "--json"))] == ["a local one"]


def test_a_session_gone_from_its_host_fails_the_message_for_good(
    cli: DevSessions, sshd: Sshd, remote_session: str
) -> None:
    with SessionStore(sshd.remote.state / "sessions.json").transaction() as doc:
        doc.sessions.pop(remote_session)
    sent = cli("msg", "send", "--to", remote_session, "anyone there?")
    assert sent.returncode == 0 and sent.stderr.count("\n") == 1, sent.stderr
    receipt = status(cli, sent.stdout.strip())
    assert (receipt["state"], receipt["retrying"]) == ("failed", False)
    assert str(receipt["reason"]).startswith(f"{ALIAS}: ")
