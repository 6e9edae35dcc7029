"""The gateway's tokens: the owner's token, and scoped tokens bound to one identity and its own roots.

* The owner token (``$DEV_SESSIONS_HOME/gateway-token`` or ``DEV_SESSIONS_GATEWAY_TOKEN``) acts as
  anyone, like the user at the host's own shell. It is made on first use (written in full before it
  appears, so two first starts agree and none sees an empty file), and a token that is empty or
  short is refused, never served: a full disk must not leave a door that opens on an empty token.
* A scoped token (``gateway token --for NAME [--root DIR]...``) acts as NAME only: it sends and reads
  as NAME, its sessions are the ones it created, and its paths lie under its own roots. Scoped tokens
  are kept in ``$DEV_SESSIONS_HOME/gateway-tokens.json`` as SHA-256 hashes (the token is shown once,
  when made), listed with ``gateway tokens`` and revoked with ``gateway revoke``; a running gateway
  sees a revocation at the next request.

A token is ``dsg_<id>_<secret>`` for scoped ones (the id finds the entry, the secret is compared by
its hash in constant time) and any string of at least 32 safe characters for the owner's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dev_sessions import files
from dev_sessions.config import Settings
from dev_sessions.errors import DevSessionsError, TokenNotFound, TokenUnusable, UsageError
from dev_sessions.lock import FileLock

MIN_LENGTH = 32
_SAFE = re.compile(r"[A-Za-z0-9._~+/=-]+")
_SCOPED = re.compile(r"dsg_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
TOKENS_VERSION = 1


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: the owner (``name`` None) or one identity with its roots."""

    name: str | None = None
    roots: tuple[str, ...] = ()
    token_id: str | None = None

    @property
    def owner(self) -> bool:
        return self.name is None


OWNER = Principal()


@dataclass(frozen=True)
class Scoped:
    id: str
    name: str
    roots: tuple[str, ...]
    sha256: str
    created_at: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.extra,
            "id": self.id,
            "name": self.name,
            "roots": list(self.roots),
            "sha256": self.sha256,
            "createdAt": self.created_at,
        }


def owner_path(settings: Settings) -> Path:
    return settings.home / "gateway-token"


def scoped_path(settings: Settings) -> Path:
    return settings.home / "gateway-tokens.json"


def check_owner_token(token: str, source: str) -> str:
    fix = (
        "set it to at least 32 letters, digits or -_.~+/= (e.g. `openssl rand -hex 32`)"
        if source.startswith("$")
        else "make a new one with `dev-sessions gateway token --rotate`"
    )
    if not token:
        raise TokenUnusable(source=source, detail="is empty", fix=fix)
    if len(token) < MIN_LENGTH:
        raise TokenUnusable(source=source, detail=f"is too short ({len(token)} characters)", fix=fix)
    if not _SAFE.fullmatch(token):
        raise TokenUnusable(source=source, detail="has spaces or characters a header cannot carry", fix=fix)
    return token


def owner_token(settings: Settings) -> str:
    """The owner's token: ``DEV_SESSIONS_GATEWAY_TOKEN`` if set, else the token file (made if missing)."""
    explicit = settings.gateway_token
    if explicit:
        return check_owner_token(explicit, "$DEV_SESSIONS_GATEWAY_TOKEN")
    path = owner_path(settings)
    data = files.create_once(path, secrets.token_urlsafe(32).encode())
    return check_owner_token(data.decode("utf-8", "replace").strip(), str(path))


