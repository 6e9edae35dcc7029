"""The message store: ``$DEV_SESSIONS_HOME/messages.db`` (SQLite), the only code that touches it.

Messages, spaces, memberships, outside agents and per-recipient delivery state live here, next to
the session store. SQLite in WAL mode lets many processes read while one writes; every write is one
``BEGIN IMMEDIATE`` transaction, with a busy timeout rather than an error when another writer holds
the lock. A message and all its receipts commit together, so a process killed at any moment leaves
either the whole message or nothing (``synchronous=NORMAL`` in WAL mode survives process death; it
is power loss that could cost the last transactions).

The schema is versioned with ``PRAGMA user_version`` and upgraded by ``MIGRATIONS`` in order; a
database from a newer dev-sessions is refused, never downgraded. Bodies are indexed with FTS5.

Delivery states of a receipt: ``queued`` (waiting for the recipient's next idle point), ``delivered``
(put into its conversation, or into the mailbox of an agent that has none), ``read`` (marked read or
replied to), ``failed`` (with its reason; retried until ``retry_at_ms`` is null).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dev_sessions.errors import DevSessionsError, MessageNotFound, SpaceNotFound, StoreTooNew, UsageError
from dev_sessions.files import check_not_link, private_dir
from dev_sessions.store import now_iso

PRIORITIES = ("low", "normal", "high", "urgent")
Priority = Literal["low", "normal", "high", "urgent"]
MAX_SPACE_DEPTH = 3
BUSY_TIMEOUT_MS = 15000

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
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
            ) WITHOUT ROWID""",
            """CREATE TABLE messages (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                sender TEXT NOT NULL,
                space TEXT,
                priority TEXT NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
                body TEXT NOT NULL,
                metadata TEXT,
                reply_to INTEGER REFERENCES messages(id),
                thread INTEGER NOT NULL,
                created_at TEXT NOT NULL,
                created_ms INTEGER NOT NULL
            )""",
            "CREATE INDEX messages_thread ON messages(thread, id)",
            "CREATE INDEX messages_created ON messages(created_ms)",
            "CREATE INDEX messages_space ON messages(space, id) WHERE space IS NOT NULL",
            """CREATE TABLE receipts (
                message INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
                recipient TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('queued', 'delivered', 'read', 'failed')),
                via TEXT NOT NULL CHECK (via IN ('conversation', 'mailbox')),
                delivered_at TEXT,
                read_at TEXT,
                failed_at TEXT,
                reason TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                retry_at_ms INTEGER,
                PRIMARY KEY (message, recipient)
            ) WITHOUT ROWID""",
            "CREATE INDEX receipts_inbox ON receipts(recipient, state, message)",
            "CREATE INDEX receipts_pending ON receipts(state, retry_at_ms) WHERE state IN ('queued', 'failed')",
            """CREATE VIRTUAL TABLE messages_fts USING fts5(
                body, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
            )""",
            """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
                INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body);
            END""",
            """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
                INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
            END""",
        ],
    ),
]


@dataclass(frozen=True)
class Receipt:
    recipient: str
    state: str
    via: str
    delivered_at: str | None = None
    read_at: str | None = None
    failed_at: str | None = None
    reason: str | None = None
    attempts: int = 0
    retry_at_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "recipient": self.recipient,
            "state": self.state,
            "via": self.via,
            "deliveredAt": self.delivered_at,
            "readAt": self.read_at,
            "failedAt": self.failed_at,
            "reason": self.reason,
            "attempts": self.attempts,
            "retrying": self.retry_at_ms is not None and self.state == "failed",
        }


