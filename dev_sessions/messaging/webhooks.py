"""Webhooks: messages told to HTTP endpoints (``config.json``'s ``webhooks``), off every message's path.

Which message an endpoint hears of (:func:`events_of`, pure): ``dm`` (not in a space), ``space``,
``mention`` (an ``@name`` in its body, :func:`mentions`), ``urgent``; with an ``agents`` filter, only
messages to one of them (or, for ``mention``, mentioning one). The body is JSON (:func:`payload_of`):
the events, the message as ``--json`` shows it, its recipients and mentions, the machine it was sent
from. With a secret, the header ``X-Dev-Sessions-Signature-256: sha256=<hex>`` is the HMAC-SHA256 of
the exact body under it (:func:`sign`); ``X-Dev-Sessions-Delivery`` is the same on every retry.

Who sends: the deliverer (:mod:`dev_sessions.messaging.deliver`), which ``msg send`` starts when a
message is one an endpoint wants (deciding that is pure and quick: ``msg send`` waits for nothing
else). In the deliverer, :class:`Sender` looks for new messages at each of its rounds and hands them
to one thread per endpoint, which POSTs them in order with a timeout, and retries a failure (no
answer, 5xx, 408, 429) with back-off (:data:`BACKOFF_S`); delivery into sessions never waits for it.
Each endpoint's progress (the last message it was told of) and its last attempts are kept in
``$DEV_SESSIONS_HOME/webhooks/state.json`` (under ``state.lock``): ``webhooks status`` reads it, and a
deliverer started later goes on from there. An endpoint new to that file hears of the messages sent
since ``config.json`` was last written. On a store shared by several machines, each machine's
deliverer tells of the messages sent from that machine.

The secret lives in ``config.json`` and this process's memory only: never in an argument, a log line,
the state file, or an error (which say the endpoint's host, not even its path, in logs).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dev_sessions.config import WEBHOOK_EVENTS, Settings, Webhook
from dev_sessions.errors import UsageError, WebhookFailed
from dev_sessions.store import now_iso

if TYPE_CHECKING:
    from dev_sessions.messaging.records import Message
    from dev_sessions.messaging.store import MessageStore

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Dev-Sessions-Signature-256"
BACKOFF_S = (0.5, 2.0, 10.0, 30.0, 60.0)
"""Seconds before each retry (the last one repeats)."""
KEEP_ATTEMPTS = 20
"""Attempts kept per endpoint for ``webhooks status``."""
LOOK_LIMIT = 200
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9][A-Za-z0-9._:+@-]{0,63})")


# -- what is sent (pure) ------------------------------------------------------------------------------------


def mentions(body: str) -> list[str]:
    """The names ``@name`` in a body (not an e-mail address's ``@``), each once, in order."""
    found: list[str] = []
    for match in _MENTION.finditer(body):
        name = match.group(1).rstrip(".:+-@")
        if name and name not in found:
            found.append(name)
    return found


def events_of(hook: Webhook, message: Message, recipients: Sequence[str]) -> list[str]:
    """The events of ``hook`` that ``message`` (to ``recipients``) is."""
    wanted = set(hook.events)
    agents = set(hook.agents) if hook.agents is not None else None
    to_them = agents is None or not agents.isdisjoint(recipients)
    found = []
    if "dm" in wanted and message.space is None and to_them:
        found.append("dm")
    if "space" in wanted and message.space is not None and to_them:
        found.append("space")
    if "mention" in wanted:
        named = mentions(message.body)
        if named and (agents is None or not agents.isdisjoint(named)):
            found.append("mention")
    if "urgent" in wanted and message.priority == "urgent" and to_them:
        found.append("urgent")
    return found


def wanted(hooks: Iterable[Webhook], message: Message, recipients: Sequence[str]) -> bool:
    """Whether any endpoint hears of this message (``msg send`` then makes sure the deliverer runs)."""
    return any(events_of(hook, message, recipients) for hook in hooks)


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of ``body`` under ``secret``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """Whether a signature header is right for ``body`` (what a receiver does; constant time)."""
    return hmac.compare_digest(sign(secret, body), header)


def payload_of(
    message: Message | None,
    recipients: Sequence[str],
    events: Sequence[str],
    machine: str | None,
    *,
    test: bool = False,
) -> bytes:
    body = {
        "events": list(events),
        "message": message.to_json() if message is not None else None,
        "to": list(recipients),
        "mentions": mentions(message.body) if message is not None else [],
        "machine": machine,
        "sentAt": now_iso(),
        "test": test,
    }
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def headers_of(hook: Webhook, body: bytes, events: Sequence[str], delivery: str) -> dict[str, str]:
    from dev_sessions import __version__

    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"dev-sessions/{__version__}",
        "X-Dev-Sessions-Event": ",".join(events),
        "X-Dev-Sessions-Delivery": delivery,
    }
    if hook.secret:
        headers[SIGNATURE_HEADER] = sign(hook.secret, body)
    return headers


