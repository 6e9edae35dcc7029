"""Who may use the dashboard: one-time login codes, the cookie sessions they are traded for, and
their CSRF tokens. No HTTP here (the server applies it), and nothing here logs a code or a cookie.

A login code is a file in ``$DEV_SESSIONS_HOME/dashboard/login/`` named by the SHA-256 of the code
(the code itself is never stored), ``0600`` in a ``0700`` directory. Using it removes the file:
``unlink`` succeeds once, so a code works once even if two requests race, and a code older than
``CODE_TTL_S`` is refused (and removed). Codes are files so that a second ``dev-sessions dashboard``
can give a fresh login URL for the one already running (any process of the user's may; it could read
the state directory anyway, see SECURITY.md).

A cookie session is in the server's memory only: a random value, its CSRF token, and when it was
last used (it ends after ``SESSION_IDLE_S`` unused, and with the server).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from dev_sessions.files import private_dir, write_atomic

CODE_TTL_S = 300.0
SESSION_IDLE_S = 12 * 3600.0


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


class LoginCodes:
    """The one-time codes of one state directory."""

    def __init__(self, home: Path, ttl: float = CODE_TTL_S) -> None:
        self.directory = home / "dashboard" / "login"
        self.ttl = ttl

    def issue(self) -> str:
        """A new code, good once within ``ttl`` seconds."""
        private_dir(self.directory.parent)
        private_dir(self.directory)
        code = secrets.token_urlsafe(24)
        write_atomic(self.directory / _digest(code), b"")
        self._sweep()
        return code

    def use(self, code: str) -> bool:
        """Whether ``code`` is a live code; it is used up either way."""
        if not code or len(code) > 200:
            return False
        path = self.directory / _digest(code)
        try:
            issued = path.lstat().st_mtime
            path.unlink()
        except OSError:
            return False  # never issued, used already, or taken by a request racing this one
        return time.time() - issued <= self.ttl

    def _sweep(self) -> None:
        """Remove the codes that expired (never used)."""
        now = time.time()
        for path in self.directory.iterdir():
            try:
                if now - path.lstat().st_mtime > self.ttl:
                    path.unlink()
            except OSError:
                continue


@dataclass
class Visit:
    """A logged-in browser: its CSRF token, and when it was last seen."""

    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    seen: float = field(default_factory=time.monotonic)


class Visits:
    """The cookie sessions of one server, in memory."""

    def __init__(self, idle: float = SESSION_IDLE_S) -> None:
        self.idle = idle
        self._visits: dict[str, Visit] = {}

    def start(self) -> tuple[str, Visit]:
        """A new session: the cookie's value, and the visit it names."""
        self._expire()
        cookie = secrets.token_urlsafe(32)
        visit = Visit()
        self._visits[cookie] = visit
        return cookie, visit

    def get(self, cookie: str | None) -> Visit | None:
        if not cookie:
            return None
        visit = self._visits.get(cookie)
        if visit is None:
            return None
        now = time.monotonic()
        if now - visit.seen > self.idle:
            del self._visits[cookie]
            return None
        visit.seen = now
        return visit

    def end(self, cookie: str | None) -> Visit | None:
        """End a session (log out); the visit it was, if it was one."""
        return self._visits.pop(cookie, None) if cookie else None

    def _expire(self) -> None:
        now = time.monotonic()
        for cookie in [c for c, v in self._visits.items() if now - v.seen > self.idle]:
            del self._visits[cookie]


def csrf_ok(visit: Visit, given: str | None) -> bool:
    """Whether a request carries this visit's CSRF token (compared in constant time)."""
    return bool(given) and hmac.compare_digest(visit.csrf.encode(), (given or "").encode())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
