"""``msg migrate``: copy this machine's SQLite store into a shared one (PostgreSQL).

Everything the store holds is copied in one transaction of the target: outside agents, projects and
each agent's focus, spaces (parents first, with their project) and their members, messages in order
with their receipts (a reply's ``reply_to`` and ``thread`` renumbered to the copies; a thread whose
first message was pruned stays one thread), the links to messages on ssh hosts (``relays``),
reactions and pins. Each copied message is recorded in the target's ``copied`` table (this store's
name, its id here, its id there), so that a second run copies nothing twice; agents, projects, focus,
spaces, members and relays are kept by their keys. Leases are not copied: they last minutes, and lapse
by themselves. Messages and receipts written here without a machine are this machine's: the copy
says so.

Nothing is removed from the source, and nothing here prints: the caller shows the counts, with the
target's URL without its password.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dev_sessions.api import JsonObject
from dev_sessions.messaging.store import MessageStore

_BY_MESSAGE = (
    ("relays", ("host", "remote", "recipient")),
    ("reactions", ("agent", "emoji", "created_at")),
    ("pins", ("pinned_by", "pinned_at")),
)
"""The tables whose rows belong to one message (its column ``message``), copied after the messages:
their names and other columns, as in the schema (never from outside)."""

KINDS = ("messages", "receipts", "spaces", "members", "agents", "relays", "reactions", "pins", "projects")


@dataclass
class Migrated:
    """How many of each kind were copied, and how many the target had already."""

    to: str
    copied: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    already: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    def count(self, kind: str, new: bool) -> None:
        (self.copied if new else self.already)[kind] += 1

    def line(self) -> str:
        parts = ", ".join(f"{self.copied[k]} {k} ({self.already[k]} already there)" for k in KINDS)
        return f"copied to {self.to}: {parts}"

    def to_json(self) -> JsonObject:
        return {"to": self.to, **{k: {"copied": self.copied[k], "already": self.already[k]} for k in KINDS}}


def migrate(source: MessageStore, target: MessageStore, machine: str) -> Migrated:
    """Copy ``source`` (this machine's, named ``machine``) into ``target``; what was copied. The copy is
    one transaction of the target, run again whole when the target asks (see ``store.one_write``)."""
    return target.retried(lambda: _copy(source, target, machine))


def _copy(source: MessageStore, target: MessageStore, machine: str) -> Migrated:
    report = Migrated(target.where)
    name = f"{machine}:{source.where}"
    src = source.db
    with target.write() as db:
        for row in src.execute("SELECT name, registered_at, last_seen, status, machine, session FROM agents"):
            cursor = db.execute(
                """INSERT INTO agents (name, registered_at, last_seen, status, machine, session)
                   VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING""",
                (row[0], row[1], row[2], row[3], row[4] or machine, row[5]),
            )
            report.count("agents", cursor.rowcount > 0)
        for row in src.execute(
            """SELECT name, path, repository, tags, description, status, created_at, created_by, updated_at
               FROM projects ORDER BY name"""
        ):
            cursor = db.execute(
                """INSERT INTO projects (name, path, repository, tags, description, status, created_at,
                                         created_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (name) DO NOTHING""",
                tuple(row),
            )
            report.count("projects", cursor.rowcount > 0)
        for row in src.execute("SELECT agent, project, set_at FROM focus"):
            db.execute(
                "INSERT INTO focus (agent, project, set_at) VALUES (?, ?, ?) ON CONFLICT (agent) DO NOTHING",
                tuple(row),
            )
        spaces = src.execute(
            """WITH RECURSIVE tree(name, depth) AS (
                   SELECT name, 1 FROM spaces WHERE parent IS NULL
                   UNION ALL SELECT s.name, t.depth + 1 FROM spaces s JOIN tree t ON s.parent = t.name
               ) SELECT s.name, s.parent, s.description, s.created_at, s.created_by, s.project
               FROM spaces s JOIN tree t ON t.name = s.name ORDER BY t.depth, s.name"""
        ).fetchall()
        for row in spaces:
            cursor = db.execute(
                """INSERT INTO spaces (name, parent, description, created_at, created_by, project)
                   VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING""",
                tuple(row),
            )
            report.count("spaces", cursor.rowcount > 0)
        for row in src.execute("SELECT space, agent, joined_at FROM members"):
            cursor = db.execute(
                "INSERT INTO members (space, agent, joined_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                tuple(row),
            )
            report.count("members", cursor.rowcount > 0)
        ids = {
            int(row[0]): int(row[1])
            for row in db.execute("SELECT original, message FROM copied WHERE source = ?", (name,))
        }
        receipts: dict[int, list[tuple[object, ...]]] = {}
        for row in src.execute(
            """SELECT message, recipient, state, via, delivered_at, read_at, failed_at, reason, attempts,
                      retry_at_ms, machine FROM receipts ORDER BY message, recipient"""
        ):
            receipts.setdefault(int(row[0]), []).append(tuple(row[1:]))
        messages = src.execute(
            """SELECT id, sender, space, priority, body, metadata, reply_to, thread, created_at, created_ms,
                      machine FROM messages ORDER BY id"""
        ).fetchall()
        # A thread's number there: its first message's copy, or (that message pruned here) the first
        # copy of the thread's messages that are left.
        threads: dict[int, int] = {}
        for row in messages:
            old = int(row[0])
            if old in ids:
                report.count("messages", False)
                for _ in receipts.get(old, ()):
                    report.count("receipts", False)
                if int(row[7]) not in ids and int(row[7]) not in threads:
                    there = db.execute("SELECT thread FROM messages WHERE id = ?", (ids[old],)).fetchone()
                    threads[int(row[7])] = int(there[0])
                continue
            reply_to = ids.get(int(row[6])) if row[6] is not None else None
            thread = ids.get(int(row[7])) or threads.get(int(row[7]), 0)  # ids ascend: the first comes first
            new = target._insert(
                db,
                """INSERT INTO messages (sender, space, priority, body, metadata, reply_to, thread,
                       created_at, created_ms, machine) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    row[1],
                    row[2],
                    row[3],
                    row[4],
                    row[5],
                    reply_to,
                    thread,
                    row[8],
                    row[9],
                    row[10] or machine,
                ),
            )
            if thread == 0:
                db.execute("UPDATE messages SET thread = id WHERE id = ?", (new,))
                threads[int(row[7])] = new
            db.execute("INSERT INTO copied (source, original, message) VALUES (?, ?, ?)", (name, old, new))
            ids[old] = new
            report.count("messages", True)
            for receipt in receipts.get(old, ()):
                on = receipt[9] if receipt[9] is not None or receipt[2] != "conversation" else machine
                db.execute(
                    """INSERT INTO receipts (message, recipient, state, via, delivered_at, read_at, failed_at,
                                             reason, attempts, retry_at_ms, machine)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (new, *receipt[:9], on),
                )
                report.count("receipts", True)
        # What hangs on a message (its links to hosts, its reactions, its pin): with the copy's id.
        for table, columns in _BY_MESSAGE:
            names = ", ".join(("message", *columns))
            marks = ", ".join("?" * (len(columns) + 1))
            for row in src.execute(f"SELECT {names} FROM {table} ORDER BY message"):
                copy = ids.get(int(row[0]))
                if copy is None:
                    continue
                cursor = db.execute(
                    f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING", (copy, *row[1:])
                )
                report.count(table, cursor.rowcount > 0)
    return report