def key_of(hook: Webhook) -> str:
    """An endpoint's name in the state file (its URL may carry a token: only a digest of it is kept)."""
    return hashlib.sha256(hook.url.encode("utf-8")).hexdigest()[:16]


def shown(url: str) -> str:
    """An endpoint as a log line shows it: its scheme, host and port (its path may be a token)."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/..."
    except ValueError:
        return "(unreadable URL)"


def retryable(status: int | None) -> bool:
    """No answer, a server error, 408 and 429 are tried again; any other answer is final."""
    return status is None or status >= 500 or status in (408, 429)


def post(hook: Webhook, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None, int]:
    """One POST: (the HTTP status, or None and why there was none; milliseconds taken). Redirects
    are not followed, proxies not used."""
    import http.client

    started = time.monotonic()
    parts = urlsplit(hook.url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            import ssl

            connection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=hook.timeout, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=hook.timeout)
        try:
            connection.request("POST", target, body=body, headers=headers)
            response = connection.getresponse()
            response.read(65536)
            status: int | None = response.status
            error = None if 200 <= response.status < 300 else f"HTTP {response.status} {response.reason}"
        finally:
            connection.close()
    except (OSError, http.client.HTTPException) as err:
        status, error = None, f"{type(err).__name__}: {' '.join(str(err).split()) or 'no answer'}"
    return status, error, int((time.monotonic() - started) * 1000)


# -- what is kept -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookAttempt:
    at: str
    message: int | None
    events: list[str]
    attempt: int
    status: int | None
    error: str | None
    ms: int
    outcome: str
    """``ok``, ``retrying`` (another attempt follows) or ``failed``."""
    test: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "at": self.at,
            "message": self.message,
            "events": list(self.events),
            "attempt": self.attempt,
            "status": self.status,
            "error": self.error,
            "ms": self.ms,
            "outcome": self.outcome,
            "test": self.test,
        }


@dataclass(frozen=True)
class WebhookInfo:
    url: str
    events: list[str]
    agents: list[str] | None
    signed: bool
    timeout: float
    retries: int
    cursor: int | None
    """The last message this endpoint was told of (None: none yet)."""
    attempts: list[WebhookAttempt] = field(default_factory=list)
    """The last attempts, newest last."""

    def to_json(self) -> dict[str, object]:
        return {
            "url": self.url,
            "events": list(self.events),
            "agents": self.agents,
            "signed": self.signed,
            "timeout": self.timeout,
            "retries": self.retries,
            "lastMessage": self.cursor,
            "attempts": [a.to_json() for a in self.attempts],
        }


@dataclass(frozen=True)
class WebhooksReport:
    hooks: list[WebhookInfo]
    problem: str | None
    """What is wrong with entries of ``config.json`` that were left out."""
    deliverer: bool
    """Whether the deliverer (which sends them) runs now."""

    def to_json(self) -> dict[str, object]:
        return {
            "webhooks": [h.to_json() for h in self.hooks],
            "problem": self.problem,
            "delivererRunning": self.deliverer,
        }


def _attempt_of(raw: object) -> WebhookAttempt | None:
    if not isinstance(raw, dict):
        return None
    try:
        return WebhookAttempt(
            at=str(raw["at"]),
            message=raw.get("message"),
            events=[str(e) for e in raw.get("events", [])],
            attempt=int(raw.get("attempt", 1)),
            status=raw.get("status"),
            error=raw.get("error"),
            ms=int(raw.get("ms", 0)),
            outcome=str(raw.get("outcome", "")),
            test=bool(raw.get("test", False)),
        )
    except (KeyError, TypeError, ValueError):
        return None


class State:
    """``webhooks/state.json``: per endpoint (by :func:`key_of`), its cursor and last attempts. Every
    change is a read, change and atomic write under ``state.lock``, so that the deliverer's threads and a
    ``webhooks test`` never lose each other's records."""

    def __init__(self, home: Path) -> None:
        self.directory = home / "webhooks"
        self.path = self.directory / "state.json"
        self.lock_path = self.directory / "state.lock"

    def load(self) -> dict[str, dict[str, Any]]:
        from dev_sessions.files import read_bytes

        try:
            raw = read_bytes(self.path)
        except OSError:
            raw = None
        if raw is None:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            log.warning("%s: not JSON; starting afresh", self.path)
            return {}
        hooks = data.get("hooks") if isinstance(data, dict) else None
        return {str(k): v for k, v in hooks.items() if isinstance(v, dict)} if isinstance(hooks, dict) else {}

    def change(self, key: str, how: Callable[[dict[str, Any]], None]) -> None:
        from dev_sessions.files import private_dir, write_atomic
        from dev_sessions.lock import FileLock

        private_dir(self.directory)
        with FileLock(self.lock_path):
            hooks = self.load()
            entry = hooks.setdefault(key, {})
            how(entry)
            write_atomic(self.path, json.dumps({"version": 1, "hooks": hooks}, indent=1).encode())

    def record(self, key: str, attempt: WebhookAttempt, cursor: int | None = None) -> None:
        def how(entry: dict[str, Any]) -> None:
            attempts = [a for a in entry.get("attempts", []) if isinstance(a, dict)]
            entry["attempts"] = [*attempts, attempt.to_json()][-KEEP_ATTEMPTS:]
            if cursor is not None:
                entry["cursor"] = max(int(entry.get("cursor") or 0), cursor)

        self.change(key, how)

    def advance(self, key: str, cursor: int) -> None:
        def how(entry: dict[str, Any]) -> None:
            entry["cursor"] = max(int(entry.get("cursor") or 0), cursor)

        self.change(key, how)


