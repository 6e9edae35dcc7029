"""The message database on disk: opening ``messages.db`` safely, its schema, and upgrading it.

:func:`open_database` makes the one connection a message store uses: a private file (0600, in a
private directory, never reached through a link), WAL mode so that many processes read while one
writes, ``synchronous=NORMAL`` (survives process death; power loss could cost the last transactions),
foreign keys on, and a busy timeout so that a writer waits for another rather than failing.
:func:`transaction` is the only way to write.

The schema is versioned with ``PRAGMA user_version`` and upgraded by :data:`MIGRATIONS` in order
(:func:`migrate`); a database from a newer dev-sessions is refused, never downgraded. Bodies are
indexed with FTS5. Nothing here reads or writes messages: the queries are
:mod:`dev_sessions.messaging.store`'s.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dev_sessions.errors import DevSessionsError, StoreTooNew
from dev_sessions.files import check_not_link, private_dir

BUSY_TIMEOUT_MS = 15000

MACHINES = [
    "ALTER TABLE messages ADD COLUMN machine TEXT",
    "ALTER TABLE receipts ADD COLUMN machine TEXT",
    "ALTER TABLE agents ADD COLUMN machine TEXT",
    """CREATE TABLE machine_sessions (
        name TEXT NOT NULL,
        machine TEXT NOT NULL,
        cli TEXT NOT NULL,
        parent TEXT,
        status TEXT NOT NULL,
        seen_at TEXT NOT NULL,
        PRIMARY KEY (name, machine)
    )""",
    # ``msg migrate``: which message of which store a message here was copied from, so that a second
    # run copies nothing twice.
    """CREATE TABLE copied (
        source TEXT NOT NULL,
        original BIGINT NOT NULL,
        message BIGINT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        PRIMARY KEY (source, original)
    )""",
]
"""Migration 3, the same SQL on both engines (PostgreSQL's list takes it as it is)."""

PASTING = [
    "ALTER TABLE receipts ADD COLUMN pasting_at TEXT",
    "ALTER TABLE receipts ADD COLUMN pasting_by TEXT",
]
"""Migration 4, the same SQL on both engines."""
EXTRAS = [
    # One agent's reaction to a message: an emoji (or a :short_name:), once per agent and emoji.
    """CREATE TABLE reactions (
        message BIGINT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        agent TEXT NOT NULL,
        emoji TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (message, agent, emoji)
    )""",
    # A pinned message (in its space, or its direct conversation); ``msg prune`` keeps it.
    """CREATE TABLE pins (
        message BIGINT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
        pinned_by TEXT NOT NULL,
        pinned_at TEXT NOT NULL
    )""",
    # Which agent session holds an outside agent's name (``Settings.holder``): registering a name that
    # another live session holds is refused without ``--takeover``.
    "ALTER TABLE agents ADD COLUMN session TEXT",
]
"""Migration 5, the same SQL on both engines: reactions, pins, and who holds an agent's name."""
COORDINATION = [
    """CREATE TABLE projects (
        name TEXT PRIMARY KEY,
        path TEXT,
        repository TEXT,
        tags TEXT NOT NULL DEFAULT '[]',
        description TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'archived')),
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "ALTER TABLE spaces ADD COLUMN project TEXT REFERENCES projects(name)",
    "CREATE INDEX spaces_project ON spaces(project) WHERE project IS NOT NULL",
    """CREATE TABLE focus (
        agent TEXT PRIMARY KEY,
        project TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
        set_at TEXT NOT NULL
    )""",
    # A lease: a name (repo '') or a glob relative to a worktree's top in a repository; ``prefix`` is the
    # glob's literal directories, so that the globs a path or glob may overlap are found by index.
    """CREATE TABLE leases (
        repo TEXT NOT NULL,
        pattern TEXT NOT NULL,
        holder TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('name', 'path')),
        prefix TEXT NOT NULL,
        exclusive INTEGER NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        ttl_s DOUBLE PRECISION NOT NULL,
        acquired_at TEXT NOT NULL,
        expires_ms BIGINT NOT NULL,
        machine TEXT,
        PRIMARY KEY (repo, pattern, holder)
    )""",
    "CREATE INDEX leases_prefix ON leases(repo, prefix)",
    "CREATE INDEX leases_holder ON leases(holder)",
    "CREATE INDEX leases_expires ON leases(expires_ms)",
]
"""Migration 6 (issue 16: projects, focus, leases), the same SQL on both engines."""

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
    (
        # Messages to and from sessions on remote hosts: a receipt ``via`` the recipient's host (relayed
        # there by ssh), and which message here is which message on a host, either way (``recipient``
        # is the session a relayed message went to, null for a copy made here).
        2,
        [
            """CREATE TABLE receipts_v2 (
                message INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
                recipient TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('queued', 'delivered', 'read', 'failed')),
                via TEXT NOT NULL CHECK (via IN ('conversation', 'mailbox', 'host')),
                delivered_at TEXT,
                read_at TEXT,
                failed_at TEXT,
                reason TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                retry_at_ms INTEGER,
                PRIMARY KEY (message, recipient)
            ) WITHOUT ROWID""",
            """INSERT INTO receipts_v2 SELECT message, recipient, state, via, delivered_at, read_at,
                failed_at, reason, attempts, retry_at_ms FROM receipts""",
            "DROP TABLE receipts",
            "ALTER TABLE receipts_v2 RENAME TO receipts",
            "CREATE INDEX receipts_inbox ON receipts(recipient, state, message)",
            "CREATE INDEX receipts_pending ON receipts(state, retry_at_ms) WHERE state IN ('queued', 'failed')",
            """CREATE TABLE relays (
                message INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
                host TEXT NOT NULL,
                remote INTEGER NOT NULL,
                recipient TEXT,
                PRIMARY KEY (host, remote)
            ) WITHOUT ROWID""",
            "CREATE INDEX relays_message ON relays(message, host)",
        ],
    ),
    (
        # Machines sharing one store (issue 15): which machine sent a message and which machine's
        # deliverer puts a receipt into its session (null: a mailbox, or a store of one machine), the
        # machine an outside agent was last seen on, the sessions each machine has (so that one
        # machine can address another's: ``name@machine``), and what ``msg migrate`` copied.
        3,
        MACHINES,
    ),
    (
        # A notice being typed into a session (issue 15): set by the deliverer just before it types, so
        # that a deliverer killed after typing and before marking the receipt delivered is known to have
        # maybe typed it; the next one looks in the session's conversation before typing it again.
        4,
        PASTING,
    ),
    # Issue 16: reactions, pins (kept by ``msg prune``), the session holding an outside agent's name.
    (5, EXTRAS),
    # Projects (spaces may belong to one), each agent's focus, and leases (issue 16).
    (6, COORDINATION),
]


def open_database(path: Path) -> sqlite3.Connection:
    """A connection to the database at ``path`` (created if missing), set up as the docstring says."""
    private_dir(path.parent)
    for suffix in ("", "-wal", "-shm", "-journal"):  # SQLite itself follows links
        check_not_link(path.with_name(path.name + suffix))
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        raise DevSessionsError(f"{path}: cannot use SQLite WAL mode here (got {mode})")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA foreign_keys = ON")
    path.chmod(0o600)
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (BEGIN IMMEDIATE: writers queue on the busy timeout, never fail)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def user_version(db: sqlite3.Connection) -> int:
    """The schema version of the open database (0 for a new one)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, path: Path, migrations: list[tuple[int, list[str]]]) -> None:
    """Run the migrations the database at ``path`` has not had yet; refuse one that is newer."""
    latest = migrations[-1][0] if migrations else 0
    if user_version(db) == latest:
        return
    with transaction(db):
        current = user_version(db)  # again, under the write lock: another process may have migrated
        if current > latest:
            raise StoreTooNew(path=str(path), version=current)
        for version, statements in migrations:
            if version <= current:
                continue
            for statement in statements:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {int(version)}")
