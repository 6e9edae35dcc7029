"""The message store on a PostgreSQL server.

Imported only when ``DEV_SESSIONS_MESSAGES_URL`` is a ``postgresql://`` URL. It talks to the server
through libpq (:mod:`dev_sessions.messaging.libpq`, ctypes: the library psycopg's binary wheel carries,
the optional extra ``dev-sessions[postgres]``, else the system's; psycopg itself is never imported).
The queries are :class:`~dev_sessions.messaging.store.MessageStore`'s, written once for both engines;
what differs lives here:

* :class:`Connection` runs them on one connection in autocommit mode (a read is a statement of its
  own, as on SQLite), with SQLite's ``?`` placeholders numbered as ``$1``..``$n``, and turns a server
  that cannot be reached into :class:`MessagesUnavailable` (one line, the URL without its password).
  libpq reads the URL, so its conventions hold: ``sslmode``, ``PGPASSFILE``/``~/.pgpass``,
  ``service=`` and ``PGSERVICEFILE``; no password ever reaches an argument or a log line of ours.
* A write is one READ COMMITTED transaction that first takes a transaction-scoped advisory lock, so
  that writers of every machine queue one after the other exactly as SQLite's ``BEGIN IMMEDIATE``
  makes them (a check then an insert, as ``create_space`` does, cannot interleave with another
  writer's).
* Busy: a write transaction that the server rolls back for another one's sake (a serialization
  failure, a deadlock) or whose connection is lost before its COMMIT is sent did nothing, and is run
  again whole (:func:`retrying`, through :func:`~dev_sessions.messaging.store.one_write`; at most
  :data:`ATTEMPTS` tries, with back-off); so is a statement outside a transaction, after a lost
  connection is made again. A connection lost after a change went out (during the COMMIT, or while a
  send's one statement runs) leaves unknown whether it was made: it is never sent again, so nothing
  doubles, and the one-line error says that it may have been done (a send: "the message may have been
  stored", and where to look).
* The schema is :data:`MIGRATIONS`, PostgreSQL's own list (the same tables as SQLite's latest
  version), recorded in ``dev_sessions_schema`` and applied in one transaction under another advisory
  lock, so that two machines starting at once do not both migrate; a newer schema is refused.
* Full-text search: a ``tsvector`` column generated from the body with the ``dev_sessions_text``
  configuration (words lower-cased and without accents, no stemming: what SQLite's ``unicode61
  remove_diacritics 2`` does), a GIN index on it, and FTS5's query syntax translated by
  :mod:`dev_sessions.messaging.fts`.
* Being told of new mail: every message is announced with a ``NOTIFY`` on :data:`CHANNEL` in the
  transaction that stores it (payload: its recipients, or null when they would not fit), delivered
  only once it commits. A waiter (``msg wait``, the deliverer) listens on a connection of its own
  (:class:`Listener`, a :class:`~dev_sessions.watch.Source`: its socket wakes the watcher), opened
  before its first look so that nothing committed in between is missed. A lost connection (a server
  restarted, a backend terminated) is made again with back-off (:data:`RECONNECT_S`), and the first
  wake-up after it says "look" so that what was sent in the gap is caught up from the tables. The
  store's own connection is made again too when it is found lost before a statement.
* Delivery claims: a deliverer holds a session-level advisory lock per receipt while it delivers
  (:meth:`PostgresMessageStore.claim`), and looks at the receipt again under it; the lock goes with
  its connection, so a deliverer killed mid-delivery leaves the receipt to the next one at once.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import select
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from dev_sessions.errors import MessageNotFound, MessagesUnavailable, StoreTooNew, UsageError
from dev_sessions.messaging import libpq
from dev_sessions.messaging.fts import to_tsquery
from dev_sessions.messaging.records import Message
from dev_sessions.messaging.schema import COORDINATION, EXTRAS, MACHINES, PASTING
from dev_sessions.messaging.store import (
    MESSAGE_COLUMNS,
    PRIORITIES,
    Database,
    MailNews,
    MessageStore,
    message_of,
    now_ms,
    visible_to,
)
from dev_sessions.store import now_iso
from dev_sessions.watch import Watcher

log = logging.getLogger(__name__)

CHANNEL = "dev_sessions_mail"
"""The LISTEN/NOTIFY channel every message is announced on."""
MAX_PAYLOAD = 4000
"""Bytes of recipients a notification carries (the server's limit is 8000); more is sent as null."""
RECONNECT_S = (0.0, 0.1, 0.2, 0.5, 1.0, 2.0)
"""Back-off between attempts to make a lost connection again (the last one repeats)."""
ATTEMPTS = 5
"""Tries of a transaction the server rolled back for another one's sake (a serialization failure, a
deadlock) or whose connection was lost before its COMMIT was sent."""
BACKOFF_S = (0.02, 0.05, 0.1, 0.25)
"""Pauses between those tries (each times 0.5 to 1.5 at random, so that two rivals part)."""
MAYBE_DONE = "it may have been done: look before doing it again"
"""What a one-line error adds when the connection was lost after a change was sent (its outcome unknown)."""

SENT_MAYBE = "the message may have been stored: look with `dev-sessions msg feed` before sending it again"
"""What a send says when its connection was lost after the statement went to the server: it is never
sent twice (so never doubled), and whether it was stored is unknown."""

T = TypeVar("T")

# Advisory lock keys (any 64-bit numbers, constant across versions): one for migrating, one for writes.
MIGRATE_LOCK = 0x64657673_6D696772  # "devsmigr"
WRITE_LOCK = 0x64657673_77726974  # "devswrit"

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            # unaccent is a trusted extension (PostgreSQL 13+): the database's owner may create it.
            "CREATE EXTENSION IF NOT EXISTS unaccent",
            "CREATE TEXT SEARCH CONFIGURATION dev_sessions_text (COPY = simple)",
            """ALTER TEXT SEARCH CONFIGURATION dev_sessions_text
                ALTER MAPPING FOR word, hword, hword_part WITH unaccent, simple""",
            """CREATE TABLE agents (
                name TEXT PRIMARY KEY,
                registered_at TEXT NOT NULL,
                last_seen TEXT,
                status TEXT
            )""",
            """CREATE TABLE spaces (
                name TEXT PRIMARY KEY,
                parent TEXT REFERENCES spaces(name),
                description TEXT NOT NULL DEFAULT '',
                created_at TEXT NOT NULL,
                created_by TEXT NOT NULL
            )""",
            """CREATE TABLE members (
                space TEXT NOT NULL REFERENCES spaces(name) ON DELETE CASCADE,
                agent TEXT NOT NULL,
                joined_at TEXT NOT NULL,
                PRIMARY KEY (space, agent)
            )""",
            """CREATE TABLE messages (
                id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                sender TEXT NOT NULL,
                space TEXT,
                priority TEXT NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
                body TEXT NOT NULL,
                metadata TEXT,
                reply_to BIGINT REFERENCES messages(id),
                thread BIGINT NOT NULL,
                created_at TEXT NOT NULL,
                created_ms BIGINT NOT NULL,
                search TSVECTOR GENERATED ALWAYS AS (to_tsvector('dev_sessions_text', body)) STORED
            )""",
            "CREATE INDEX messages_thread ON messages(thread, id)",
            "CREATE INDEX messages_created ON messages(created_ms)",
            "CREATE INDEX messages_space ON messages(space, id) WHERE space IS NOT NULL",
            "CREATE INDEX messages_search ON messages USING GIN (search)",
            """CREATE TABLE receipts (
                message BIGINT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
                recipient TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('queued', 'delivered', 'read', 'failed')),
                via TEXT NOT NULL CHECK (via IN ('conversation', 'mailbox', 'host')),
                delivered_at TEXT,
                read_at TEXT,
                failed_at TEXT,
                reason TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                retry_at_ms BIGINT,
                PRIMARY KEY (message, recipient)
            )""",
            "CREATE INDEX receipts_inbox ON receipts(recipient, state, message)",
            """CREATE INDEX receipts_pending ON receipts(state, retry_at_ms)
                WHERE state IN ('queued', 'failed')""",
            """CREATE TABLE relays (
                message BIGINT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
                host TEXT NOT NULL,
                remote BIGINT NOT NULL,
                recipient TEXT,
                PRIMARY KEY (host, remote)
            )""",
            "CREATE INDEX relays_message ON relays(message, host)",
        ],
    ),
    (3, MACHINES),
    (4, PASTING),
    (5, EXTRAS),
    (6, COORDINATION),
]