def report(settings: Settings) -> WebhooksReport:
    """What ``webhooks status`` shows: each endpoint (never its secret), its progress and last attempts."""
    from dev_sessions.messaging.deliver import running

    saved = State(settings.home).load()
    hooks = []
    for hook in settings.webhooks:
        entry = saved.get(key_of(hook), {})
        attempts = [a for a in map(_attempt_of, entry.get("attempts", [])) if a is not None]
        cursor = entry.get("cursor")
        hooks.append(
            WebhookInfo(
                hook.url, list(hook.events), list(hook.agents) if hook.agents is not None else None,
                bool(hook.secret), hook.timeout, hook.retries, int(cursor) if cursor else None, attempts,
            )
        )  # fmt: skip
    return WebhooksReport(hooks, settings.webhooks_problem, running(settings))


def try_endpoint(settings: Settings, url: str) -> WebhookAttempt:
    """POST a test event to the configured endpoint ``url`` now (once), record it, and return it
    (:class:`WebhookFailed` when it did not answer 2xx)."""
    hook = next((h for h in settings.webhooks if h.url == url), None)
    if hook is None:
        configured = len(settings.webhooks)
        raise UsageError(
            f"{url}: not one of the {configured} webhook(s) in {settings.config_path}; add it to its "
            "webhooks section first (its secret stays in that file)"
        )
    machine = settings.machine
    body = payload_of(None, [], ["test"], machine, test=True)
    delivery = f"test-{os.urandom(6).hex()}"
    status, error, ms = post(hook, body, headers_of(hook, body, ["test"], delivery))
    ok = status is not None and 200 <= status < 300
    attempt = WebhookAttempt(now_iso(), None, ["test"], 1, status, error, ms, "ok" if ok else "failed", True)
    State(settings.home).record(key_of(hook), attempt)
    if not ok:
        raise WebhookFailed(url=url, detail=f"the test was not taken ({error})")
    return attempt


# -- the deliverer's part ----------------------------------------------------------------------------------


def _since_config(settings: Settings) -> int:
    """When ``config.json`` was last written (ms): an endpoint new to the state file starts there."""
    try:
        return os.stat(settings.config_path).st_mtime_ns // 1_000_000
    except OSError:
        return int(time.time() * 1000)


@dataclass
class _Endpoint:
    hook: Webhook
    key: str
    offered: int
    """The last message looked at for it (handed over, or not one it wants)."""
    saved: int
    queue: queue.Queue[tuple[Message, list[str], list[str]] | None] = field(default_factory=queue.Queue)
    pending: int = 0
    thread: threading.Thread | None = None


