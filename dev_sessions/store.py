"""The session store: ``$DEV_SESSIONS_HOME/sessions.json``, the only code that touches that file.

On disk it is ``{"version": 1, "sessions": [record, ...]}`` with the record fields of the original
TypeScript tool (``championId``, ``internalId``, ``cli``, ``mode``, ``path``, ``status``, ``createdAt``,
``lastUsed``, ``description``, ...), so its users can move over, plus our own optional fields.

Rules this module keeps:

* Readers take no lock: writers replace the file atomically (temp file in the same directory, fsync,
  rename), so a reader sees the old or the new document, never half of one.
* Every change happens inside ``transaction()``, under the cross-process ``FileLock``; id allocation and
  insertion share one transaction.
* Nothing is dropped: fields we do not know are written back as they were, records we cannot use are
  kept in the file untouched, and an unreadable file is moved aside with its path reported.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Literal, TypedDict, cast

from dev_sessions import files
from dev_sessions.errors import SessionNotFound, StoreCorrupt, StoreTooNew
from dev_sessions.lock import FileLock

STORE_VERSION = 1

Cli = Literal["claude", "codex"]
CLIS: tuple[Cli, ...] = ("claude", "codex")


class LastSend(TypedDict, total=False):
    """What ``wait`` needs to find the turn of the last prompt sent.

    Claude: where the transcript stood (``offset``), and whether the prompt was queued behind a running
    turn (``queued``, ``ahead``). Codex: the turn started (``turnId``) or, for a queued prompt, the id
    we gave its message (``clientId``), and how it went in (``mode``: started, queued, steered).
    """

    offset: int
    queued: bool
    ahead: int
    at: str
    turnId: str
    clientId: str
    mode: str
    events: int


class SessionRecord(TypedDict, total=False):
    championId: str
    internalId: str
    cli: str
    mode: str
    path: str
    description: str
    status: str
    createdAt: str
    lastUsed: str
    model: str
    approvals: str
    collaborationMode: str
    parent: str
    tmuxSocket: str
    claudeConfigDir: str
    lastSend: LastSend
    delivery: str
    previousIds: list[str]
    host: str
    worktree: str
    branch: str


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Session:
    """One session as the rest of the package sees it."""

    id: str
    internal_id: str
    cli: Cli
    path: str
    mode: str = "native"
    description: str = ""
    status: str = "active"
    created_at: str = ""
    last_used: str = ""
    model: str | None = None
    approvals: str = "never"
    # Codex's collaboration mode of the thread, as we last set it: "plan" or "default" (None: never set).
    collaboration: str | None = None
    parent: str | None = None
    tmux_socket: str | None = None
    claude_config_dir: str | None = None
    last_send: LastSend | None = None
    delivery: str | None = None
    """How text reaches a Claude session: ``editor`` (its external-editor key, with our hooks), or None
    for sessions started by an older dev-sessions (a bracketed paste, no hooks)."""
    previous_ids: tuple[str, ...] = ()
    """Claude session ids this session had before a ``/clear`` gave it a new one."""
    host: str | None = None
    """The remote host the session runs on (``create --host``): every command goes there over ssh."""
    worktree: str | None = None
    """The git worktree made for the session (``create --worktree``), which ``kill`` removes if clean."""
    branch: str | None = None
    """The worktree's branch."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KEYS: ClassVar[dict[str, str]] = {
        "id": "championId",
        "internal_id": "internalId",
        "cli": "cli",
        "path": "path",
        "mode": "mode",
        "description": "description",
        "status": "status",
        "created_at": "createdAt",
        "last_used": "lastUsed",
        "model": "model",
        "approvals": "approvals",
        "collaboration": "collaborationMode",
        "parent": "parent",
        "tmux_socket": "tmuxSocket",
        "claude_config_dir": "claudeConfigDir",
        "last_send": "lastSend",
        "delivery": "delivery",
        "previous_ids": "previousIds",
        "host": "host",
        "worktree": "worktree",
        "branch": "branch",
    }
    _TYPES: ClassVar[dict[str, type]] = {
        "mode": str,
        "description": str,
        "status": str,
        "created_at": str,
        "last_used": str,
        "model": str,
        "approvals": str,
        "collaboration": str,
        "parent": str,
        "tmux_socket": str,
        "claude_config_dir": str,
        "last_send": dict,
        "delivery": str,
        "previous_ids": list,
        "host": str,
        "worktree": str,
        "branch": str,
    }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Session | None:
        """The session a stored record describes, or None when the record is unusable."""
        sid, internal, cli, path = (record.get(k) for k in ("championId", "internalId", "cli", "path"))
        if not (isinstance(sid, str) and isinstance(internal, str) and isinstance(path, str)):
            return None
        if cli not in CLIS:
            return None
        values: dict[str, Any] = {}
        for attr, key in cls._KEYS.items():
            if key in record and record[key] is not None:
                values[attr] = record[key]
        extra = {k: v for k, v in record.items() if k not in cls._KEYS.values()}
        # A field of the wrong type is kept as it was, not trusted and not lost.
        for attr, kind in cls._TYPES.items():
            if attr in values and not isinstance(values[attr], kind):
                extra[cls._KEYS[attr]] = values.pop(attr)
        if "previous_ids" in values:
            values["previous_ids"] = tuple(str(v) for v in values["previous_ids"])
        return cls(**values, extra=extra)

    def to_record(self) -> SessionRecord:
        record: dict[str, Any] = {}
        for attr, key in self._KEYS.items():
            value = getattr(self, attr)
            if isinstance(value, tuple):
                if not value:
                    continue
                value = list(value)
            if value is not None and not (key == "description" and value == ""):
                record[key] = value
        for key, value in self.extra.items():
            record.setdefault(key, value)
        return cast(SessionRecord, record)

    def evolve(self, **changes: Any) -> Session:
        return replace(self, **changes)