@dataclass(frozen=True)
class Message:
    id: int
    sender: str
    space: str | None
    priority: str
    body: str
    metadata: dict[str, Any] | None
    reply_to: int | None
    thread: int
    created_at: str
    receipt: Receipt | None = None
    """The reader's own receipt, when the message was read as someone's mail."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "from": self.sender,
            "space": self.space,
            "priority": self.priority,
            "body": self.body,
            "metadata": self.metadata,
            "replyTo": self.reply_to,
            "thread": self.thread,
            "createdAt": self.created_at,
        }
        if self.receipt is not None:
            data["state"] = self.receipt.state
        return data


@dataclass(frozen=True)
class Space:
    name: str
    parent: str | None
    description: str
    created_at: str
    created_by: str
    members: int = 0


@dataclass(frozen=True)
class Agent:
    name: str
    registered_at: str
    last_seen: str | None
    status: str | None


_MESSAGE_COLUMNS = (
    "m.id, m.sender, m.space, m.priority, m.body, m.metadata, m.reply_to, m.thread, m.created_at"
)
_RECEIPT_COLUMNS = (
    "r.recipient, r.state, r.via, r.delivered_at, r.read_at, r.failed_at, r.reason, r.attempts, r.retry_at_ms"
)


def _message(row: Sequence[Any], receipt: Receipt | None = None) -> Message:
    metadata = json.loads(row[5]) if row[5] else None
    return Message(row[0], row[1], row[2], row[3], row[4], metadata, row[6], row[7], row[8], receipt)


def _receipt(row: Sequence[Any]) -> Receipt:
    return Receipt(*row)


def _visible_to(viewer: str | None) -> tuple[str, tuple[str, ...]]:
    """A WHERE clause for the messages ``viewer`` sent or received (all of them for None)."""
    if viewer is None:
        return "1", ()
    clause = "(m.sender = ? OR EXISTS (SELECT 1 FROM receipts r WHERE r.message = m.id AND r.recipient = ?))"
    return clause, (viewer, viewer)


def now_ms() -> int:
    return int(time.time() * 1000)


class MessageStore:
    def __init__(self, path: Path, migrations: list[tuple[int, list[str]]] | None = None) -> None:
        self.path = path
        self.migrations = MIGRATIONS if migrations is None else migrations
        private_dir(path.parent)
        for suffix in ("", "-wal", "-shm", "-journal"):  # SQLite itself follows links
            check_not_link(path.with_name(path.name + suffix))
        self.db = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = self.db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise DevSessionsError(f"{path}: cannot use SQLite WAL mode here (got {mode})")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute("PRAGMA foreign_keys = ON")
        path.chmod(0o600)
        self._migrate()

    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        latest = self.migrations[-1][0] if self.migrations else 0
        if self.version == latest:
            return
        with self.write():
            current = self.version  # again, under the write lock: another process may have migrated
            if current > latest:
                raise StoreTooNew(path=str(self.path), version=current)
            for version, statements in self.migrations:
                if version <= current:
                    continue
                for statement in statements:
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {int(version)}")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: writers queue on the busy timeout, never fail)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    # -- agents ------------------------------------------------------------------------------------------

    def register_agent(self, name: str) -> Agent:
        stamp = now_iso()
        with self.write() as db:
            db.execute(
                "INSERT INTO agents (name, registered_at, last_seen) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING",
                (name, stamp, stamp),
            )
        agent = self.agent(name)
        assert agent is not None
        return agent

    def agent(self, name: str) -> Agent | None:
        row = self.db.execute(
            "SELECT name, registered_at, last_seen, status FROM agents WHERE name = ?", (name,)
        ).fetchone()
        return Agent(*row) if row else None

    def agents(self) -> list[Agent]:
        rows = self.db.execute("SELECT name, registered_at, last_seen, status FROM agents ORDER BY name")
        return [Agent(*row) for row in rows]

    def heartbeat(self, name: str, status: str | None) -> None:
        stamp = now_iso()
        with self.write() as db:
            db.execute(
                """INSERT INTO agents (name, registered_at, last_seen, status) VALUES (?, ?, ?, ?)
                   ON CONFLICT(name) DO UPDATE SET last_seen = excluded.last_seen,
                   status = coalesce(excluded.status, agents.status)""",
                (name, stamp, stamp, status),
            )

    # -- spaces ------------------------------------------------------------------------------------------

    def space(self, name: str) -> Space | None:
        row = self.db.execute(
            """SELECT s.name, s.parent, s.description, s.created_at, s.created_by,
                      (SELECT count(*) FROM members WHERE space = s.name)
               FROM spaces s WHERE s.name = ?""",
            (name,),
        ).fetchone()
        return Space(*row) if row else None

    def spaces(self) -> list[Space]:
        rows = self.db.execute(
            """SELECT s.name, s.parent, s.description, s.created_at, s.created_by,
                      (SELECT count(*) FROM members WHERE space = s.name)
               FROM spaces s ORDER BY s.name"""
        )
        return [Space(*row) for row in rows]

    def create_space(self, name: str, parent: str | None, description: str, by: str) -> Space:
        with self.write() as db:
            if db.execute("SELECT 1 FROM spaces WHERE name = ?", (name,)).fetchone():
                raise UsageError(f"space {name}: already exists")
            if parent is not None:
                depth = self._depth(parent)
                if depth is None:
                    raise SpaceNotFound(name=parent)
                if depth + 1 > MAX_SPACE_DEPTH:
                    raise UsageError(f"space {name}: spaces nest at most {MAX_SPACE_DEPTH} levels deep")
            db.execute(
                "INSERT INTO spaces (name, parent, description, created_at, created_by) VALUES (?, ?, ?, ?, ?)",
                (name, parent, description, now_iso(), by),
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

    def join(self, space: str, agent: str) -> bool:
        with self.write() as db:
            if not db.execute("SELECT 1 FROM spaces WHERE name = ?", (space,)).fetchone():
                raise SpaceNotFound(name=space)
            cursor = db.execute(
                "INSERT INTO members (space, agent, joined_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (space, agent, now_iso()),
            )
        return cursor.rowcount > 0

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
    ) -> Message:
        """Store a message and a receipt per recipient (``{name: "conversation" | "mailbox"}``), at once.

        A recipient reached through its conversation starts ``queued``; a mailbox is ``delivered``.
        """
        if priority not in PRIORITIES:
            raise UsageError(f"--priority {priority!r}: choose one of {', '.join(PRIORITIES)}")
        stamp, stamp_ms = now_iso(), now_ms()
        meta = json.dumps(metadata, ensure_ascii=False) if metadata is not None else None
        with self.write() as db:
            thread = None
            if reply_to is not None:
                row = db.execute("SELECT thread FROM messages WHERE id = ?", (reply_to,)).fetchone()
                if row is None:
                    raise MessageNotFound(message_id=reply_to)
                thread = row[0]
            cursor = db.execute(
                """INSERT INTO messages (sender, space, priority, body, metadata, reply_to, thread, created_at, created_ms)
                   VALUES (?, ?, ?, ?, ?, ?, coalesce(?, 0), ?, ?)""",
                (sender, space, priority, body, meta, reply_to, thread, stamp, stamp_ms),
            )
            message_id = int(cursor.lastrowid or 0)
            if thread is None:
                db.execute("UPDATE messages SET thread = id WHERE id = ?", (message_id,))
            db.executemany(
                """INSERT INTO receipts (message, recipient, state, via, delivered_at) VALUES (?, ?, ?, ?, ?)""",
                [
                    (message_id, name, "queued" if via == "conversation" else "delivered", via,
                     None if via == "conversation" else stamp)
                    for name, via in recipients.items()
                ],
            )  # fmt: skip
            if reply_to is not None:
                # Answering a message is reading it.
                db.execute(
                    "UPDATE receipts SET state = 'read', read_at = ? WHERE message = ? AND recipient = ? AND state != 'read'",
                    (stamp, reply_to, sender),
                )
        return self.message(message_id)

    def message(self, message_id: int) -> Message:
        row = self.db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?", (message_id,)
        ).fetchone()
        if row is None:
            raise MessageNotFound(message_id=message_id)
        return _message(row)

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
    ) -> list[Message]:
        """Messages to ``reader`` (newest last), with the reader's receipt."""
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
        query = f"""SELECT {_MESSAGE_COLUMNS}, {_RECEIPT_COLUMNS} FROM receipts r JOIN messages m ON m.id = r.message
                    WHERE {" AND ".join(clauses)} ORDER BY m.id DESC"""
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        rows = self.db.execute(query, args).fetchall()
        return [_message(row[:9], _receipt(row[9:])) for row in reversed(rows)]

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
        where, args = _visible_to(viewer)
        rows = self.db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE m.thread = ? AND {where} ORDER BY m.id",
            (root, *args),
        )
        return [_message(row) for row in rows]

    def search(self, query: str, limit: int = 50, viewer: str | None = None) -> list[Message]:
        where, args = _visible_to(viewer)
        try:
            rows = self.db.execute(
                f"""SELECT {_MESSAGE_COLUMNS} FROM messages_fts f JOIN messages m ON m.id = f.rowid
                    WHERE messages_fts MATCH ? AND {where} ORDER BY f.rank LIMIT ?""",
                (query, *args, limit),
            ).fetchall()
        except sqlite3.OperationalError as err:
            raise UsageError(f"search: {query!r} is not a search query ({err})") from None
        return [_message(row) for row in rows]

    def feed(
        self, since_ms: int | None = None, limit: int | None = None, viewer: str | None = None
    ) -> list[Message]:
        where, args = _visible_to(viewer)
        return self._latest(where, list(args), since_ms, limit)

    def space_messages(
        self, space: str, since_ms: int | None = None, limit: int | None = None
    ) -> list[Message]:
        if self.space(space) is None:
            raise SpaceNotFound(name=space)
        return self._latest("m.space = ?", [space], since_ms, limit)

    def _latest(self, where: str, args: list[Any], since_ms: int | None, limit: int | None) -> list[Message]:
        """The newest ``limit`` messages matching ``where`` (since ``since_ms``), oldest first."""
        query = f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE {where}"
        if since_ms is not None:
            query += " AND m.created_ms >= ?"
            args = [*args, since_ms]
        query += " ORDER BY m.id DESC"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        return [_message(row) for row in reversed(self.db.execute(query, args).fetchall())]

    def last_id(self) -> int:
        row = self.db.execute("SELECT max(id) FROM messages").fetchone()
        return int(row[0] or 0)

    # -- delivery ------------------------------------------------------------------------------------------

    def due(self, at_ms: int | None = None) -> list[tuple[Message, Receipt]]:
        """Receipts waiting for delivery into a conversation: queued ones, and failed ones due a retry."""
        at = now_ms() if at_ms is None else at_ms
        rows = self.db.execute(
            f"""SELECT {_MESSAGE_COLUMNS}, {_RECEIPT_COLUMNS} FROM receipts r JOIN messages m ON m.id = r.message
                WHERE r.state = 'queued' OR (r.state = 'failed' AND r.retry_at_ms IS NOT NULL AND r.retry_at_ms <= ?)
                ORDER BY m.id""",
            (at,),
        ).fetchall()
        return [(_message(row[:9]), _receipt(row[9:])) for row in rows]

    def next_retry_ms(self) -> int | None:
        row = self.db.execute(
            "SELECT min(retry_at_ms) FROM receipts WHERE state = 'failed' AND retry_at_ms IS NOT NULL"
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def delivered(self, message_id: int, recipient: str) -> None:
        with self.write() as db:
            db.execute(
                """UPDATE receipts SET state = 'delivered', delivered_at = ?, attempts = attempts + 1,
                   retry_at_ms = NULL WHERE message = ? AND recipient = ? AND state IN ('queued', 'failed')""",
                (now_iso(), message_id, recipient),
            )

    def failed(self, message_id: int, recipient: str, reason: str, retry_at_ms: int | None) -> None:
        with self.write() as db:
            db.execute(
                """UPDATE receipts SET state = 'failed', failed_at = ?, reason = ?, attempts = attempts + 1,
                   retry_at_ms = ? WHERE message = ? AND recipient = ? AND state IN ('queued', 'failed')""",
                (now_iso(), reason, retry_at_ms, message_id, recipient),
            )