class Sender:
    """The deliverer's webhooks: :meth:`look` at each round hands new messages to the endpoints'
    threads; :meth:`busy` while any is being sent or retried."""

    def __init__(self, settings: Settings, store: MessageStore) -> None:
        self.state = State(settings.home)
        self.machine = settings.machine_name()
        self.only_from = self.machine if store.shared else None
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        saved = self.state.load()
        start: int | None = None
        self.endpoints: list[_Endpoint] = []
        for hook in settings.webhooks:
            key = key_of(hook)
            cursor = saved.get(key, {}).get("cursor")
            if not isinstance(cursor, int):
                if start is None:
                    start = store.last_id_before(_since_config(settings))
                cursor = start
                self.state.advance(key, cursor)
            self.endpoints.append(_Endpoint(hook, key, cursor, cursor))

    def look(self, store: MessageStore) -> None:
        """Hand the messages after each endpoint's last one to its thread (those it wants)."""
        while self.endpoints:
            low = min(e.offered for e in self.endpoints)
            found = store.messages_after(low, self.only_from, LOOK_LIMIT)
            for message, recipients in found:
                for endpoint in self.endpoints:
                    if message.id <= endpoint.offered:
                        continue
                    endpoint.offered = message.id
                    events = events_of(endpoint.hook, message, recipients)
                    if events:
                        self._hand(endpoint, (message, recipients, events))
            if len(found) < LOOK_LIMIT:
                break
        for endpoint in self.endpoints:
            with self.lock:
                idle = endpoint.pending == 0
            if idle and endpoint.offered > endpoint.saved:
                # Nothing of it in flight: what was looked at since is done (none of it was wanted).
                self.state.advance(endpoint.key, endpoint.offered)
                endpoint.saved = endpoint.offered

    def has_work(self, store: MessageStore) -> bool:
        """Something being sent, or a message not looked at yet that an endpoint wants."""
        if self.busy():
            return True
        if not self.endpoints:
            return False
        low = min(e.offered for e in self.endpoints)
        for message, recipients in store.messages_after(low, self.only_from, LOOK_LIMIT):
            if any(message.id > e.offered and events_of(e.hook, message, recipients) for e in self.endpoints):
                return True
        return False

    def busy(self) -> bool:
        with self.lock:
            return any(e.pending for e in self.endpoints)

    def close(self) -> None:
        self.stopping.set()
        for endpoint in self.endpoints:
            endpoint.queue.put(None)
        for endpoint in self.endpoints:
            if endpoint.thread is not None:
                endpoint.thread.join(5)

    def _hand(self, endpoint: _Endpoint, item: tuple[Message, list[str], list[str]]) -> None:
        with self.lock:
            endpoint.pending += 1
        if endpoint.thread is None:
            endpoint.thread = threading.Thread(
                target=self._work, args=(endpoint,), name=f"webhook-{endpoint.key[:6]}", daemon=True
            )
            endpoint.thread.start()
        endpoint.queue.put(item)

    def _work(self, endpoint: _Endpoint) -> None:
        """One endpoint's thread: its messages in order, each until taken, refused, or out of retries."""
        where = shown(endpoint.hook.url)
        while (item := endpoint.queue.get()) is not None:
            message, recipients, events = item
            try:
                self._send(endpoint, where, message, recipients, events)
            except Exception:
                # A long-running thread: a failure of one message (the state file unwritable) is logged,
                # and the next one is still sent.
                log.exception("webhook %s: message %d", where, message.id)
            finally:
                with self.lock:
                    endpoint.pending -= 1
        log.debug("webhook %s: stopped", where)

    def _send(
        self, endpoint: _Endpoint, where: str, message: Message, recipients: list[str], events: list[str]
    ) -> None:
        hook = endpoint.hook
        body = payload_of(message, recipients, events, self.machine)
        headers = headers_of(hook, body, events, f"{message.id}-{endpoint.key[:8]}")
        for attempt in range(1, hook.retries + 2):
            status, error, ms = post(hook, body, headers)
            ok = status is not None and 200 <= status < 300
            again = not ok and attempt <= hook.retries and retryable(status) and not self.stopping.is_set()
            outcome = "ok" if ok else "retrying" if again else "failed"
            record = WebhookAttempt(now_iso(), message.id, list(events), attempt, status, error, ms, outcome)
            self.state.record(endpoint.key, record, None if again else message.id)
            if ok:
                log.info("webhook %s: message %d (%s) taken", where, message.id, ",".join(events))
                return
            log.warning("webhook %s: message %d attempt %d: %s", where, message.id, attempt, error)
            if not again:
                return
            if self.stopping.wait(BACKOFF_S[min(attempt - 1, len(BACKOFF_S) - 1)]):
                return


__all__ = [
    "WEBHOOK_EVENTS",
    "Sender",
    "WebhookAttempt",
    "WebhookFailed",
    "WebhookInfo",
    "WebhooksReport",
    "events_of",
    "mentions",
    "report",
    "sign",
    "try_endpoint",
    "verify",
    "wanted",
]