def redact(url: str) -> str:
    """The URL as it may be shown: its password (in the authority or as ``password=``) replaced."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            if ":" in userinfo:
                netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="/:*")
        # Not urlunsplit: it drops the empty authority of postgresql:///db?host=/socket/dir.
        return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
    except ValueError:
        return "postgresql://(unreadable URL)"


def _password(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        return parts.password or dict(parse_qsl(parts.query)).get("password") or None
    except ValueError:
        return None


def unavailable(url: str, err: BaseException, then: str = "") -> MessagesUnavailable:
    """The one line for a server that failed us: the URL and libpq's words without the password, then
    what ``then`` adds."""
    detail = " ".join(str(err).split()) or type(err).__name__
    password = _password(url)
    if password:
        detail = detail.replace(password, "***")
    if then:
        detail = f"{detail.rstrip('.')}; {then}"
    return MessagesUnavailable(
        where=redact(url), detail=f"the messages server failed: {detail} (see DEV_SESSIONS_MESSAGES_URL)"
    )


@functools.lru_cache(maxsize=256)
def _numbered(sql: str) -> str:
    return libpq.numbered(sql)


class TryAgain(MessagesUnavailable):
    """A write transaction that did nothing and may be run again whole (:func:`retrying`): the server
    rolled it back for another one's sake, or its connection was lost before its COMMIT was sent.
    Whoever does not run it again shows it as the one line it is."""

    def __init__(self, url: str, cause: libpq.Error) -> None:
        self.url = url
        self.cause = cause
        line = unavailable(url, cause)
        super().__init__(where=line.where, detail=line.detail)


def _pause(attempt: int) -> None:
    import random  # only when busy

    time.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)] * random.uniform(0.5, 1.5))


def retrying(call: Callable[[], T]) -> T:
    """``call()``, run again (at most :data:`ATTEMPTS` times, with back-off) while it fails with
    :class:`TryAgain`."""
    for attempt in itertools.count(1):
        try:
            return call()
        except TryAgain as err:
            if attempt >= ATTEMPTS:
                raise unavailable(err.url, err.cause, f"still so after {attempt} tries") from None
            log.info("%s: %s; trying again", err.where, err.cause)
            _pause(attempt - 1)
    raise AssertionError("unreachable")


class Connection:
    """One connection to the server, with the ``execute`` of a ``sqlite3.Connection`` (libpq through
    :mod:`~dev_sessions.messaging.libpq`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = redact(url)
        self.writing = False
        self.connects = 0
        """How many times the connection was made: a session's advisory locks go with each one."""
        self.pg = self._connect()

    def _connect(self) -> libpq.Connection:
        try:
            pg = libpq.connect(self.url)
        except libpq.Error as err:
            raise self.unavailable(err) from None
        self.connects += 1
        return pg

    def _alive(self) -> None:
        """Make the connection again if it is found lost (a restarted server, a terminated backend):
        before a statement, never in the middle of a transaction. What a lost connection left to read
        is there already (the server's farewell, or end of file), so this costs no round trip."""
        if self.pg.alive():
            return
        log.info("%s: the connection was lost; connecting again", self.where)
        self.pg.close()
        self.pg = self._connect()

    def unavailable(self, err: BaseException, then: str = "") -> MessagesUnavailable:
        return unavailable(self.url, err, then)

    def execute(self, sql: str, params: Sequence[Any] = (), *, once: str | None = None) -> libpq.Rows:
        """Run a statement. In a write transaction, :meth:`write` deals with its failures; outside one it
        is a transaction of its own, run again when the server rolled it back or its connection was
        lost before it was sent, and after, unless it is to be run ``once`` (then the one-line error
        says that it may have been done, and ``once`` what to do)."""
        if self.writing:
            return self._run(sql, params)
        failure: libpq.Error | None = None
        for attempt in range(ATTEMPTS):
            if attempt:
                log.info("%s: %s; trying again", self.where, failure)
                _pause(attempt - 1)
            self._alive()
            try:
                return self._run(sql, params)
            except libpq.RolledBack as err:
                failure = err
            except libpq.Unavailable as err:
                if not err.lost:
                    raise self.unavailable(err) from None
                if err.sent and once is not None:
                    raise self.unavailable(err, once) from None
                failure = err
        assert failure is not None
        raise self.unavailable(failure, f"still so after {ATTEMPTS} tries")

    def _run(self, sql: str, params: Sequence[Any]) -> libpq.Rows:
        try:
            return self.pg.execute(_numbered(sql), params)
        except ValueError as err:  # a NUL character in a text
            raise UsageError(f"{self.where}: {err}") from None

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        for row in rows:
            self.execute(sql, row)

    @contextmanager
    def write(self, lock: int = WRITE_LOCK) -> Iterator[Connection]:
        """One transaction, writers queued on an advisory lock as SQLite's ``BEGIN IMMEDIATE`` queues them.

        :class:`TryAgain` when the server rolls it back for another's sake or the connection is lost
        before its COMMIT was sent (nothing was done); a connection lost during the COMMIT leaves the
        outcome unknown: a one-line error that says so."""
        self._alive()
        try:
            # READ COMMITTED whatever the server's default: each statement sees what the writers before this
            # one committed (a REPEATABLE READ snapshot would be taken before the lock is granted).
            self.pg.run(f"BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({int(lock)})")
            self.writing = True
            yield self
        except BaseException as err:
            self.writing = False
            self._abandon()
            if isinstance(err, libpq.RolledBack) or (isinstance(err, libpq.Unavailable) and err.lost):
                raise TryAgain(self.url, err) from None
            if isinstance(err, libpq.Unavailable):
                raise self.unavailable(err) from None
            raise
        self.writing = False
        try:
            self.pg.run("COMMIT")
        except libpq.Unavailable as err:
            if err.lost and err.sent:
                self.pg.close()
                raise self.unavailable(err, MAYBE_DONE) from None
            if err.lost:
                raise TryAgain(self.url, err) from None
            raise self.unavailable(err) from None
        except libpq.RolledBack as err:  # a serializable transaction that could not commit
            raise TryAgain(self.url, err) from None

    def _abandon(self) -> None:
        """Roll the transaction back, or drop a connection that cannot (the next statement makes it again)."""
        if self.pg.ok:
            try:
                self.pg.run("ROLLBACK")
                return
            except libpq.Error:
                pass
        self.pg.close()

    def close(self) -> None:
        self.pg.close()


def schema_version(db: Connection) -> int:
    """The schema version on the server (0 before the first migration)."""
    try:
        row = db.execute("SELECT version FROM dev_sessions_schema").fetchone()
    except libpq.UndefinedTable:
        return 0
    return int(row[0]) if row else 0


def migrate(db: Connection, migrations: list[tuple[int, list[str]]]) -> None:
    """Apply the migrations the server has not had, in one transaction under an advisory lock."""
    latest = migrations[-1][0] if migrations else 0
    if schema_version(db) == latest:
        return
    retrying(lambda: _migrate(db, migrations, latest))


def _migrate(db: Connection, migrations: list[tuple[int, list[str]]], latest: int) -> None:
    with db.write(MIGRATE_LOCK):
        db.execute("CREATE TABLE IF NOT EXISTS dev_sessions_schema (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM dev_sessions_schema").fetchone()
        current = int(row[0]) if row else 0  # again, under the lock: another machine may have migrated
        if current > latest:
            raise StoreTooNew(path=db.where, version=current)
        for number, statements in migrations:
            if number <= current:
                continue
            for statement in statements:
                db.execute(statement)
        if row is None:
            db.execute("INSERT INTO dev_sessions_schema (version) VALUES (?)", (latest,))
        else:
            db.execute("UPDATE dev_sessions_schema SET version = ?", (latest,))


def _payload(recipients: list[str], space: str | None) -> str:
    text = json.dumps({"to": recipients, "space": space}, ensure_ascii=False)
    if len(text.encode()) > MAX_PAYLOAD:
        text = json.dumps({"to": None, "space": None})  # too many to name: anyone may look
    return text


class Listener:
    """A connection of its own that LISTENs on :data:`CHANNEL`: a :class:`~dev_sessions.watch.Source`
    for a watcher, and the :class:`~dev_sessions.messaging.store.MailNews` of a waiter (whether a
    notification named one of ``names``, anyone's for None, or the connection was made again).

    A server that does not answer at first is MessagesUnavailable; with ``patient`` (a live face,
    which must outlive the server) it is a lost connection instead, made again with back-off."""

    def __init__(self, url: str, names: Collection[str] | None, *, patient: bool = False) -> None:
        self.url = url
        self.where = redact(url)
        self.names = None if names is None else set(names)
        self.pg: libpq.Connection | None = None
        self.attempts = 0
        self.retry_at = 0.0
        self.news = True
        try:
            self._connect()
        except MessagesUnavailable as err:
            if not patient:
                raise
            log.warning("%s; trying again in the background", err)
            self._lost(err)  # a deliverer started as the server went away: it connects again later

    def _connect(self) -> None:
        pg = None
        try:
            pg = libpq.connect(self.url)
            pg.run(f"LISTEN {CHANNEL}")
        except libpq.Error as err:
            if pg is not None:
                pg.close()
            raise unavailable(self.url, err) from None
        self.pg, self.attempts, self.news = pg, 0, True  # a new connection: catch up from the tables

    def _lost(self, why: object) -> None:
        if self.pg is not None:
            log.warning("%s: lost the connection told of new mail (%s); connecting again", self.where, why)
            self.pg.close()
            self.pg = None
        self.retry_at = time.monotonic() + RECONNECT_S[min(self.attempts, len(RECONNECT_S) - 1)]
        self.attempts += 1

    def fileno(self) -> int | None:
        return None if self.pg is None else self.pg.fileno()

    def longest_sleep(self, timeout: float) -> float:
        if self.pg is None:
            return min(timeout, max(0.0, self.retry_at - time.monotonic()))
        return timeout

    def drain(self) -> None:
        if self.pg is None:
            if time.monotonic() >= self.retry_at:
                try:
                    self._connect()
                    log.info("%s: connected again; catching up", self.where)
                except MessagesUnavailable as err:
                    self._lost(err)
            return
        pg = self.pg
        try:
            readable, _, _ = select.select([pg.fileno()], [], [], 0)
        except (OSError, ValueError) as err:
            self._lost(err)
            return
        if not readable:
            return
        if not pg.consume():
            self._lost(pg.error_message())
            return
        for _channel, payload in pg.notifications():
            self._note(payload)
        if not pg.ok:
            self._lost("the server closed it")

    def _note(self, payload: str) -> None:
        try:
            to = json.loads(payload)["to"]
        except (ValueError, KeyError, TypeError):
            to = None
        if self.names is None or to is None or not self.names.isdisjoint(to):
            log.debug("told of new mail for %s", ", ".join(to) if to else "anyone")
            self.news = True

    def heard(self) -> bool:
        news, self.news = self.news, False
        return news

    def close(self) -> None:
        if self.pg is not None:
            self.pg.close()
            self.pg = None


class PostgresMessageStore(MessageStore):
    """The messages on a PostgreSQL server: :class:`MessageStore`'s queries, this engine's ways."""

    engine = "postgres"
    shared = True

    def __init__(self, url: str, migrations: list[tuple[int, list[str]]] | None = None) -> None:
        self.path = None
        self.migrations = MIGRATIONS if migrations is None else migrations
        self.server = Connection(url)
        self.db = self.server
        self.where = self.server.where
        migrate(self.server, self.migrations)

    @property
    def version(self) -> int:
        return schema_version(self.server)

    def write(self) -> AbstractContextManager[Database]:
        return self.server.write()

    def retried(self, call: Callable[[], T]) -> T:
        return retrying(call)

    def _announce(self, db: Database, recipients: list[str], space: str | None) -> None:
        db.execute("SELECT pg_notify(?, ?)", (CHANNEL, _payload(recipients, space)))

    def watch_mail(
        self, watcher: Watcher, names: Collection[str] | None = None, *, patient: bool = False
    ) -> MailNews:
        """Nothing on this machine's disk changes when mail comes: a :class:`Listener` wakes ``watcher``
        (``patient``: a server that does not answer now is tried again later, not an error)."""
        listener = Listener(self.server.url, names, patient=patient)
        watcher.watch_source(listener)
        return listener

    @contextmanager
    def claim(self, message_id: int, recipient: str) -> Iterator[bool]:
        """The receipt's advisory lock (a key from the recipient and the message), held by this
        connection while it delivers; then the look of SQLite's ``claim``, under it. Another machine's
        deliverer that saw the same receipt queued either finds the lock held, or takes it after this
        one marked the receipt and finds it no longer due. A deliverer killed mid-delivery loses the
        lock with its connection."""
        key = "hashtextextended(?, ?)"
        row = self.server.execute(f"SELECT pg_try_advisory_lock({key})", (recipient, message_id)).fetchone()
        if not (row and row[0]):
            yield False
            return
        connection = self.server.connects
        try:
            due = self._still_due(message_id, recipient)
            # Made again since the lock was taken: the lock went with the old connection.
            yield due and self.server.connects == connection
        finally:
            with contextlib.suppress(MessagesUnavailable):  # a lost connection took the lock with it
                self.server.execute(f"SELECT pg_advisory_unlock({key})", (recipient, message_id))

    def _insert(self, db: Database, sql: str, args: Sequence[Any]) -> int:
        return int(db.execute(sql + " RETURNING id", args).fetchone()[0])

    def send(
        self,
        sender: str,
        recipients: dict[str, str],
        body: str,
        *,
        priority: str = "normal",
        reply_to: int | None = None,
        metadata: dict[str, Any] | None = None,
        space: str | None = None,
        origin: tuple[str, int] | None = None,
        machine: str | None = None,
        machines: Mapping[str, str] | None = None,
    ) -> Message:
        """:meth:`MessageStore.send` in one statement, so one round trip: the write lock, the id, the
        message with its thread, its receipts and (a reply) the answered message read, one implicit
        transaction. A copy of a host's message (``origin``) takes the general way."""
        if origin is not None or priority not in PRIORITIES:
            return super().send(
                sender, recipients, body, priority=priority, reply_to=reply_to, metadata=metadata,
                space=space, origin=origin, machine=machine, machines=machines,
            )  # fmt: skip
        stamp, stamp_ms = now_iso(), now_ms()
        meta = json.dumps(metadata, ensure_ascii=False) if metadata is not None else None
        names = list(recipients)
        vias = [recipients[name] for name in names]
        try:
            row = self.server.execute(
                f"""WITH lock AS (SELECT pg_advisory_xact_lock(?)),
                    new AS (SELECT nextval(pg_get_serial_sequence('messages', 'id')) AS id FROM lock),
                    m AS (
                        INSERT INTO messages (id, sender, space, priority, body, metadata, reply_to, thread,
                                              created_at, created_ms, machine)
                        SELECT new.id, ?, ?, ?, ?, ?, ?::bigint,
                               coalesce((SELECT thread FROM messages WHERE id = ?::bigint), new.id), ?, ?, ?
                        FROM new RETURNING *
                    ),
                    r AS (
                        INSERT INTO receipts (message, recipient, state, via, delivered_at, machine)
                        SELECT m.id, x.name, CASE WHEN x.via = 'mailbox' THEN 'delivered' ELSE 'queued' END,
                               x.via, CASE WHEN x.via = 'mailbox' THEN ? END, x.machine
                        FROM m, unnest(?::text[], ?::text[], ?::text[]) AS x(name, via, machine)
                    ),
                    answered AS (
                        UPDATE receipts SET state = 'read', read_at = ?
                        WHERE message = ?::bigint AND recipient = ? AND state != 'read'
                    )
                    SELECT {MESSAGE_COLUMNS}, pg_notify(?, ?) FROM m""",
                (
                    WRITE_LOCK, sender, space, priority, body, meta, reply_to, reply_to, stamp, stamp_ms,
                    machine, stamp, names, vias, [(machines or {}).get(name) for name in names],
                    stamp, reply_to, sender, CHANNEL, _payload(names, space),
                ),
                once=SENT_MAYBE,
            ).fetchone()  # fmt: skip
        except libpq.ForeignKeyViolation:
            assert reply_to is not None
            raise MessageNotFound(message_id=reply_to) from None
        assert row is not None
        return message_of(row[:-1])  # the last column is the NOTIFY's (the news, in the same transaction)

    def heartbeat(self, name: str, status: str | None, machine: str | None = None) -> None:
        """One statement, without the write lock: an upsert checks nothing first."""
        stamp = now_iso()
        self.server.execute(
            """INSERT INTO agents (name, registered_at, last_seen, status, machine) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT(name) DO UPDATE SET last_seen = excluded.last_seen,
               status = coalesce(excluded.status, agents.status),
               machine = coalesce(excluded.machine, agents.machine)""",
            (name, stamp, stamp, status, machine),
        )

    def search(self, query: str, limit: int = 50, viewer: str | None = None) -> list[Message]:
        where, args = visible_to(viewer)
        rows = self.db.execute(
            f"""SELECT {MESSAGE_COLUMNS} FROM messages m, to_tsquery('dev_sessions_text', ?) q
                WHERE m.search @@ q AND {where} ORDER BY ts_rank(m.search, q) DESC, m.id LIMIT ?""",
            (to_tsquery(query), *args, limit),
        ).fetchall()
        return [message_of(row) for row in rows]
