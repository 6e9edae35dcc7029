"""Busy writers on a PostgreSQL store, against a real server: a write that the server rolled back for
another one's sake (a deadlock, a serialization failure) or whose connection was lost before its COMMIT
went out is run again; one whose connection was lost after (during COMMIT, or a send's one statement)
is not, since it may have been done, and it says so in one line: nothing is stored twice.

The rivals are the test's own connections (psycopg); the store's backends are found by their pid."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from dev_sessions.errors import MessagesUnavailable
from dev_sessions.messaging.postgres import WRITE_LOCK, PostgresMessageStore
from dev_sessions.messaging.store import open_store
from tests.conftest import SLOW, eventually
from tests.fakes.postgres import Postgres, binaries, running_postgres


@pytest.fixture
def pg_url(postgres_server: Postgres) -> Iterator[str]:
    url = postgres_server.database()
    yield url
    postgres_server.drop(url)


@pytest.fixture
def admin(postgres_server: Postgres) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    with psycopg.connect(postgres_server.url("postgres"), autocommit=True) as connection:
        yield connection


@pytest.fixture
def caught(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="dev_sessions.messaging.postgres")
    return caplog


class Call(threading.Thread):
    """A store call running on its own, to be blocked by the test's rivals."""

    def __init__(self, call: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self.call = call
        self.result: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.call()
        except BaseException as err:  # handed to the test
            self.error = err

    def outcome(self) -> object:
        self.join(60 * SLOW)
        assert not self.is_alive(), "the call did not end"
        if self.error is not None:
            raise self.error
        return self.result


def _waits(admin: psycopg.Connection[tuple[Any, ...]], pid: int, event: str) -> bool:
    row = admin.execute("SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row is not None and row[0] == event


Admin = psycopg.Connection[tuple[Any, ...]]


def _store_waiting(admin: Admin, store: PostgresMessageStore, event: str) -> int:
    """The store's backend, once it waits on ``event``."""
    pid = store.server.pg.backend_pid
    eventually(lambda: _waits(admin, pid, event))
    return pid


def test_a_write_chosen_to_break_a_deadlock_is_run_again(
    pg_url: str, admin: psycopg.Connection[tuple[Any, ...]], caught: pytest.LogCaptureFixture
) -> None:
    store = open_store(pg_url)
    assert isinstance(store, PostgresMessageStore)
    sent = store.send("user", {"agent": "conversation"}, "hello")
    with (
        psycopg.connect(pg_url, autocommit=True) as holder,
        psycopg.connect(pg_url) as rival,
    ):
        # The rival holds the receipt's row and waits for the write lock; the store then takes the lock
        # and waits for the row: the store waited last, so the server's check rolls it back.
        holder.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK,))
        rival.execute("SET deadlock_timeout = '10min'")  # never the rival's check
        rival.execute("UPDATE receipts SET reason = 'rival' WHERE message = %s", (sent.id,))
        call = Call(lambda: store.delivered(sent.id, "agent"))
        call.start()
        _store_waiting(admin, store, "advisory")
        rival_pid = rival.info.backend_pid
        lock = Call(lambda: rival.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,)))
        lock.start()
        eventually(lambda: _waits(admin, rival_pid, "advisory"))
        holder.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK,))
        lock.outcome()  # the store's transaction was rolled back: its lock is free
        rival.commit()
        call.outcome()
    receipt = store.receipt(sent.id, "agent")
    assert receipt is not None and (receipt.state, receipt.reason) == ("delivered", "rival")
    assert "deadlock detected" in caught.text and "trying again" in caught.text
    store.close()


def test_a_send_the_server_could_not_serialize_is_run_again(
    pg_url: str, admin: psycopg.Connection[tuple[Any, ...]], caught: pytest.LogCaptureFixture
) -> None:
    # A server whose transactions are REPEATABLE READ: a send's statement sees the tables as they were
    # when it began, before it waited for the write lock.
    store = open_store(pg_url + "&options=-c%20default_transaction_isolation%3Drepeatable%5C%20read")
    assert isinstance(store, PostgresMessageStore)
    question = store.send("user", {"agent": "mailbox"}, "question")
    with psycopg.connect(pg_url) as rival:
        rival.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        rival.execute("UPDATE receipts SET reason = 'rival' WHERE message = %s", (question.id,))
        # The answer marks the question read: the row the rival changes meanwhile.
        call = Call(lambda: store.send("agent", {"user": "mailbox"}, "answer", reply_to=question.id))
        call.start()
        _store_waiting(admin, store, "advisory")
        rival.commit()
        answer = call.outcome()
    assert [m.body for m in store.inbox("user")] == ["answer"], "stored once"
    receipt = store.receipt(question.id, "agent")
    assert receipt is not None and (receipt.state, receipt.reason) == ("read", "rival")
    assert "could not serialize access" in caught.text
    assert answer is not None
    store.close()


