"""Messages on a PostgreSQL server shared by several machines: waiters told of new mail by the server
(LISTEN/NOTIFY) through lost connections and a restart, deliverers of two machines that never both
deliver a notice, and what a server that is down or two machines sending at once leave behind.

Two machines are two ``DEV_SESSIONS_HOME``s on one server; a deliverer here runs the real
``Deliverer`` with a scripted agent backend whose every paste is a line in a file both append to."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from dev_sessions.messaging.store import MessageStore, open_store
from dev_sessions.store import Session, SessionStore
from tests.conftest import ROOT, SLOW, DevSessions, eventually, one_line_error
from tests.fakes.postgres import Postgres, binaries, running_postgres


@pytest.fixture
def pg_url(postgres_server: Postgres, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new database on the worker's server, set as DEV_SESSIONS_MESSAGES_URL."""
    url = postgres_server.database()
    monkeypatch.setenv("DEV_SESSIONS_MESSAGES_URL", url)
    yield url
    postgres_server.drop(url)


@pytest.fixture
def own_server(postgres_server: Postgres) -> Iterator[Postgres]:
    """A server of this test's own, to stop and start again (the worker's is shared)."""
    bindir = binaries()
    assert bindir is not None  # postgres_server needed it
    with running_postgres(bindir) as server:
        yield server


def _admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url, autocommit=True)


