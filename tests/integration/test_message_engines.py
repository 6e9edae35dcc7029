"""Which store DEV_SESSIONS_MESSAGES_URL (or ``config.json``) names, and what only a server brings:
its URL shown without a password, a server that does not answer, a machine without libpq, and libpq
from psycopg's wheel or the system without importing psycopg."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from dev_sessions.messaging.store import MessageStore, open_store
from tests.conftest import ROOT, SLOW, DevSessions, Result, eventually, need, one_line_error
from tests.fakes.postgres import Postgres


def test_sqlite_colon_is_the_local_file(cli: DevSessions, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEV_SESSIONS_MESSAGES_URL", "sqlite:")
    cli.ok("msg", "send", "--to", "user", "to myself")
    state = Path(os.environ["DEV_SESSIONS_HOME"])
    assert [m.body for m in MessageStore(state / "messages.db").inbox("user")] == ["to myself"]


def test_the_url_may_come_from_config_json(
    cli: DevSessions, messages_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = Path(os.environ["DEV_SESSIONS_HOME"])
    state.mkdir(mode=0o700, exist_ok=True)
    monkeypatch.delenv("DEV_SESSIONS_MESSAGES_URL", raising=False)
    (state / "config.json").write_text(json.dumps({"DEV_SESSIONS_MESSAGES_URL": messages_url or "sqlite:"}))
    sent = int(cli.ok("msg", "send", "--to", "user", "configured").strip())
    store = open_store(messages_url) if messages_url else MessageStore(state / "messages.db")
    assert store.message(sent).body == "configured"
    assert (state / "messages.db").exists() is (messages_url is None), "a server's messages stay there"


def test_a_broken_config_json_is_one_line(cli: DevSessions, monkeypatch: pytest.MonkeyPatch) -> None:
    state = Path(os.environ["DEV_SESSIONS_HOME"])
    state.mkdir(mode=0o700, exist_ok=True)
    monkeypatch.delenv("DEV_SESSIONS_MESSAGES_URL", raising=False)
    (state / "config.json").write_text('["not", "an object"]')
    one_line_error(cli("msg", "read"), 2, str(state / "config.json"), "not a JSON object")
    assert not (state / "messages.db").exists(), "not silently the local file"


def test_an_unknown_scheme_is_refused_without_showing_the_url(
    cli: DevSessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEV_SESSIONS_MESSAGES_URL", "mysql://me:hunter2@db/team")
    result = cli("msg", "read")
    one_line_error(result, 2, "DEV_SESSIONS_MESSAGES_URL", "'mysql'", "postgresql://")
    assert "hunter2" not in result.stderr


def test_a_server_that_does_not_answer_is_one_line_without_the_password(
    cli: DevSessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"postgresql://someone:s3cret-pw@/team?host={tmp_path}/no-server&connect_timeout=2"
    monkeypatch.setenv("DEV_SESSIONS_MESSAGES_URL", url)
    for args in (["msg", "send", "--to", "user", "hello"], ["msg", "read"]):
        result = cli(*args)
        one_line_error(result, 1, "postgresql://someone:***@/team", "the messages server failed")
        assert "s3cret-pw" not in result.stderr + result.stdout
    assert not (Path(os.environ["DEV_SESSIONS_HOME"]) / "messages.db").exists(), "nothing written here"


def test_without_libpq_a_postgresql_url_says_how_to_install_it(
    cli: DevSessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEV_SESSIONS_MESSAGES_URL", "postgresql://someone:s3cret-pw@db.example/team")
    # The interpreter as it is without psycopg's wheel and without the system's libpq.
    run = (
        "import sys; sys.modules['psycopg_binary'] = None; from dev_sessions.messaging import libpq; "
        "libpq.SYSTEM_NAMES = ('libpq-nowhere.so.5',); from dev_sessions.cli import main; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", run, "msg", "read"], capture_output=True, text=True, cwd=cli.cwd, check=False
    )
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    one_line_error(result, 1, "libpq: not found", "pip install 'dev-sessions[postgres]'")
    assert "s3cret-pw" not in result.stderr


LIBPQ_USER = (
    "import sys\n"
    "if sys.argv[2] == 'system': sys.modules['psycopg_binary'] = None  # as if the wheel were not there\n"
    "from dev_sessions.messaging import libpq\n"
    "from dev_sessions.messaging.store import open_store\n"
    "store = open_store(sys.argv[1])\n"
    "sent = store.send('me', {'you': 'mailbox'}, 'through ' + sys.argv[2])\n"
    "print(libpq.library()._name)\n"
    "drivers = ('psycopg', 'psycopg_binary')\n"
    "print(sorted(n for n, m in sys.modules.items() if m is not None and n.split('.')[0] in drivers))\n"
)


@pytest.mark.parametrize("which", ["bundled", "system"])
def test_the_store_talks_through_libpq_without_importing_psycopg(
    postgres_server: Postgres, which: str
) -> None:
    """psycopg's wheel only carries libpq (the extra ``dev-sessions[postgres]``), and the system's
    does as well; neither imports psycopg, whose import alone would cost more than a whole send."""
    if which == "system" and not Path("/usr/lib/x86_64-linux-gnu/libpq.so.5").exists():
        need("no system libpq (Debian's libpq5, which postgresql brings)")
    url = postgres_server.database()
    proc = subprocess.run(
        [sys.executable, "-c", LIBPQ_USER, url, which], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert proc.returncode == 0, proc.stderr
    loaded, imported = proc.stdout.splitlines()
    if which == "bundled":
        assert "psycopg_binary.libs/libpq-" in loaded
    else:
        assert loaded == "libpq.so.5"
    assert imported == "[]"
    assert [m.body for m in open_store(url).inbox("you")] == [f"through {which}"]
    postgres_server.drop(url)


def test_msg_send_to_a_server_imports_no_driver(cli: DevSessions, messages_url: str | None) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dev_sessions", "msg", "send", "--to", "user", "hi"],
        capture_output=True, text=True, cwd=cli.cwd, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
    assert ("dev_sessions.messaging.libpq" in imported) is (messages_url is not None)
    assert [name for name in imported if name.split(".")[0] in ("psycopg", "psycopg_binary", "asyncio")] == []


def test_machines_starting_at_once_migrate_the_server_once(postgres_server: Postgres) -> None:
    url = postgres_server.database()
    # Each one loads everything, says so, and opens the store when the test lets them all go at once.
    opener = (
        "import sys; from dev_sessions.messaging import postgres; from dev_sessions.messaging.store import "
        "open_store; print('ready', flush=True); sys.stdin.readline(); "
        "s = open_store(sys.argv[1]); s.send('me', {'you': 'mailbox'}, 'hi'); print(s.version)"
    )
    pipe = subprocess.PIPE
    starters = [
        subprocess.Popen([sys.executable, "-c", opener, url], cwd=ROOT, stdin=pipe, stdout=pipe, stderr=pipe)
        for _ in range(6)
    ]
    for starter in starters:
        assert starter.stdout is not None and starter.stdout.readline() == b"ready\n"
    for starter in starters:
        assert starter.stdin is not None
        starter.stdin.write(b"go\n")
        starter.stdin.flush()
    results = [p.communicate(timeout=60 * SLOW) for p in starters]
    assert [(p.returncode, err) for p, (_, err) in zip(starters, results, strict=True)] == [(0, b"")] * 6
    from dev_sessions.messaging.postgres import MIGRATIONS

    assert {out.strip() for out, _ in results} == {str(MIGRATIONS[-1][0]).encode()}
    store = open_store(url)
    assert len(store.inbox("you")) == 6
    assert store.db.execute("SELECT count(*) FROM dev_sessions_schema").fetchone()[0] == 1
    store.close()
    postgres_server.drop(url)


def test_libpq_prepares_a_statement_run_again_with_its_parameters_types(postgres_server: Postgres) -> None:
    from dev_sessions.messaging import libpq

    url = postgres_server.database()
    pg = libpq.connect(url)
    sql = "SELECT $1::bigint, $2"
    runs = [(None, "a"), (None, "b"), (7, "c"), (8, None), (9, "d")]
    assert [pg.execute(sql, params).fetchone() for params in runs] == runs
    prepared = pg.execute("SELECT statement, parameter_types::text[] FROM pg_prepared_statements").fetchall()
    # Prepared once run twice: with NULL for $1 (its type left to the server), and with a bigint.
    assert sorted(prepared) == [(sql, "{bigint,text}"), (sql, "{bigint,text}")]
    pg.close()
    postgres_server.drop(url)


def _connections(postgres_server: Postgres, url: str) -> int:
    from dev_sessions.messaging import libpq

    admin = libpq.connect(postgres_server.url("postgres"))
    name = urlsplit(url).path.lstrip("/")
    row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", (name,)).fetchone()
    admin.close()
    assert row is not None
    return int(row[0])


def test_a_store_dropped_without_closing_leaves_no_connection(postgres_server: Postgres) -> None:
    """The gateway makes a library object per call and may never close it (psycopg closed on collection)."""
    import gc

    url = postgres_server.database()
    for _ in range(5):
        assert open_store(url).inbox("nobody") == []
    gc.collect()
    eventually(lambda: _connections(postgres_server, url) == 0)
    postgres_server.drop(url)


def test_threads_sharing_a_store_take_turns(postgres_server: Postgres) -> None:
    """``msg status`` asks every host at once, each thread reading the same store."""
    from concurrent.futures import ThreadPoolExecutor

    url = postgres_server.database()
    store = open_store(url)
    sent = [store.send("me", {f"agent{n}": "mailbox"}, f"to agent{n}").id for n in range(16)]

    def read(n: int) -> list[str]:
        return [m.body for _ in range(20) for m in store.inbox(f"agent{n}")]

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(read, range(16))) == [[f"to agent{n}"] * 20 for n in range(16)]
    assert len(sent) == 16
    store.close()
    postgres_server.drop(url)