def test_a_write_whose_connection_is_lost_before_commit_is_run_again(
    pg_url: str, admin: psycopg.Connection[tuple[Any, ...]], caught: pytest.LogCaptureFixture
) -> None:
    store = open_store(pg_url)
    assert isinstance(store, PostgresMessageStore)
    with psycopg.connect(pg_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK,))
        call = Call(lambda: store.create_space("team", None, "", "user"))
        call.start()
        first = _store_waiting(admin, store, "advisory")
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        # Connected again, in the same transaction from its start, waiting for the lock again.
        eventually(lambda: store.server.pg.backend_pid not in (0, first))  # 0: being made
        _store_waiting(admin, store, "advisory")
        holder.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK,))
        call.outcome()
    assert [s.name for s in store.spaces()] == ["team"]
    assert "terminating connection" in caught.text or "closed the connection" in caught.text
    store.close()


def test_a_send_whose_connection_is_lost_while_it_runs_is_not_sent_again(
    pg_url: str, admin: psycopg.Connection[tuple[Any, ...]]
) -> None:
    store = open_store(pg_url)
    assert isinstance(store, PostgresMessageStore)
    with psycopg.connect(pg_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK,))
        call = Call(lambda: store.send("user", {"agent": "mailbox"}, "once"))
        call.start()
        admin.execute("SELECT pg_terminate_backend(%s)", (_store_waiting(admin, store, "advisory"),))
        with pytest.raises(MessagesUnavailable, match="the message may have been stored"):
            call.outcome()
        holder.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK,))
    assert store.inbox("agent") == [], "cut off before it was stored, and never sent again"
    store.close()


@pytest.fixture
def unreplicated(postgres_server: Postgres) -> Iterator[tuple[Postgres, str]]:
    """A server of the test's own whose every commit of a session with ``synchronous_commit=on`` waits
    for a standby that never comes (committed, not yet acknowledged: a connection lost there leaves
    the change made and its maker not told); the URL of a database there for such a session."""
    bindir = binaries()
    assert bindir is not None  # postgres_server needed it
    with running_postgres(bindir) as server:
        url = server.database()
        open_store(url).close()  # its tables made before commits wait
        with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
            admin.execute("SELECT pg_reload_conf()")
        yield server, url + "&options=-c%20synchronous_commit%3Don"


def _cut_at_commit(server: Postgres, store: PostgresMessageStore, call: Call) -> None:
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        call.start()
        admin.execute("SELECT pg_terminate_backend(%s)", (_store_waiting(admin, store, "SyncRep"),))
        # Commits go through again: whatever is sent once more now lands.
        admin.execute("ALTER SYSTEM RESET synchronous_standby_names")
        admin.execute("SELECT pg_reload_conf()")


def test_a_send_cut_off_after_its_commit_says_it_may_be_stored_and_is_stored_once(
    unreplicated: tuple[Postgres, str],
) -> None:
    server, url = unreplicated
    store = open_store(url)
    assert isinstance(store, PostgresMessageStore)
    call = Call(lambda: store.send("user", {"agent": "mailbox"}, "once"))
    _cut_at_commit(server, store, call)
    with pytest.raises(MessagesUnavailable) as raised:
        call.outcome()
    line = str(raised.value)
    assert "may have been stored" in line and "msg feed" in line and "\n" not in line
    assert [m.body for m in open_store(url).inbox("agent")] == ["once"], "stored, once"
    store.close()


def test_a_write_cut_off_during_its_commit_says_it_may_be_done_and_is_done_once(
    unreplicated: tuple[Postgres, str],
) -> None:
    server, url = unreplicated
    store = open_store(url)
    assert isinstance(store, PostgresMessageStore)
    call = Call(lambda: store.create_space("team", None, "", "user"))
    _cut_at_commit(server, store, call)
    with pytest.raises(MessagesUnavailable, match="it may have been done"):
        call.outcome()
    assert [s.name for s in open_store(url).spaces()] == ["team"]
    store.close()