def _database(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def test_msg_wait_is_woken_by_the_servers_notification(cli: DevSessions, pg_url: str) -> None:
    cli.ok("agents", "register", "listener")
    waiter = cli.start("msg", "wait", "--as", "listener", "--timeout", "60", debug=True)
    waiter.said("listener: waiting for a message")
    cli.ok("msg", "send", "--to", "listener", "wake up")  # another process, its own connection
    waiter.said("told of new mail for listener")
    result = waiter.finish()
    assert result.returncode == 0, result.stderr
    assert "wake up" in result.stdout


def test_mail_for_someone_else_does_not_make_a_waiter_look(cli: DevSessions, pg_url: str) -> None:
    for name in ("listener", "other"):
        cli.ok("agents", "register", name)
    waiter = cli.start("msg", "wait", "--as", "listener", "--timeout", "60", debug=True)
    waiter.said("listener: waiting for a message")
    cli.ok("msg", "send", "--to", "other", "not yours")
    cli.ok("msg", "send", "--to", "listener", "yours")
    waiter.said("told of new mail for listener")
    result = waiter.finish()
    assert result.returncode == 0, result.stderr
    assert "yours" in result.stdout and "not yours" not in result.stdout
    assert "told of new mail for other" not in result.stderr


def test_a_wait_whose_connections_are_killed_gets_what_came_in_the_gap(
    cli: DevSessions, pg_url: str, postgres_server: Postgres
) -> None:
    cli.ok("agents", "register", "listener")
    sender = open_store(pg_url)
    waiter = cli.start("msg", "wait", "--as", "listener", "--timeout", "120", debug=True)
    waiter.said("listener: waiting for a message")
    name = _database(pg_url)
    with _admin(postgres_server.url("postgres")) as admin:
        # A gap the waiter cannot close by itself: no new connection, then its own ones cut.
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            mine = sender.db.execute("SELECT pg_backend_pid()").fetchone()[0]
            killed = admin.execute(
                """SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
                   WHERE datname = %s AND pid <> %s AND application_name = 'dev-sessions'""",
                (name, mine),
            ).fetchone()
            assert killed is not None and killed[0] == 2, "the waiter's two connections"
            waiter.said("lost the connection told of new mail")
            sent = sender.send("user", {"listener": "mailbox"}, "sent in the gap")
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    waiter.said("connected again; catching up")
    result = waiter.finish(timeout=30)
    assert result.returncode == 0, result.stderr
    assert "sent in the gap" in result.stdout
    assert sender.receipts(sent.id)[0].state == "read"
    sender.close()


def test_msg_wait_outlives_a_server_restart_and_a_send_while_it_is_down_fails_whole(
    cli: DevSessions, own_server: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = own_server.database()
    monkeypatch.setenv("DEV_SESSIONS_MESSAGES_URL", url + "&connect_timeout=2")
    cli.ok("agents", "register", "listener")
    waiter = cli.start("msg", "wait", "--as", "listener", "--timeout", "120", debug=True)
    waiter.said("listener: waiting for a message")
    own_server.halt()
    waiter.said("lost the connection told of new mail")
    down = cli("msg", "send", "--to", "listener", "while the server is down")
    one_line_error(down, 1, "the messages server failed", "DEV_SESSIONS_MESSAGES_URL")
    assert not (Path(os.environ["DEV_SESSIONS_HOME"]) / "messages.db").exists(), "nothing written here"
    own_server.resume()
    sent = int(cli.ok("msg", "send", "--to", "listener", "after the restart").strip())
    result = waiter.finish(timeout=30)
    assert result.returncode == 0, result.stderr
    assert "after the restart" in result.stdout
    store = open_store(url)
    assert [m.body for m in store.inbox("listener")] == ["after the restart"], "the failed send left nothing"
    assert store.inbox("listener")[0].id == sent
    store.close()


DELIVERER = textwrap.dedent(
    """
    import logging, os, sys, time
    from dev_sessions.config import Settings
    from dev_sessions.messaging.deliver import Deliverer
    from dev_sessions.sessions import SessionManager
    from tests.fakes.backend import FakeBackend

    class Pasting(FakeBackend):
        # Every notice pasted is one line in a file all deliverers append to; with HOLD, the first
        # delivery stops (its receipt claimed, nothing pasted yet) until the process is killed.
        # Its sessions are live (idle), until the file GONE names exists: then they have exited.
        def status(self, session):
            from dev_sessions.backend import Status

            gone = os.path.exists(os.environ.get("GONE", "/nonexistent"))
            return Status("exited" if gone else "idle", source="tmux")

        def deliver(self, session, text, *, urgent=False, check=None):
            if os.environ.get("HOLD"):
                print("holding", flush=True)
                time.sleep(3600)
            verdict = check() if check is not None else "type"
            if verdict != "type":
                return verdict == "there"
            with open(sys.argv[1], "a") as pasted:
                pasted.write(f"{os.getpid()} {text.splitlines()[0]}\\n")
            time.sleep(0.05)  # a paste takes a while: the other deliverer looks meanwhile
            return True

    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(message)s")
    settings = Settings.from_env()
    deliverer = Deliverer(settings, os.environ)
    deliverer.manager = SessionManager(settings, backends={"claude": Pasting()})
    print("ready", flush=True)
    deliverer.run()
    """
)

SESSIONS = ("fizz-top", "buzz-low")

LIVE_DELIVERER = textwrap.dedent(
    """
    # The real deliverer (its lock, its log in its state directory), whose Claude sessions are live.
    from dev_sessions.backend import Status
    from dev_sessions.claude.backend import ClaudeBackend
    from dev_sessions.messaging import deliver

    ClaudeBackend.status = lambda self, session, live=None: Status("idle", source="tmux")
    deliver.main()
    """
)


def _machine(root: Path, name: str, url: str) -> dict[str, str]:
    """A machine's environment: its own state dir, knowing both sessions, on the shared server."""
    home = root / name
    home.mkdir(mode=0o700)
    with SessionStore(home / "sessions.json").transaction() as document:
        for sid in SESSIONS:
            document.put(Session(id=sid, internal_id=f"{sid}-uuid", cli="claude", path=str(root)))
    return {
        **os.environ,
        "DEV_SESSIONS_HOME": str(home),
        "DEV_SESSIONS_MESSAGES_URL": url,
        "DEV_SESSIONS_DELIVERER_LINGER": "1",
        "PYTHONPATH": str(ROOT),
    }


def _deliverer(env: dict[str, str], pasted: Path, hold: bool = False, **extra: str) -> subprocess.Popen[str]:
    environ = {**env, "HOLD": "1", **extra} if hold else {**env, **extra}
    process = subprocess.Popen(
        [sys.executable, "-c", DELIVERER, str(pasted)],
        cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stdout.readline() == "ready\n", process.stderr
    return process


def _pastes(pasted: Path) -> list[str]:
    """The notices pasted, as 'Message N ... for SESSION' (without the pasting pid)."""
    if not pasted.exists():
        return []
    return sorted(line.split(" ", 2)[2] for line in pasted.read_text().splitlines())


@contextlib.contextmanager
def _reaped(*processes: subprocess.Popen[str]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)


def _states(store: MessageStore, sent: list[int]) -> list[str]:
    return sorted(r.state for m in sent for r in store.receipts(m))


def test_two_machines_deliverers_deliver_each_notice_once(pg_url: str, tmp_path: Path) -> None:
    store = open_store(pg_url)
    pasted = tmp_path / "pasted.log"
    machines = [_machine(tmp_path, name, pg_url) for name in ("a", "b")]
    deliverers = [_deliverer(env, pasted) for env in machines]
    with _reaped(*deliverers):
        # Both are told of each message at the same moment, and both find its receipt queued.
        sent = [
            store.send("user", {sid: "conversation"}, f"notice {n} for {sid}").id
            for n in range(4)
            for sid in SESSIONS
        ]
        # On a shared store a deliverer stays while its machine has sessions: done when all are.
        eventually(lambda: _states(store, sent) == ["delivered"] * len(sent), timeout=60)
        for deliverer in deliverers:
            assert deliverer.poll() is None, deliverer.stderr  # still up, with no error
    lines = _pastes(pasted)
    expected = sorted(
        f"Message {m} from user (priority normal, for {store.message(m).body.split()[-1]}):" for m in sent
    )
    assert lines == expected, "every notice pasted exactly once, by one of the two"
    assert _states(store, sent) == ["delivered"] * len(sent)
    store.close()


def test_a_deliverer_killed_mid_delivery_delivers_once_after_restart(pg_url: str, tmp_path: Path) -> None:
    store = open_store(pg_url)
    pasted = tmp_path / "pasted.log"
    env = _machine(tmp_path, "a", pg_url)
    holder = _deliverer(env, pasted, hold=True)
    with _reaped(holder):
        sent = store.send("user", {"fizz-top": "conversation"}, "only once").id
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        # Claimed and not yet pasted: another machine's deliverer does not take it meanwhile.
        other = _deliverer(_machine(tmp_path, "b", pg_url), pasted)
        with _reaped(other):
            assert other.stderr is not None
            # Its first word on that message (a paste would say "delivered"; its end, EOF).
            said = next(
                (line for line in other.stderr if "claimed elsewhere" in line or "delivered" in line), ""
            )
            assert said == f"message {sent} to fizz-top: claimed elsewhere\n"
        assert _pastes(pasted) == []
        assert store.receipts(sent)[0].state == "queued"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    restarted = _deliverer(env, pasted)
    with _reaped(restarted):
        eventually(lambda: store.receipts(sent)[0].state == "delivered", timeout=60)
        assert restarted.poll() is None, restarted.stderr
    assert _pastes(pasted) == [f"Message {sent} from user (priority normal, for fizz-top):"]
    assert store.receipts(sent)[0].state == "delivered"
    store.close()


SPACE_SENDER = textwrap.dedent(
    """
    import sys
    from dev_sessions.messaging.messenger import Messenger
    messenger = Messenger()
    print("ready", flush=True)
    sys.stdin.readline()
    for n in range(int(sys.argv[2])):
        messenger.space_send("team", f"{sys.argv[1]} #{n}", sender=sys.argv[1])
    """
)


def test_two_machines_sending_to_one_space_at_once_both_land_in_one_order(
    cli: DevSessions, pg_url: str, tmp_path: Path
) -> None:
    cli.ok("space", "create", "team")
    for name in ("ann", "bob", "cat"):
        cli.ok("agents", "register", name)
        cli.ok("space", "join", "team", "--as", name)
    pipe = subprocess.PIPE
    senders = []
    for name in ("ann", "bob"):
        home = tmp_path / f"machine-{name}"
        home.mkdir(mode=0o700)
        env = {**os.environ, "DEV_SESSIONS_HOME": str(home), "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-c", SPACE_SENDER, name, "50"]
        senders.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdin=pipe, stdout=pipe, stderr=pipe))
    for sender in senders:
        assert sender.stdout is not None and sender.stdout.readline() == b"ready\n"
    for sender in senders:  # at the same moment
        assert sender.stdin is not None
        sender.stdin.write(b"go\n")
        sender.stdin.flush()
    for sender in senders:
        _, err = sender.communicate(timeout=120 * SLOW)
        assert sender.returncode == 0, err
    store = open_store(pg_url)
    seen = {name: [m.body for m in store.inbox(name)] for name in ("ann", "bob", "cat")}
    everything = seen["cat"]
    assert len(everything) == 100 and len(set(everything)) == 100, "both machines' messages land, once"
    for name in ("ann", "bob"):
        assert [b for b in everything if b.startswith(f"{name} #")] == [f"{name} #{n}" for n in range(50)]
        other = [b for b in everything if not b.startswith(f"{name} #")]
        assert seen[name] == other, f"{name} sees the other's messages in the order everyone does"
    assert [m.body for m in store.space_messages("team")] == everything, "one order for all"
    store.close()


def test_a_waiter_is_told_only_once_it_is_in_a_mailbox(pg_url: str) -> None:
    """The notification goes with the transaction that stores the message: one rolled back is never
    announced, and a listener hears of a message only once it is there to be read."""
    store = open_store(pg_url)
    listener = psycopg.connect(pg_url, autocommit=True)
    listener.execute("LISTEN dev_sessions_mail")
    with contextlib.suppress(RuntimeError), store.write() as db:
        store._announce(db, ["ghost"], None)
        raise RuntimeError("rolled back")
    sent = store.send("user", {"me": "mailbox", "you": "mailbox"}, "hello")
    # The first one heard is the message's: the rolled-back one was never sent.
    (note,) = list(listener.notifies(timeout=10 * SLOW, stop_after=1))
    assert note.channel == "dev_sessions_mail"
    assert note.payload == '{"to": ["me", "you"], "space": null}'
    assert [m.id for m in store.inbox("me")] == [sent.id]
    listener.close()
    store.close()


def test_a_deliverer_stays_for_live_sessions_only(pg_url: str, tmp_path: Path) -> None:
    # On a shared store a deliverer stays while its machine has sessions: but not for records whose
    # sessions are gone (their tmux server killed). It stayed for ever for those.
    (tmp_path / "gone").touch()
    live = _deliverer(_machine(tmp_path, "a", pg_url), tmp_path / "pasted.log")
    gone = _deliverer(_machine(tmp_path, "b", pg_url), tmp_path / "pasted.log", GONE=str(tmp_path / "gone"))
    with _reaped(live, gone):
        assert gone.wait(timeout=60) == 0, gone.stderr
        assert live.poll() is None, "a machine with live sessions keeps its deliverer"


def test_a_deliverer_leaves_when_its_state_dir_is_gone(pg_url: str, tmp_path: Path) -> None:
    env = _machine(tmp_path, "a", pg_url)
    deliverer = _deliverer(env, tmp_path / "pasted.log")
    with _reaped(deliverer):
        shutil.rmtree(env["DEV_SESSIONS_HOME"])
        assert deliverer.wait(timeout=60) == 0
        assert deliverer.stderr is not None and "is gone; exiting" in deliverer.stderr.read()


def test_a_deliverer_whose_server_went_away_stays_only_for_live_sessions(
    own_server: Postgres, tmp_path: Path
) -> None:
    url = own_server.database()
    flag = tmp_path / "gone"
    live = _deliverer(_machine(tmp_path, "a", url), tmp_path / "pasted.log")
    ending = _deliverer(_machine(tmp_path, "b", url), tmp_path / "pasted.log", GONE=str(flag))
    with _reaped(live, ending):
        own_server.halt()
        # Its sessions end while the server is away: nothing is left to stay for. It went on trying
        # the server for ever.
        flag.touch()
        assert ending.wait(timeout=60) == 0, ending.stderr.read() if ending.stderr else ""
        assert ending.stderr is not None and "no live session here, exiting" in ending.stderr.read()
        assert live.poll() is None, "sessions here may yet be written to: it waits for the server"
        own_server.resume()


def test_a_deliverer_whose_server_is_down_tries_again_calmly(own_server: Postgres, tmp_path: Path) -> None:
    """The real deliverer (its log in its state directory, which it watches) while the server is down,
    with a live session here (so that it stays): looks at least LOST_ROUND_S apart, backing off, not one
    woken at once by its own log line (it spun: one every ~30 ms)."""
    from datetime import datetime

    from dev_sessions.messaging.deliver import LOST_ROUND_S

    url = own_server.database()
    env = _machine(tmp_path, "a", url)  # a session here: it stays on a shared store
    log = tmp_path / "a" / "deliverer.log"
    deliverer = subprocess.Popen(
        [sys.executable, "-c", LIVE_DELIVERER],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with _reaped(deliverer), _admin(own_server.url("postgres")) as admin:

        def connected() -> bool:  # the store's connection and the listener's: it runs
            row = admin.execute(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE datname = %s AND application_name = 'dev-sessions'""",
                (_database(url),),
            ).fetchone()
            return row is not None and row[0] == 2

        eventually(connected)
        admin.close()
        own_server.halt()

        def tries() -> list[datetime]:
            # The deliverer's own lines (a write run again by the store says "trying again" too, at INFO).
            said = log.read_text().splitlines()
            lines = [line for line in said if " WARNING " in line and line.endswith("; trying again")]
            return [datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in lines]

        found = eventually(lambda: len(t := tries()) >= 4 and t, timeout=30)
        assert isinstance(found, list)
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(found)]
        assert min(gaps) >= LOST_ROUND_S - 0.002, gaps  # the log's times are to the millisecond
        assert deliverer.poll() is None, deliverer.stderr