def rotate_owner_token(settings: Settings) -> str:
    token = secrets.token_urlsafe(32)
    files.write_atomic(owner_path(settings), token.encode())
    return token


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenRegistry:
    """The scoped tokens, read fresh whenever the file changed (a revocation counts at once)."""

    def __init__(self, settings: Settings) -> None:
        self.path = scoped_path(settings)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._seen: tuple[int, int] | None = None
        self._tokens: dict[str, Scoped] = {}

    def _load(self) -> tuple[dict[str, Scoped], dict[str, Any]]:
        raw = files.read_bytes(self.path)
        if not raw:
            return {}, {}
        try:
            data = json.loads(raw)
            entries = data["tokens"]
            tokens = {}
            for entry in entries:
                known = ("id", "name", "roots", "sha256", "createdAt")
                token = Scoped(
                    id=str(entry["id"]),
                    name=str(entry["name"]),
                    roots=tuple(str(r) for r in entry.get("roots", [])),
                    sha256=str(entry["sha256"]),
                    created_at=str(entry.get("createdAt", "")),
                    extra={k: v for k, v in entry.items() if k not in known},
                )
                tokens[token.id] = token
        except (ValueError, KeyError, TypeError, RecursionError) as err:
            raise DevSessionsError(f"{self.path}: unreadable token list ({err}); fix or remove it") from err
        return tokens, {k: v for k, v in data.items() if k not in ("version", "tokens")}

    def tokens(self) -> list[Scoped]:
        return list(self._load()[0].values())

    def _save(self, tokens: Mapping[str, Scoped], extra: Mapping[str, Any]) -> None:
        document = {**extra, "version": TOKENS_VERSION, "tokens": [t.to_json() for t in tokens.values()]}
        files.write_atomic(self.path, (json.dumps(document, indent=2) + "\n").encode())

    def create(self, name: str, roots: Iterable[str]) -> tuple[Scoped, str]:
        """A new scoped token for ``name``: its entry, and the token itself (shown once, never kept)."""
        from dev_sessions.api import check_name
        from dev_sessions.store import now_iso

        check_name(name, "agent name")
        resolved = []
        for raw in roots:
            root = Path(raw).expanduser()
            if not root.is_dir():
                raise UsageError(f"--root {raw}: no such directory")
            resolved.append(str(root.resolve()))
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        token = f"dsg_{token_id}_{secret}"
        entry = Scoped(token_id, name, tuple(resolved), _hash(token), now_iso())
        with FileLock(self.lock_path):
            tokens, extra = self._load()
            tokens[token_id] = entry
            self._save(tokens, extra)
        return entry, token

    def revoke(self, which: str) -> list[Scoped]:
        """Remove the token with this id, or every token of this name."""
        with FileLock(self.lock_path):
            tokens, extra = self._load()
            gone = [t for t in tokens.values() if which in (t.id, t.name)]
            if not gone:
                raise TokenNotFound(which=which)
            for token in gone:
                del tokens[token.id]
            self._save(tokens, extra)
        return gone

    def verify(self, presented: str) -> Scoped | None:
        match = _SCOPED.fullmatch(presented)
        if match is None:
            return None
        self._refresh()
        entry = self._tokens.get(match.group(1))
        if entry is None or not hmac.compare_digest(entry.sha256, _hash(presented)):
            return None
        return entry

    def _refresh(self) -> None:
        try:
            info = os.stat(self.path)
            seen: tuple[int, int] | None = (info.st_mtime_ns, info.st_ino)
        except FileNotFoundError:
            seen = None
        if seen != self._seen:
            self._tokens = self._load()[0] if seen is not None else {}
            self._seen = seen


def authenticate(header: str | None, owner: str, registry: TokenRegistry) -> Principal | None:
    """Who an ``Authorization`` header speaks for; None when it proves nothing.

    The header must be ``Bearer`` and the token exactly, without any trimming: a header of spaces
    must never match an empty token (and the owner token is never empty, see :func:`owner_token`).
    """
    if header is None:
        return None
    scheme, sep, presented = header.partition(" ")
    if not sep or scheme.lower() != "bearer" or not presented:
        return None
    data = presented.encode("utf-8", "surrogateescape")
    if owner and hmac.compare_digest(data, owner.encode()):
        return OWNER
    entry = registry.verify(presented)
    if entry is None:
        return None
    return Principal(name=entry.name, roots=entry.roots, token_id=entry.id)
