"""The store's queries for projects, focus, leases, and the messages webhooks are told of.

A part of :class:`~dev_sessions.messaging.store.MessageStore` (its base class), written once in the SQL
both engines take, as the rest of the store is; the tables are migration 6 of both engines' schemas.
Every write is one write transaction of the store (``BEGIN IMMEDIATE`` on SQLite, the advisory write
lock on PostgreSQL), so that acquiring leases is all or nothing and two agents asking at once for the
same file are served one after the other: the second sees the first's lease.

Leases lapse by themselves: every read keeps to those whose ``expires_ms`` is still ahead, and each
acquire deletes the lapsed ones. A path glob is compared with the others of its repository only where
their literal directories allow an overlap (``prefix``, by index), then exactly
(:func:`~dev_sessions.messaging.leases.overlaps`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from dev_sessions.errors import LeaseConflict, LeaseNotHeld, ProjectInUse, ProjectNotFound, UsageError
from dev_sessions.messaging.writes import one_write
from dev_sessions.store import now_iso

if TYPE_CHECKING:
    from dev_sessions.messaging.leases import Lease, LeaseCheck, Target
    from dev_sessions.messaging.projects import Focus, Project
    from dev_sessions.messaging.records import Message
    from dev_sessions.messaging.store import Database

# The records and globs are imported where they are used: the message commands never load them.
NAME_KIND = "name"

_PROJECT_COLUMNS = (
    "p.name, p.path, p.repository, p.tags, p.description, p.status, p.created_at, p.created_by, p.updated_at"
)
_LEASE_COLUMNS = (
    "l.kind, l.repo, l.pattern, l.holder, l.exclusive, l.reason, l.acquired_at, l.expires_ms, l.ttl_s,"
    " l.machine"
)


def _ms() -> int:
    return int(time.time() * 1000)


def iso_of_ms(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _lease(row: Sequence[Any]) -> Lease:
    from dev_sessions.messaging.leases import Lease

    return Lease(
        kind=str(row[0]),
        repo=str(row[1]),
        pattern=str(row[2]),
        holder=str(row[3]),
        exclusive=bool(row[4]),
        reason=str(row[5]),
        acquired_at=str(row[6]),
        expires_at=iso_of_ms(int(row[7])),
        ttl_s=float(row[8]),
        machine=row[9],
    )


def conflict_of(lease: Lease) -> dict[str, object]:
    """A lease in the way, as :class:`LeaseConflict` carries it."""
    return {
        "resource": lease.label(),
        "holder": lease.holder,
        "mode": "exclusively" if lease.exclusive else "shared",
        "reason": lease.reason,
        "expiresAt": lease.expires_at,
    }


T = TypeVar("T")


class CoordinationStore:
    """Projects, focus, leases (mixed into the message store, whose connection and writes it uses)."""

    db: Database

    if TYPE_CHECKING:

        def write(self) -> AbstractContextManager[Database]: ...

        def retried(self, call: Callable[[], T]) -> T: ...

    # -- projects ----------------------------------------------------------------------------------------

    def _project(self, row: Sequence[Any], spaces: list[str]) -> Project:
        from dev_sessions.messaging.projects import Project

        try:
            tags = [str(t) for t in json.loads(row[3] or "[]")]
        except ValueError:
            tags = []
        return Project(
            str(row[0]), row[1], row[2], tags, str(row[4]), str(row[5]), str(row[6]), str(row[7]),
            str(row[8]), spaces,
        )  # fmt: skip

    def _spaces_of(self, name: str) -> list[str]:
        rows = self.db.execute("SELECT name FROM spaces WHERE project = ? ORDER BY name", (name,))
        return [str(row[0]) for row in rows]

    def project(self, name: str) -> Project | None:
        row = self.db.execute(
            f"SELECT {_PROJECT_COLUMNS} FROM projects p WHERE p.name = ?", (name,)
        ).fetchone()
        return self._project(row, self._spaces_of(name)) if row else None

    def projects(self, status: str | None = None) -> list[Project]:
        query = f"SELECT {_PROJECT_COLUMNS} FROM projects p"
        args: tuple[str, ...] = ()
        if status is not None:
            query += " WHERE p.status = ?"
            args = (status,)
        rows = self.db.execute(query + " ORDER BY p.name", args).fetchall()
        spaces: dict[str, list[str]] = {}
        for space, project in self.db.execute(
            "SELECT name, project FROM spaces WHERE project IS NOT NULL ORDER BY name"
        ):
            spaces.setdefault(str(project), []).append(str(space))
        return [self._project(row, spaces.get(str(row[0]), [])) for row in rows]

    @one_write
    def create_project(
        self,
        name: str,
        *,
        path: str | None,
        repository: str | None,
        tags: list[str],
        description: str,
        by: str,
    ) -> Project:
        stamp = now_iso()
        with self.write() as db:
            if db.execute("SELECT 1 FROM projects WHERE name = ?", (name,)).fetchone():
                raise UsageError(
                    f"project {name}: already exists (change it with `dev-sessions project update`)"
                )
            db.execute(
                """INSERT INTO projects (name, path, repository, tags, description, status, created_at,
                                         created_by, updated_at) VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?)""",
                (name, path, repository, json.dumps(tags), description, stamp, by, stamp),
            )
        found = self.project(name)
        assert found is not None
        return found

    @one_write
    def update_project(self, name: str, changes: dict[str, object]) -> Project:
        """Set the given columns (path, repository, tags, description, status) of a project."""
        allowed = ("path", "repository", "tags", "description", "status")
        sets = [(k, json.dumps(v) if k == "tags" else v) for k, v in changes.items() if k in allowed]
        with self.write() as db:
            if not db.execute("SELECT 1 FROM projects WHERE name = ?", (name,)).fetchone():
                raise ProjectNotFound(name=name)
            assignments = "".join(f"{k} = ?, " for k, _ in sets)
            db.execute(
                f"UPDATE projects SET {assignments}updated_at = ? WHERE name = ?",
                (*[v for _, v in sets], now_iso(), name),
            )
        found = self.project(name)
        assert found is not None
        return found

    @one_write
    def delete_project(self, name: str) -> None:
        """Remove a project (and every focus on it); refused while spaces belong to it."""
        with self.write() as db:
            if not db.execute("SELECT 1 FROM projects WHERE name = ?", (name,)).fetchone():
                raise ProjectNotFound(name=name)
            spaces = [
                str(r[0])
                for r in db.execute("SELECT name FROM spaces WHERE project = ? ORDER BY name", (name,))
            ]
            if spaces:
                raise ProjectInUse(name=name, spaces=spaces)
            db.execute("DELETE FROM focus WHERE project = ?", (name,))
            db.execute("DELETE FROM projects WHERE name = ?", (name,))

    @one_write
    def set_space_project(self, space: str, project: str | None) -> None:
        from dev_sessions.errors import SpaceNotFound

        with self.write() as db:
            if not db.execute("SELECT 1 FROM spaces WHERE name = ?", (space,)).fetchone():
                raise SpaceNotFound(name=space)
            if (
                project is not None
                and not db.execute("SELECT 1 FROM projects WHERE name = ?", (project,)).fetchone()
            ):
                raise ProjectNotFound(name=project)
            db.execute("UPDATE spaces SET project = ? WHERE name = ?", (project, space))

    # -- focus -------------------------------------------------------------------------------------------

    def focus_of(self, agent: str) -> Focus:
        from dev_sessions.messaging.projects import Focus

        row = self.db.execute("SELECT project, set_at FROM focus WHERE agent = ?", (agent,)).fetchone()
        return Focus(agent, row[0], row[1]) if row else Focus(agent, None)

    @one_write
    def set_focus(self, agent: str, project: str) -> Focus:
        from dev_sessions.messaging.projects import Focus

        stamp = now_iso()
        with self.write() as db:
            if not db.execute("SELECT 1 FROM projects WHERE name = ?", (project,)).fetchone():
                raise ProjectNotFound(name=project)
            db.execute(
                """INSERT INTO focus (agent, project, set_at) VALUES (?, ?, ?)
                   ON CONFLICT (agent) DO UPDATE SET project = excluded.project, set_at = excluded.set_at""",
                (agent, project, stamp),
            )
        return Focus(agent, project, stamp)

    @one_write
    def clear_focus(self, agent: str) -> bool:
        with self.write() as db:
            cursor = db.execute("DELETE FROM focus WHERE agent = ?", (agent,))
        return cursor.rowcount > 0

    # -- leases ------------------------------------------------------------------------------------------

    def _around(self, db: Database, target: Target, now: int, literal: bool = False) -> list[Lease]:
        """The live leases on ``target``'s name, or whose globs may overlap its glob (its path, with
        ``literal``): found by prefix, then decided exactly."""
        from dev_sessions.messaging.leases import ancestors, overlaps, prefix_of

        if target.kind == NAME_KIND:
            rows = db.execute(
                f"""SELECT {_LEASE_COLUMNS} FROM leases l
                    WHERE l.repo = '' AND l.pattern = ? AND l.expires_ms > ?""",
                (target.pattern, now),
            ).fetchall()
            return [_lease(row) for row in rows]
        prefix = prefix_of(target.pattern, literal)
        above = ancestors(prefix)
        marks = ", ".join("?" * len(above))
        query = f"""SELECT {_LEASE_COLUMNS} FROM leases l WHERE l.repo = ? AND l.expires_ms > ?
                    AND (l.prefix IN ({marks}) OR substr(l.prefix, 1, CAST(? AS INTEGER)) = ?)"""
        # CAST: a Python int goes to PostgreSQL as a bigint, and its substr takes an integer.
        args: list[Any] = [target.repo, now, *above]
        if literal:
            # Every path a glob of a deeper directory names lies in that directory: not this path.
            query = f"""SELECT {_LEASE_COLUMNS} FROM leases l WHERE l.repo = ? AND l.expires_ms > ?
                        AND l.prefix IN ({marks})"""
        else:
            args += [len(prefix), prefix]
        rows = db.execute(query, args).fetchall()
        found = [_lease(row) for row in rows]
        return [lease for lease in found if overlaps(lease.pattern, target.pattern, b_literal=literal)]

    @one_write
    def acquire(
        self,
        targets: Sequence[Target],
        *,
        holder: str,
        exclusive: bool,
        ttl_s: float,
        reason: str,
        machine: str | None,
    ) -> list[Lease]:
        """Hold every target, or none (:class:`LeaseConflict` naming each holder in the way)."""
        stamp = now_iso()
        with self.write() as db:
            now = _ms()
            db.execute("DELETE FROM leases WHERE expires_ms <= ?", (now,))
            conflicts: list[Lease] = []
            for target in targets:
                for lease in self._around(db, target, now):
                    if lease.holder != holder and (lease.exclusive or exclusive) and lease not in conflicts:
                        conflicts.append(lease)
            if conflicts:
                raise LeaseConflict(conflicts=[conflict_of(lease) for lease in conflicts])
            expires = now + int(ttl_s * 1000)
            for target in targets:
                db.execute(
                    """INSERT INTO leases (repo, pattern, holder, kind, prefix, exclusive, reason, ttl_s,
                                           acquired_at, expires_ms, machine)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (repo, pattern, holder) DO UPDATE SET exclusive = excluded.exclusive,
                           reason = excluded.reason, ttl_s = excluded.ttl_s, expires_ms = excluded.expires_ms,
                           machine = excluded.machine""",
                    (
                        target.repo, target.pattern, holder, target.kind, target.prefix, int(exclusive),
                        reason, ttl_s, stamp, expires, machine,
                    ),
                )  # fmt: skip
        return self._held(holder, targets)

    def _held(self, holder: str, targets: Sequence[Target]) -> list[Lease]:
        found = []
        for target in targets:
            row = self.db.execute(
                f"""SELECT {_LEASE_COLUMNS} FROM leases l
                    WHERE l.repo = ? AND l.pattern = ? AND l.holder = ? AND l.expires_ms > ?""",
                (target.repo, target.pattern, holder, _ms()),
            ).fetchone()
            if row is not None:
                found.append(_lease(row))
        return found

    def leases(self, holder: str | None = None) -> list[Lease]:
        """The live leases (of ``holder``), by resource."""
        query = f"SELECT {_LEASE_COLUMNS} FROM leases l WHERE l.expires_ms > ?"
        args: list[Any] = [_ms()]
        if holder is not None:
            query += " AND l.holder = ?"
            args.append(holder)
        rows = self.db.execute(query + " ORDER BY l.repo, l.pattern, l.holder", args).fetchall()
        return [_lease(row) for row in rows]

    @one_write
    def renew(self, holder: str, targets: Sequence[Target] | None, ttl_s: float | None) -> list[Lease]:
        """Push back the expiry of ``holder``'s live leases (those on ``targets``, all for None) by their
        own TTL, or ``ttl_s``; :class:`LeaseNotHeld` for a target it does not hold."""
        with self.write() as db:
            now = _ms()
            if targets is None:
                keys = [
                    (str(r[0]), str(r[1]))
                    for r in db.execute(
                        "SELECT repo, pattern FROM leases WHERE holder = ? AND expires_ms > ?", (holder, now)
                    )
                ]
            else:
                keys = [(t.repo, t.pattern) for t in targets]
            for repo, pattern in keys:
                if ttl_s is None:
                    cursor = db.execute(
                        """UPDATE leases SET expires_ms = ? + CAST(ttl_s * 1000 AS BIGINT)
                           WHERE repo = ? AND pattern = ? AND holder = ? AND expires_ms > ?""",
                        (now, repo, pattern, holder, now),
                    )
                else:
                    cursor = db.execute(
                        """UPDATE leases SET expires_ms = ?, ttl_s = ?
                           WHERE repo = ? AND pattern = ? AND holder = ? AND expires_ms > ?""",
                        (now + int(ttl_s * 1000), ttl_s, repo, pattern, holder, now),
                    )
                if cursor.rowcount == 0:
                    raise LeaseNotHeld(resource=pattern, holder=holder)
        from dev_sessions.messaging.leases import Target

        return self._held(holder, [Target(NAME_KIND if not r else "path", r, p) for r, p in keys])

    @one_write
    def release(self, holder: str, targets: Sequence[Target] | None) -> list[Lease]:
        """Let go of ``holder``'s leases (those on ``targets``, all for None); the ones let go."""
        with self.write() as db:
            now = _ms()
            if targets is None:
                rows = db.execute(
                    f"SELECT {_LEASE_COLUMNS} FROM leases l WHERE l.holder = ? AND l.expires_ms > ?",
                    (holder, now),
                ).fetchall()
                db.execute("DELETE FROM leases WHERE holder = ?", (holder,))
                return [_lease(row) for row in rows]
            released = []
            for target in targets:
                row = db.execute(
                    f"""SELECT {_LEASE_COLUMNS} FROM leases l
                        WHERE l.repo = ? AND l.pattern = ? AND l.holder = ? AND l.expires_ms > ?""",
                    (target.repo, target.pattern, holder, now),
                ).fetchone()
                db.execute(
                    "DELETE FROM leases WHERE repo = ? AND pattern = ? AND holder = ?",
                    (target.repo, target.pattern, holder),
                )
                if row is not None:
                    released.append(_lease(row))
            return released

    def check(self, resource: str, target: Target, holder: str, literal: bool) -> LeaseCheck:
        """Who holds ``target`` (a path, with ``literal``); blocked when another holds it exclusively."""
        from dev_sessions.messaging.leases import LeaseCheck

        found = self._around(self.db, target, _ms(), literal)
        blocked = any(lease.exclusive and lease.holder != holder for lease in found)
        return LeaseCheck(resource, target.kind, target.repo, target.pattern, found, blocked, holder)

    def exclusive_in(self, repo: str, holder: str) -> list[Lease]:
        """The live exclusive leases of others in a repository (what the git guard looks at)."""
        rows = self.db.execute(
            f"""SELECT {_LEASE_COLUMNS} FROM leases l WHERE l.repo = ? AND l.holder != ? AND l.exclusive = 1
                AND l.expires_ms > ?""",
            (repo, holder, _ms()),
        ).fetchall()
        return [_lease(row) for row in rows]

    # -- what webhooks are told of ------------------------------------------------------------------------

    def last_id_before(self, ms: int) -> int:
        """The id of the last message created before ``ms`` (0 for none)."""
        row = self.db.execute("SELECT max(id) FROM messages WHERE created_ms < ?", (ms,)).fetchone()
        return int(row[0] or 0)

    def messages_after(
        self, after_id: int, machine: str | None = None, limit: int = 200
    ) -> list[tuple[Message, list[str]]]:
        """Messages after ``after_id`` (sent from ``machine``, when given), oldest first, each with its
        recipients."""
        from dev_sessions.messaging.store import MESSAGE_COLUMNS, message_of

        query = f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id > ?"
        args: list[Any] = [after_id]
        if machine is not None:
            query += " AND m.machine = ?"
            args.append(machine)
        rows = self.db.execute(query + f" ORDER BY m.id LIMIT {int(limit)}", args).fetchall()
        messages = [message_of(row) for row in rows]
        if not messages:
            return []
        marks = ", ".join("?" * len(messages))
        recipients: dict[int, list[str]] = {}
        for message_id, name in self.db.execute(
            f"SELECT message, recipient FROM receipts WHERE message IN ({marks}) ORDER BY recipient",
            [m.id for m in messages],
        ):
            recipients.setdefault(int(message_id), []).append(str(name))
        return [(m, recipients.get(m.id, [])) for m in messages]
