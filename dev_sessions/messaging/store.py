"""The message store: ``$DEV_SESSIONS_HOME/messages.db`` (SQLite), the only code that queries it.

Messages, spaces, memberships, outside agents and per-recipient delivery state live here, next to
the session store; :class:`MessageStore` reads them as the records of
:mod:`dev_sessions.messaging.records`. Opening the file, the schema and its migrations are
:mod:`dev_sessions.messaging.schema`'s. Every write is one ``BEGIN IMMEDIATE`` transaction, with a busy
timeout rather than an error when another writer holds the lock. A message and all its receipts commit
together, so a process killed at any moment leaves either the whole message or nothing.

Delivery states of a receipt: ``queued`` (waiting for the recipient's next idle point), ``delivered``
(put into its conversation, or into the mailbox of an agent that has none), ``read`` (marked read or
replied to), ``failed`` (with its reason; retried until ``retry_at_ms`` is null). A receipt ``via``
``host`` is a session on a remote host: ``delivered`` there means handed to the host's own store
(``relays`` says as which message), whose deliverer puts it into the session. ``pasting_at`` (and
``pasting_by``) on a receipt not yet delivered: a deliverer began typing its notice into the session
and never saw it through, so the notice may be there already (see the deliverer).

``relays`` links a message here to the same message in a host's store, both ways: one relayed to a
session there, and one copied here from there (a reply of a remote session), so that a copy is
never made twice and a reply names the message it answers on the side it lands on.

Two engines hold the same tables: this SQLite file, the default, and a PostgreSQL server shared by
several machines (``DEV_SESSIONS_MESSAGES_URL=postgresql://...``, :func:`store_for`). The queries here
are written once, in the SQL both understand; :class:`MessageStore` runs them on SQLite, and
:class:`~dev_sessions.messaging.postgres.PostgresMessageStore` (imported only for such a URL) on the
server, with what differs (inserting and learning the id, full-text search, transactions, the schema)
its own.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from dev_sessions.config import BROKEN_CONFIG, Settings
from dev_sessions.errors import MessageNotFound, NameInUse, ProjectNotFound, SpaceNotFound, UsageError
from dev_sessions.messaging.coordination_store import CoordinationStore
from dev_sessions.messaging.records import Agent, Message, Receipt, Space
from dev_sessions.messaging.schema import MIGRATIONS, migrate, open_database, transaction, user_version
from dev_sessions.messaging.writes import one_write
from dev_sessions.store import now_iso, parse_iso

if TYPE_CHECKING:
    from dev_sessions.messaging.results import Pin, Reaction
    from dev_sessions.watch import Watcher

PRIORITIES = ("low", "normal", "high", "urgent")
Priority = Literal["low", "normal", "high", "urgent"]
MAX_SPACE_DEPTH = 3


MESSAGE_COLUMNS = (
    "m.id, m.sender, m.space, m.priority, m.body, m.metadata, m.reply_to, m.thread, m.created_at"
)
_AGENT_COLUMNS = "name, registered_at, last_seen, status, machine, session"
_CHUNK = 500
"""Ids per ``IN (...)`` list (SQLite allows 32,766 parameters; a few hundred keep each query quick)."""
_RECEIPT_COLUMNS = (
    "r.recipient, r.state, r.via, r.delivered_at, r.read_at, r.failed_at, r.reason, r.attempts, r.retry_at_ms,"
    " r.machine, r.pasting_at, r.pasting_by"
)


class Rows(Protocol):
    """What a query returns on either engine (a ``sqlite3.Cursor``, the PostgreSQL store's ``libpq.Rows``)."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Database(Protocol):
    """A connection as the queries use it: ``sqlite3.Connection``, or the PostgreSQL store's."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Rows: ...
    def executemany(self, sql: str, parameters: Sequence[Sequence[Any]], /) -> object: ...
    def close(self) -> None: ...


def message_of(row: Sequence[Any], receipt: Receipt | None = None) -> Message:
    metadata = json.loads(row[5]) if row[5] else None
    return Message(row[0], row[1], row[2], row[3], row[4], metadata, row[6], row[7], row[8], receipt)


def _receipt(row: Sequence[Any]) -> Receipt:
    return Receipt(*row)


def _with_receipt(row: Sequence[Any]) -> Message:
    """A row of a message and the reader's receipt (null columns when there is none)."""
    return message_of(row[:9], _receipt(row[9:]) if row[9] is not None else None)


def _like(text: str) -> str:
    """``text`` as a LIKE pattern that matches it anywhere (``ESCAPE '\\'``)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _seconds_since(stamp: str | None) -> float | None:
    seen = parse_iso(stamp) if stamp else None
    return None if seen is None else time.time() - seen.timestamp()


def visible_to(viewer: str | None) -> tuple[str, tuple[str, ...]]:
    """A WHERE clause for the messages ``viewer`` sent or received (all of them for None)."""
    if viewer is None:
        return "TRUE", ()
    clause = "(m.sender = ? OR EXISTS (SELECT 1 FROM receipts r WHERE r.message = m.id AND r.recipient = ?))"
    return clause, (viewer, viewer)


def store_for(settings: Settings) -> MessageStore:
    """The store ``settings`` name: ``messages.db`` here, or the PostgreSQL server of
    ``DEV_SESSIONS_MESSAGES_URL`` (its module and libpq loaded only then)."""
    url = settings.messages_url
    if url is None or url == "sqlite:":
        return MessageStore(settings.home / "messages.db")
    return open_store(url)


def open_store(where: Path | str, migrations: list[tuple[int, list[str]]] | None = None) -> MessageStore:
    """A store at a path (SQLite) or a ``postgresql://`` URL (UsageError for anything else)."""
    if isinstance(where, Path):
        return MessageStore(where, migrations)
    if where.startswith(("postgresql://", "postgres://")):
        from dev_sessions.messaging.postgres import PostgresMessageStore

        return PostgresMessageStore(where, migrations)
    if where.startswith(BROKEN_CONFIG):
        path = where[len(BROKEN_CONFIG) :]
        raise UsageError(
            f"{path}: not a JSON object of strings (DEV_SESSIONS_MESSAGES_URL); fix it or remove it"
        )
    scheme = where.split(":", 1)[0] if ":" in where else "no scheme"
    raise UsageError(
        f"DEV_SESSIONS_MESSAGES_URL: a {scheme!r} URL; use sqlite: (this machine's file) or postgresql://..."
    )


R = TypeVar("R")


class MailNews(Protocol):
    def heard(self) -> bool:
        """Whether mail for the watched names may have come since the last call (and at the first)."""
        ...


class _Always:
    """SQLite's news: any change of the database's directory may be mail, so every wake-up is worth a look."""

    def heard(self) -> bool:
        return True


ALWAYS: MailNews = _Always()


def now_ms() -> int:
    return int(time.time() * 1000)


class MessageStore(CoordinationStore):
    """The messages in ``messages.db`` (SQLite); the base of the PostgreSQL store too. Projects, focus
    and leases are :class:`CoordinationStore`'s part of it."""

    engine = "sqlite"
    shared = False
    """Whether other machines use this store too (then a session unknown here may be one of theirs)."""

    def __init__(self, path: Path, migrations: list[tuple[int, list[str]]] | None = None) -> None:
        self.path: Path | None = path
        self.where = str(path)
        self.migrations = MIGRATIONS if migrations is None else migrations
        self.sqlite = open_database(path)
        self.db: Database = self.sqlite
        migrate(self.sqlite, path, self.migrations)

    @property
    def version(self) -> int:
        return user_version(self.sqlite)

    def write(self) -> AbstractContextManager[Database]:
        """One write transaction (BEGIN IMMEDIATE: writers queue on the busy timeout, never fail)."""
        return transaction(self.sqlite)

    def retried(self, call: Callable[[], R]) -> R:
        """``call()``, a :func:`one_write` method: once on SQLite, whose writers wait for each other."""
        return call()

    def _insert(self, db: Database, sql: str, args: Sequence[Any]) -> int:
        """Run an INSERT of one row into a table with an ``id`` column; the new row's id."""
        return int(db.execute(sql, args).lastrowid or 0)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.db.close()

    # -- being told of new mail ----------------------------------------------------------------------

    def _announce(self, db: Database, recipients: list[str], space: str | None) -> None:
        """Tell waiters, in the transaction that stores it, that mail came for ``recipients``. Nothing to
        do on SQLite: the database file changing is what wakes them (see :meth:`watch_mail`)."""

    def watch_mail(
        self, watcher: Watcher, names: Collection[str] | None = None, *, patient: bool = False
    ) -> MailNews:
        """Make ``watcher`` wake when mail may have come for one of ``names`` (anyone's for None); the
        returned :class:`MailNews` says, after a wake-up, whether the store is worth a look."""
        assert self.path is not None
        watcher.watch_dir(self.path.parent)
        return ALWAYS

    # -- agents ------------------------------------------------------------------------------------------

    def agent(self, name: str) -> Agent | None:
        row = self.db.execute(f"SELECT {_AGENT_COLUMNS} FROM agents WHERE name = ?", (name,)).fetchone()
        return Agent(*row) if row else None

    def agents(self) -> list[Agent]:
        rows = self.db.execute(f"SELECT {_AGENT_COLUMNS} FROM agents ORDER BY name")
        return [Agent(*row) for row in rows]

    @one_write
    def hold(
        self,
        name: str,
        session: str | None,
        *,
        live_s: float,
        takeover: bool = False,
        status: str | None = None,
        machine: str | None = None,
    ) -> Agent:
        """Register the outside agent ``name`` (or say it is alive) for the agent session ``session``
        (None: not known), in one write. Another session holding the name and seen within ``live_s``
        seconds is :class:`NameInUse`, unless ``takeover``: then the name is this session's, and the
        agent returned says whose it was (``took_over_from``). A name whose holder is unknown, or
        not live, is simply held from now on."""
        stamp = now_iso()
        with self.write() as db:
            row = db.execute(f"SELECT {_AGENT_COLUMNS} FROM agents WHERE name = ?", (name,)).fetchone()
            before = Agent(*row) if row else None
            if before is None:
                db.execute(
                    f"INSERT INTO agents ({_AGENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    (name, stamp, stamp, status, machine, session),
                )
                return Agent(name, stamp, stamp, status, machine, session)
            ago = _seconds_since(before.last_seen)
            held = (
                before.session is not None and before.session != session and ago is not None and ago < live_s
            )
            if held and not takeover:
                raise NameInUse(
                    name=name, holder=before.session or "", machine=before.machine, seconds=int(ago or 0)
                )
            holder = session if held or session is not None else before.session
            db.execute(
                """UPDATE agents SET last_seen = ?, status = coalesce(?, status),
                   machine = coalesce(?, machine), session = ? WHERE name = ?""",
                (stamp, status, machine, holder, name),
            )
        return Agent(
            name,
            before.registered_at,
            stamp,
            status if status is not None else before.status,
            machine if machine is not None else before.machine,
            holder,
            before.session if held else None,
        )

    @one_write
    def heartbeat(self, name: str, status: str | None, machine: str | None = None) -> None:
        stamp = now_iso()
        with self.write() as db:
            db.execute(
                """INSERT INTO agents (name, registered_at, last_seen, status, machine) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT(name) DO UPDATE SET last_seen = excluded.last_seen,
                   status = coalesce(excluded.status, agents.status),
                   machine = coalesce(excluded.machine, agents.machine)""",
                (name, stamp, stamp, status, machine),
            )

    # -- sessions of the machines sharing this store ----------------------------------------------------

    @one_write
    def publish_sessions(self, machine: str, sessions: Sequence[tuple[str, str, str | None, str]]) -> None:
        """Say which sessions ``machine`` has now ((name, cli, parent, status) each): the others of
        that machine are forgotten."""
        stamp = now_iso()
        with self.write() as db:
            db.execute("DELETE FROM machine_sessions WHERE machine = ?", (machine,))
            if sessions:
                db.executemany(
                    """INSERT INTO machine_sessions (name, machine, cli, parent, status, seen_at)
                       VALUES (?, ?, ?, ?, ?, ?)""",
                    [(name, machine, cli, parent, status, stamp) for name, cli, parent, status in sessions],
                )

    def machine_sessions(self, name: str | None = None) -> list[tuple[str, str, str, str | None, str, str]]:
        """The sessions the machines said they have ((name, machine, cli, parent, status, seen_at)), or
        those named ``name``."""
        query = "SELECT name, machine, cli, parent, status, seen_at FROM machine_sessions"
        args: tuple[str, ...] = ()
        if name is not None:
            query += " WHERE name = ?"
            args = (name,)
        rows = self.db.execute(query + " ORDER BY name, machine", args).fetchall()
        return [(row[0], row[1], row[2], row[3], row[4], row[5]) for row in rows]

    def origin_machine(self, message_id: int) -> str | None:
        """The machine a message was sent from (None: not said, a store of one machine)."""
        row = self.db.execute("SELECT machine FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise MessageNotFound(message_id=message_id)
        return str(row[0]) if row[0] is not None else None

    # -- spaces ------------------------------------------------------------------------------------------

    def space(self, name: str) -> Space | None:
        row = self.db.execute(
            """SELECT s.name, s.parent, s.description, s.created_at, s.created_by,
                      (SELECT count(*) FROM members WHERE space = s.name), s.project
               FROM spaces s WHERE s.name = ?""",
            (name,),
        ).fetchone()
        return Space(*row) if row else None

    def spaces(self, project: str | None = None) -> list[Space]:
        """Every space (those of ``project``, when given)."""
        where, args = ("WHERE s.project = ?", (project,)) if project is not None else ("", ())
        rows = self.db.execute(
            f"""SELECT s.name, s.parent, s.description, s.created_at, s.created_by,
                      (SELECT count(*) FROM members WHERE space = s.name), s.project
               FROM spaces s {where} ORDER BY s.name""",
            args,
        )
        return [Space(*row) for row in rows]

    @one_write
    def create_space(
        self, name: str, parent: str | None, description: str, by: str, project: str | None = None
    ) -> Space:
        with self.write() as db:
            if db.execute("SELECT 1 FROM spaces WHERE name = ?", (name,)).fetchone():
                raise UsageError(f"space {name}: already exists")
            if (
                project is not None
                and not db.execute("SELECT 1 FROM projects WHERE name = ?", (project,)).fetchone()
            ):
                raise ProjectNotFound(name=project)
            if parent is not None:
                depth = self._depth(parent)
                if depth is None:
                    raise SpaceNotFound(name=parent)
                if depth + 1 > MAX_SPACE_DEPTH:
                    raise UsageError(f"space {name}: spaces nest at most {MAX_SPACE_DEPTH} levels deep")
            db.execute(
                """INSERT INTO spaces (name, parent, description, created_at, created_by, project)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                (name, parent, description, now_iso(), by, project),
            )
        space = self.space(name)
        assert space is not None
        return space

    def _depth(self, name: str) -> int | None:
        row = self.db.execute(
            """WITH RECURSIVE chain(name, parent, depth) AS (
                   SELECT name, parent, 1 FROM spaces WHERE name = ?
                   UNION ALL SELECT s.name, s.parent, c.depth + 1 FROM spaces s JOIN chain c ON s.name = c.parent
               ) SELECT max(depth) FROM chain""",
            (name,),
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    @one_write
    def join(self, space: str, agent: str) -> bool:
        with self.write() as db:
            if not db.execute("SELECT 1 FROM spaces WHERE name = ?", (space,)).fetchone():
                raise SpaceNotFound(name=space)
            cursor = db.execute(
                "INSERT INTO members (space, agent, joined_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (space, agent, now_iso()),
            )
        return cursor.rowcount > 0

    @one_write
    def leave(self, space: str, agent: str) -> bool:
        if self.space(space) is None:
            raise SpaceNotFound(name=space)
        with self.write() as db:
            cursor = db.execute("DELETE FROM members WHERE space = ? AND agent = ?", (space, agent))
        return cursor.rowcount > 0

    def members(self, space: str) -> list[tuple[str, str]]:
        if self.space(space) is None:
            raise SpaceNotFound(name=space)
        rows = self.db.execute(
            "SELECT agent, joined_at FROM members WHERE space = ? ORDER BY agent", (space,)
        )
        return [(row[0], row[1]) for row in rows]

    # -- messages ----------------------------------------------------------------------------------------

    @one_write
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
        """Store a message and a receipt per recipient (``{name: "conversation" | "mailbox" | "host"}``),
        at once.

        A recipient reached through its conversation or its host starts ``queued``; a mailbox is
        ``delivered``. ``origin`` (host, id there) marks a copy of a host's message: it is stored once,
        and the message already stored for it is returned the next time. ``machine`` is the sender's
        machine, ``machines`` the machine of each recipient that is a session (whose deliverer delivers it).
        """
        if priority not in PRIORITIES:
            raise UsageError(f"--priority {priority!r}: choose one of {', '.join(PRIORITIES)}")
        stamp, stamp_ms = now_iso(), now_ms()
        meta = json.dumps(metadata, ensure_ascii=False) if metadata is not None else None
        with self.write() as db:
            if origin is not None:
                row = db.execute(
                    "SELECT message FROM relays WHERE host = ? AND remote = ?", origin
                ).fetchone()
                if row is not None:
                    return self.message(int(row[0]))
            thread = None
            if reply_to is not None:
                row = db.execute("SELECT thread FROM messages WHERE id = ?", (reply_to,)).fetchone()
                if row is None:
                    raise MessageNotFound(message_id=reply_to)
                thread = row[0]
            message_id = self._insert(
                db,
                """INSERT INTO messages (sender, space, priority, body, metadata, reply_to, thread, created_at, created_ms, machine)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (sender, space, priority, body, meta, reply_to, thread or 0, stamp, stamp_ms, machine),
            )
            if thread is None:
                db.execute("UPDATE messages SET thread = id WHERE id = ?", (message_id,))
            db.executemany(
                """INSERT INTO receipts (message, recipient, state, via, delivered_at, machine) VALUES (?, ?, ?, ?, ?, ?)""",
                [
                    (message_id, name, "delivered" if via == "mailbox" else "queued", via,
                     stamp if via == "mailbox" else None, (machines or {}).get(name))
                    for name, via in recipients.items()
                ],
            )  # fmt: skip
            if origin is not None:
                db.execute(
                    "INSERT INTO relays (message, host, remote) VALUES (?, ?, ?)", (message_id, *origin)
                )
            self._announce(db, list(recipients), space)
            if reply_to is not None:
                # Answering a message is reading it.
                db.execute(
                    "UPDATE receipts SET state = 'read', read_at = ? WHERE message = ? AND recipient = ? AND state != 'read'",
                    (stamp, reply_to, sender),
                )
        return self.message(message_id)

    def message(self, message_id: int) -> Message:
        row = self.db.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?", (message_id,)
        ).fetchone()
        if row is None:
            raise MessageNotFound(message_id=message_id)
        return message_of(row)

    def receipts(self, message_id: int) -> list[Receipt]:
        self.message(message_id)
        rows = self.db.execute(
            f"SELECT {_RECEIPT_COLUMNS} FROM receipts r WHERE r.message = ? ORDER BY r.recipient",
            (message_id,),
        )
        return [_receipt(row) for row in rows]

    def inbox(
        self,
        reader: str,
        *,
        unread: bool = False,
        sender: str | None = None,
        since_ms: int | None = None,
        limit: int | None = None,
        space: str | None = None,
        after_id: int | None = None,
        project: str | None = None,
    ) -> list[Message]:
        """Messages to ``reader`` (newest last), with the reader's receipt; with ``project``, only the
        direct ones and those of the project's spaces."""
        clauses = ["r.recipient = ?"]
        args: list[Any] = [reader]
        if unread:
            clauses.append("r.state != 'read'")
        if sender is not None:
            clauses.append("m.sender = ?")
            args.append(sender)
        if since_ms is not None:
            clauses.append("m.created_ms >= ?")
            args.append(since_ms)
        if space is not None:
            clauses.append("m.space = ?")
            args.append(space)
        if after_id is not None:
            clauses.append("m.id > ?")
            args.append(after_id)
        if project is not None:
            clauses.append("(m.space IS NULL OR m.space IN (SELECT name FROM spaces WHERE project = ?))")
            args.append(project)
        query = f"""SELECT {MESSAGE_COLUMNS}, {_RECEIPT_COLUMNS} FROM receipts r JOIN messages m ON m.id = r.message
                    WHERE {" AND ".join(clauses)} ORDER BY m.id DESC"""
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        rows = self.db.execute(query, args).fetchall()
        return [message_of(row[:9], _receipt(row[9:])) for row in reversed(rows)]

    @one_write
    def mark_read(self, reader: str, message_ids: Iterable[int] | None) -> int:
        """Mark messages to ``reader`` read (all of them when ``message_ids`` is None); how many changed."""
        stamp = now_iso()
        with self.write() as db:
            if message_ids is None:
                cursor = db.execute(
                    "UPDATE receipts SET state = 'read', read_at = ? WHERE recipient = ? AND state != 'read'",
                    (stamp, reader),
                )
                return cursor.rowcount
            changed = 0
            for message_id in message_ids:
                cursor = db.execute(
                    "UPDATE receipts SET state = 'read', read_at = ? WHERE recipient = ? AND message = ? AND state != 'read'",
                    (stamp, reader, message_id),
                )
                changed += cursor.rowcount
            return changed

    def thread(self, message_id: int, viewer: str | None = None) -> list[Message]:
        root = self.message(message_id).thread
        where, args = visible_to(viewer)
        rows = self.db.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.thread = ? AND {where} ORDER BY m.id",
            (root, *args),
        )
        return [message_of(row) for row in rows]

    def search(self, query: str, limit: int = 50, viewer: str | None = None) -> list[Message]:
        where, args = visible_to(viewer)
        try:
            rows = self.db.execute(
                f"""SELECT {MESSAGE_COLUMNS} FROM messages_fts f JOIN messages m ON m.id = f.rowid
                    WHERE messages_fts MATCH ? AND {where} ORDER BY f.rank LIMIT ?""",
                (query, *args, limit),
            ).fetchall()
        except sqlite3.OperationalError as err:
            raise UsageError(f"search: {query!r} is not a search query ({err})") from None
        return [message_of(row) for row in rows]

    def feed(
        self,
        since_ms: int | None = None,
        limit: int | None = None,
        viewer: str | None = None,
        project: str | None = None,
    ) -> list[Message]:
        """The latest messages (those ``viewer`` sent or received; those of ``project``'s spaces)."""
        where, args = visible_to(viewer)
        if project is not None:
            where += " AND m.space IN (SELECT name FROM spaces WHERE project = ?)"
            args = (*args, project)
        return self._latest(where, list(args), since_ms, limit)

    def space_messages(
        self, space: str, since_ms: int | None = None, limit: int | None = None
    ) -> list[Message]:
        if self.space(space) is None:
            raise SpaceNotFound(name=space)
        return self._latest("m.space = ?", [space], since_ms, limit)

    def _latest(self, where: str, args: list[Any], since_ms: int | None, limit: int | None) -> list[Message]:
        """The newest ``limit`` messages matching ``where`` (since ``since_ms``), oldest first."""
        query = f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE {where}"
        if since_ms is not None:
            query += " AND m.created_ms >= ?"
            args = [*args, since_ms]
        query += " ORDER BY m.id DESC"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        return [message_of(row) for row in reversed(self.db.execute(query, args).fetchall())]

    def last_id(self) -> int:
        row = self.db.execute("SELECT max(id) FROM messages").fetchone()
        return int(row[0] or 0)

    def stamp(self) -> tuple[int, ...]:
        """Numbers that change when what a messages page shows may have: the newest message, the
        receipts read, the spaces, their members and the agents (a face on a server, where no file
        changes, compares them between looks)."""
        row = self.db.execute(
            """SELECT (SELECT max(id) FROM messages), (SELECT count(*) FROM receipts WHERE read_at IS NOT NULL),
                      (SELECT count(*) FROM spaces), (SELECT count(*) FROM members),
                      (SELECT count(*) FROM agents)"""
        ).fetchone()
        return tuple(int(value or 0) for value in row)

    # -- delivery ------------------------------------------------------------------------------------------

    def due(self, at_ms: int | None = None) -> list[tuple[Message, Receipt]]:
        """Receipts waiting for delivery into a conversation: queued ones, and failed ones due a retry."""
        at = now_ms() if at_ms is None else at_ms
        rows = self.db.execute(
            f"""SELECT {MESSAGE_COLUMNS}, {_RECEIPT_COLUMNS} FROM receipts r JOIN messages m ON m.id = r.message
                WHERE r.state = 'queued' OR (r.state = 'failed' AND r.retry_at_ms IS NOT NULL AND r.retry_at_ms <= ?)
                ORDER BY m.id""",
            (at,),
        ).fetchall()
        return [(message_of(row[:9]), _receipt(row[9:])) for row in rows]

    def next_retry_ms(self, recipients: Sequence[str] | None = None) -> int | None:
        """When the next failed delivery is due again (to one of ``recipients``, when given)."""
        query = "SELECT min(retry_at_ms) FROM receipts WHERE state = 'failed' AND retry_at_ms IS NOT NULL"
        if recipients is not None:
            query += f" AND recipient IN ({', '.join('?' * len(recipients)) or 'NULL'})"
        row = self.db.execute(query, tuple(recipients or ())).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    @contextmanager
    def claim(self, message_id: int, recipient: str) -> Iterator[bool]:
        """Hold the delivery of one receipt while it is made: yields True when it is still due (queued,
        or failed and due a retry) and no other deliverer holds it; deliver and mark it before leaving.

        SQLite's store has one deliverer (``deliverer.lock``), so the look is all there is to it; on a
        server several machines' deliverers may see the same receipt, and the PostgreSQL store holds
        a lock there too (see its ``claim``)."""
        yield self._still_due(message_id, recipient)

    def _still_due(self, message_id: int, recipient: str) -> bool:
        row = self.db.execute(
            "SELECT state, retry_at_ms FROM receipts WHERE message = ? AND recipient = ?",
            (message_id, recipient),
        ).fetchone()
        if row is None:
            return False
        return row[0] == "queued" or (row[0] == "failed" and row[1] is not None and row[1] <= now_ms())

    @one_write
    def pasting(self, message_id: int, recipient: str, by: str) -> None:
        """Say, before typing the notice into the recipient's session, that it is being typed: until
        :meth:`delivered` clears it, a later deliverer knows the notice may be in the conversation."""
        with self.write() as db:
            db.execute(
                """UPDATE receipts SET pasting_at = ?, pasting_by = ?
                   WHERE message = ? AND recipient = ? AND state IN ('queued', 'failed')""",
                (now_iso(), by, message_id, recipient),
            )

    @one_write
    def delivered(self, message_id: int, recipient: str) -> None:
        with self.write() as db:
            db.execute(
                """UPDATE receipts SET state = 'delivered', delivered_at = ?, attempts = attempts + 1,
                   retry_at_ms = NULL, pasting_at = NULL, pasting_by = NULL
                   WHERE message = ? AND recipient = ? AND state IN ('queued', 'failed')""",
                (now_iso(), message_id, recipient),
            )

    @one_write
    def relayed(self, message_id: int, recipient: str, host: str, remote_id: int) -> None:
        """A message handed to ``recipient``'s host, where it is message ``remote_id``."""
        with self.write() as db:
            db.execute(
                "INSERT INTO relays (message, host, remote, recipient) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (message_id, host, remote_id, recipient),
            )
            db.execute(
                """UPDATE receipts SET state = 'delivered', delivered_at = ?, attempts = attempts + 1,
                   retry_at_ms = NULL, reason = NULL WHERE message = ? AND recipient = ? AND state IN ('queued', 'failed')""",
                (now_iso(), message_id, recipient),
            )

    def receipt(self, message_id: int, recipient: str) -> Receipt | None:
        row = self.db.execute(
            f"SELECT {_RECEIPT_COLUMNS} FROM receipts r WHERE r.message = ? AND r.recipient = ?",
            (message_id, recipient),
        ).fetchone()
        return _receipt(row) if row else None

    def remote_id(self, message_id: int, host: str, recipient: str | None = None) -> int | None:
        """Which message ``message_id`` is on ``host``, if any: the one relayed to ``recipient``, else
        the one it was copied from, else any one relayed there."""
        row = self.db.execute(
            """SELECT remote FROM relays WHERE message = ? AND host = ?
               ORDER BY CASE WHEN recipient = ? THEN 0 WHEN recipient IS NULL THEN 1 ELSE 2 END, remote LIMIT 1""",
            (message_id, host, recipient),
        ).fetchone()
        return int(row[0]) if row else None

    def local_id(self, host: str, remote_id: int) -> int | None:
        """Which message here is ``host``'s message ``remote_id``, if any."""
        row = self.db.execute(
            "SELECT message FROM relays WHERE host = ? AND remote = ?", (host, remote_id)
        ).fetchone()
        return int(row[0]) if row else None

    def relay_senders(self) -> set[tuple[str, str]]:
        """(sender, host) for every message this store relayed to a host: who may get replies there."""
        rows = self.db.execute(
            "SELECT DISTINCT m.sender, x.host FROM relays x JOIN messages m ON m.id = x.message"
        )
        return {(str(row[0]), str(row[1])) for row in rows}

    def _exists(self, db: Database, message_id: int) -> None:
        if db.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone() is None:
            raise MessageNotFound(message_id=message_id)

    # -- reactions and pins ----------------------------------------------------------------------------

    @one_write
    def react(self, message_id: int, agent: str, emoji: str) -> bool:
        """``agent`` reacts to a message with ``emoji``; False when it had already."""
        with self.write() as db:
            self._exists(db, message_id)
            cursor = db.execute(
                """INSERT INTO reactions (message, agent, emoji, created_at) VALUES (?, ?, ?, ?)
                   ON CONFLICT DO NOTHING""",
                (message_id, agent, emoji, now_iso()),
            )
        return cursor.rowcount > 0

    @one_write
    def unreact(self, message_id: int, agent: str, emoji: str) -> bool:
        """Take ``agent``'s reaction back; False when there was none."""
        with self.write() as db:
            self._exists(db, message_id)
            cursor = db.execute(
                "DELETE FROM reactions WHERE message = ? AND agent = ? AND emoji = ?",
                (message_id, agent, emoji),
            )
        return cursor.rowcount > 0

    def _reactions_of(self, ids: Sequence[int]) -> dict[int, tuple[tuple[str, tuple[str, ...]], ...]]:
        """{message: ((emoji, (agent, ...)), ...)} for those of ``ids`` with reactions, each emoji with
        who reacted, in the order they came (one query per few hundred ids)."""
        who: dict[int, dict[str, list[str]]] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            rows = self.db.execute(
                f"""SELECT message, emoji, agent FROM reactions WHERE message IN ({", ".join("?" * len(chunk))})
                    ORDER BY created_at, agent""",
                list(chunk),
            )
            for message, emoji, agent in rows:
                who.setdefault(int(message), {}).setdefault(str(emoji), []).append(str(agent))
        return {m: tuple((e, tuple(a)) for e, a in by.items()) for m, by in who.items()}

    def with_reactions(self, messages: list[Message]) -> list[Message]:
        """The messages, each with its reactions."""
        found = self._reactions_of([m.id for m in messages])
        return [replace(m, reactions=found[m.id]) if m.id in found else m for m in messages]

    def reactions(self, message_id: int) -> list[Reaction]:
        """The reactions to a message, each emoji with who reacted, in the order they came."""
        from dev_sessions.messaging.results import Reaction

        self._exists(self.db, message_id)
        return [Reaction(e, agents) for e, agents in self._reactions_of([message_id]).get(message_id, ())]

    @one_write
    def pin(self, message_id: int, by: str) -> bool:
        """Pin a message; False when it was pinned already (by anyone)."""
        with self.write() as db:
            self._exists(db, message_id)
            cursor = db.execute(
                "INSERT INTO pins (message, pinned_by, pinned_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (message_id, by, now_iso()),
            )
        return cursor.rowcount > 0

    @one_write
    def unpin(self, message_id: int) -> bool:
        """Unpin a message; False when it was not pinned."""
        with self.write() as db:
            self._exists(db, message_id)
            cursor = db.execute("DELETE FROM pins WHERE message = ?", (message_id,))
        return cursor.rowcount > 0

    def pins(
        self,
        *,
        space: str | None = None,
        reader: str | None = None,
        peer: str | None = None,
        viewer: str | None = None,
    ) -> list[Pin]:
        """Pinned messages, oldest pin first: of a ``space``; of the direct conversation of ``reader``
        and ``peer``; else every one ``reader`` sent or received (every one for None). Only those
        ``viewer`` sent or received, when given."""
        from dev_sessions.messaging.results import Pin

        clauses: list[str] = []
        args: list[Any] = []
        if space is not None:
            clauses.append("m.space = ?")
            args.append(space)
        elif peer is not None and reader is not None:
            mine = "EXISTS (SELECT 1 FROM receipts r WHERE r.message = m.id AND r.recipient = ?)"
            clauses.append(f"m.space IS NULL AND ((m.sender = ? AND {mine}) OR (m.sender = ? AND {mine}))")
            args += [reader, peer, peer, reader]
        else:
            where, more = visible_to(reader)
            clauses.append(where)
            args += more
        where, more = visible_to(viewer)
        clauses.append(where)
        args += more
        rows = self.db.execute(
            f"""SELECT {MESSAGE_COLUMNS}, p.pinned_by, p.pinned_at FROM pins p JOIN messages m ON m.id = p.message
                WHERE {" AND ".join(clauses)} ORDER BY p.pinned_at, m.id""",
            args,
        ).fetchall()
        return [Pin(message_of(row[:9]), row[9], row[10]) for row in rows]

    # -- conversations, mentions, counts -----------------------------------------------------------------

    def conversation_rows(self, me: str) -> list[tuple[int, str, str | None, str | None, str | None]]:
        """(message id, sender, space, recipient, its state): a row per recipient of every message
        ``me`` sent or received, oldest first (see :func:`dev_sessions.messaging.conversations.group`)."""
        rows = self.db.execute(
            """SELECT m.id, m.sender, m.space, r.recipient, r.state FROM messages m
               LEFT JOIN receipts r ON r.message = m.id
               WHERE m.sender = ? OR EXISTS (SELECT 1 FROM receipts x WHERE x.message = m.id AND x.recipient = ?)
               ORDER BY m.id""",
            (me, me),
        )
        return [(int(row[0]), row[1], row[2], row[3], row[4]) for row in rows]

    def messages_of(self, message_ids: Collection[int], reader: str | None = None) -> dict[int, Message]:
        """The messages of these ids (by id), with ``reader``'s receipt where it has one."""
        if not message_ids:
            return {}
        marks = ", ".join("?" * len(message_ids))
        rows = self.db.execute(
            f"""SELECT {MESSAGE_COLUMNS}, {_RECEIPT_COLUMNS} FROM messages m
                LEFT JOIN receipts r ON r.message = m.id AND r.recipient = ? WHERE m.id IN ({marks})""",
            (reader, *message_ids),
        )
        return {int(row[0]): _with_receipt(row) for row in rows}

    def mentioning(self, name: str, viewer: str | None = None, limit: int = 200) -> list[Message]:
        """The newest messages (at most ``limit``, newest first) whose body has ``@name`` in it,
        not sent by ``name``, with its receipt where it has one; a caller checks the name is whole."""
        where, args = visible_to(viewer)
        rows = self.db.execute(
            f"""SELECT {MESSAGE_COLUMNS}, {_RECEIPT_COLUMNS} FROM messages m
                LEFT JOIN receipts r ON r.message = m.id AND r.recipient = ?
                WHERE m.body LIKE ? ESCAPE '\\' AND m.sender != ? AND {where} ORDER BY m.id DESC LIMIT ?""",
            (name, _like(f"@{name}"), name, *args, limit),
        )
        return [_with_receipt(row) for row in rows]

    def unread_count(self, reader: str) -> int:
        row = self.db.execute(
            "SELECT count(*) FROM receipts WHERE recipient = ? AND state != 'read'", (reader,)
        ).fetchone()
        return int(row[0])

    def spaces_of(self, agent: str) -> list[str]:
        rows = self.db.execute("SELECT space FROM members WHERE agent = ? ORDER BY space", (agent,))
        return [str(row[0]) for row in rows]

    def counts(self) -> dict[str, int]:
        """How many outside agents, messages, unread receipts, spaces, pins, projects and live leases the
        store holds."""
        row = self.db.execute(
            """SELECT (SELECT count(*) FROM agents), (SELECT count(*) FROM messages),
                      (SELECT count(*) FROM receipts WHERE state != 'read'), (SELECT count(*) FROM spaces),
                      (SELECT count(*) FROM pins), (SELECT count(*) FROM projects),
                      (SELECT count(*) FROM leases WHERE expires_ms > ?)""",
            (int(time.time() * 1000),),
        ).fetchone()
        names = ("agents", "messages", "unread", "spaces", "pinned", "projects", "leases")
        return dict(zip(names, map(int, row), strict=True))

    # -- retention -----------------------------------------------------------------------------------------

    @one_write
    def prune(self, before_ms: int, *, dry_run: bool = False) -> tuple[int, int, int]:
        """Delete the messages created before ``before_ms`` that are not pinned (their receipts,
        reactions and links go with them; on SQLite the FTS5 index is kept by its trigger, on
        PostgreSQL the search column is the row's). A reply that stays loses its ``reply_to`` when
        its parent goes, and keeps its ``thread``. Returns (pruned, old ones kept as pinned, replies
        detached), which a ``dry_run`` counts without deleting."""
        doomed = "m.created_ms < ? AND NOT EXISTS (SELECT 1 FROM pins p WHERE p.message = m.id)"
        kept = "(k.created_ms >= ? OR EXISTS (SELECT 1 FROM pins q WHERE q.message = k.id))"
        orphans = f"k.reply_to IN (SELECT m.id FROM messages m WHERE {doomed}) AND {kept}"

        def count(db: Database) -> tuple[int, int, int]:
            row = db.execute(
                f"""SELECT (SELECT count(*) FROM messages m WHERE {doomed}),
                           (SELECT count(*) FROM messages m JOIN pins p ON p.message = m.id WHERE m.created_ms < ?),
                           (SELECT count(*) FROM messages k WHERE {orphans})""",
                (before_ms, before_ms, before_ms, before_ms),
            ).fetchone()
            return int(row[0]), int(row[1]), int(row[2])

        if dry_run:
            return count(self.db)
        with self.write() as db:
            found = count(db)
            if found[0]:
                db.execute(
                    f"UPDATE messages SET reply_to = NULL WHERE id IN (SELECT k.id FROM messages k WHERE {orphans})",
                    (before_ms, before_ms),
                )
                db.execute(
                    f"DELETE FROM messages WHERE id IN (SELECT m.id FROM messages m WHERE {doomed})",
                    (before_ms,),
                )
        return found

    @one_write
    def failed(self, message_id: int, recipient: str, reason: str, retry_at_ms: int | None) -> None:
        with self.write() as db:
            db.execute(
                """UPDATE receipts SET state = 'failed', failed_at = ?, reason = ?, attempts = attempts + 1,
                   retry_at_ms = ? WHERE message = ? AND recipient = ? AND state IN ('queued', 'failed')""",
                (now_iso(), reason, retry_at_ms, message_id, recipient),
            )