@dataclass
class Document:
    """The store's content inside a transaction: usable sessions, plus raw records we keep as they are."""

    sessions: dict[str, Session] = field(default_factory=dict)
    unusable: list[Any] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, session_id: str) -> Session:
        try:
            return self.sessions[session_id]
        except KeyError:
            raise SessionNotFound(session_id=session_id) from None

    def put(self, session: Session) -> None:
        self.sessions[session.id] = session

    def remove(self, session_id: str) -> Session:
        session = self.get(session_id)
        del self.sessions[session_id]
        return session

    def to_json(self) -> dict[str, Any]:
        records: list[Any] = [s.to_record() for s in self.sessions.values()]
        return {**self.extra, "version": STORE_VERSION, "sessions": records + self.unusable}


class SessionStore:
    def __init__(self, path: Path, lock_timeout: float = 10.0) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.lock_timeout = lock_timeout

    # -- reading -----------------------------------------------------------------------------------

    def read(self) -> Document:
        """The current document, without the lock."""
        try:
            return self._parse(self._read_bytes())
        except StoreCorrupt:
            with self.transaction() as doc:  # moves the bad file aside under the lock
                return doc

    def sessions(self) -> list[Session]:
        return list(self.read().sessions.values())

    def get(self, session_id: str) -> Session:
        return self.read().get(session_id)

    def _read_bytes(self) -> bytes | None:
        return files.read_bytes(self.path)

    def _parse(self, raw: bytes | None) -> Document:
        if raw is None or not raw.strip():
            return Document()
        try:
            data = json.loads(raw)
        except ValueError as err:
            raise StoreCorrupt(path=str(self.path), detail=f"not JSON: {err}", kept_at=None) from err
        except RecursionError as err:
            raise StoreCorrupt(path=str(self.path), detail="nested too deeply", kept_at=None) from err
        if not isinstance(data, dict) or not isinstance(data.get("sessions", []), list):
            raise StoreCorrupt(path=str(self.path), detail="no sessions list", kept_at=None)
        version = data.get("version", STORE_VERSION)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise StoreCorrupt(
                path=str(self.path), detail=f"version {version!r} is not a number", kept_at=None
            )
        if version > STORE_VERSION:
            raise StoreTooNew(path=str(self.path), version=version)
        doc = Document(extra={k: v for k, v in data.items() if k not in ("version", "sessions")})
        for record in data.get("sessions", []):
            session = Session.from_record(record) if isinstance(record, dict) else None
            if session is None or session.id in doc.sessions:
                doc.unusable.append(record)
            else:
                doc.sessions[session.id] = session
        return doc

    # -- writing -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Document]:
        """Lock, read, hand out the document, and write it back if the block ends without an error."""
        lock = FileLock(self.lock_path, timeout=self.lock_timeout)  # one per transaction: thread-safe
        with lock:
            raw = self._read_bytes()
            try:
                doc = self._parse(raw)
            except StoreCorrupt as err:
                kept = self._keep_aside()
                raise StoreCorrupt(path=str(self.path), detail=err.detail, kept_at=str(kept)) from err
            before = doc.to_json()
            yield doc
            after = doc.to_json()
            if after != before or raw is None:
                self._write(after)

    def _keep_aside(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        os.replace(self.path, target)
        return target

    def _write(self, data: dict[str, Any]) -> None:
        payload = (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()
        files.write_atomic(self.path, payload)
