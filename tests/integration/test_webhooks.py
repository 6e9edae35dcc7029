"""Webhooks against a real HTTP endpoint on 127.0.0.1 (``tests.fakes.webhooks``), on both engines: what
is sent and signed, a retry after a 500, ``msg send`` waiting for none of it, a delivery into a
session not held up by a slow endpoint, and ``webhooks status`` / ``webhooks test``."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev_sessions.backend import BeforeTyping
from dev_sessions.config import Settings
from dev_sessions.messaging.deliver import Deliverer, running
from dev_sessions.messaging.store import MessageStore
from dev_sessions.sessions import SessionManager
from dev_sessions.store import Session, SessionStore
from tests.conftest import DevSessions, eventually, one_line_error
from tests.fakes.backend import FakeBackend
from tests.fakes.webhooks import Received, Receiver

pytestmark = pytest.mark.usefixtures("messages_url")

SECRET = "whsec-" + "k" * 24


def _configure(isolated: Path, *hooks: dict[str, object]) -> None:
    state = isolated / "state"
    state.mkdir(mode=0o700, exist_ok=True)
    (state / "config.json").write_text(json.dumps({"webhooks": list(hooks)}))


@pytest.fixture
def receiver(isolated: Path) -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.close()
    # The deliverer a `msg send` of the test started (it would retry a closed endpoint a while).
    settings = Settings.from_env()
    if running(settings):
        pid = int((settings.home / "deliverer.lock").read_text() or 0)
        if pid:
            os.kill(pid, signal.SIGTERM)


def _signed(request: Received) -> dict[str, object]:
    """The body, once its signature is checked with the secret (as a receiver would, by hand)."""
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["x-dev-sessions-signature-256"], expected)
    body: dict[str, object] = json.loads(request.body)
    return body


class Pasting(FakeBackend):
    """An agent whose every delivered notice is kept, in order."""

    def __init__(self) -> None:
        super().__init__("claude")
        self.pasted: list[str] = []

    def deliver(
        self, session: Session, text: str, *, urgent: bool = False, check: BeforeTyping | None = None
    ) -> bool:
        verdict = check() if check is not None else "type"
        if verdict != "type":
            return verdict == "there"
        self.pasted.append(text)
        return True


def _status(cli: DevSessions) -> dict[str, object]:
    found: dict[str, object] = json.loads(cli.ok("webhooks", "status", "--json"))
    return found


def test_each_message_an_endpoint_wants_is_posted_signed(
    cli: DevSessions, isolated: Path, receiver: Receiver
) -> None:
    cli.ok("agents", "register", "boss")
    cli.ok("agents", "register", "carol")
    cli.ok("msg", "send", "--to", "boss", "before the webhook was there")
    _configure(
        isolated,
        {"url": receiver.url, "secret": SECRET, "retries": 1},
        {"url": receiver.url + "?only=carol", "events": ["dm"], "agents": ["carol"], "secret": SECRET},
    )
    cli.ok("space", "create", "team")
    cli.ok("space", "join", "team", "--as", "boss")
    first = int(cli.ok("msg", "send", "--to", "boss", "look @carol", "--priority", "urgent").strip())
    second = int(cli.ok("space", "send", "team", "all hands", "--from", "carol").strip())
    third = int(cli.ok("msg", "send", "--to", "carol", "for carol only").strip())
    got = receiver.wait_for(4)
    everything = [r for r in got if "only=carol" not in r.path]
    only_carol = [r for r in got if "only=carol" in r.path]
    bodies = [_signed(r) for r in everything]
    assert [b["message"]["id"] for b in bodies] == [first, second, third]  # type: ignore[index]
    assert [b["events"] for b in bodies] == [["dm", "mention", "urgent"], ["space"], ["dm"]]
    assert bodies[0]["to"] == ["boss"] and bodies[0]["mentions"] == ["carol"] and bodies[1]["to"] == ["boss"]
    assert bodies[0]["message"]["body"] == "look @carol" and bodies[0]["test"] is False  # type: ignore[index]
    request = everything[0]
    assert request.path == "/hook/secret-path" and request.headers["content-type"] == "application/json"
    assert request.headers["x-dev-sessions-event"] == "dm,mention,urgent"
    assert request.headers["x-dev-sessions-delivery"].startswith(f"{first}-")
    assert [_signed(r)["message"]["id"] for r in only_carol] == [third]  # type: ignore[index]
    hooks = _status(cli)["webhooks"]
    assert [h["lastMessage"] for h in hooks] == [third, third]  # type: ignore[index]
    assert [a["outcome"] for a in hooks[0]["attempts"]] == ["ok", "ok", "ok"]  # type: ignore[index]
    assert hooks[0]["signed"] is True and SECRET not in json.dumps(hooks)
    eventually(lambda: not running(Settings.from_env()), timeout=30)  # it goes, with nothing left
    for kept in (isolated / "state").rglob("*"):
        if kept.is_file() and kept.name != "config.json" and not kept.name.startswith("messages.db"):
            assert SECRET.encode() not in kept.read_bytes(), kept


def test_a_500_is_retried_with_the_same_delivery(
    cli: DevSessions, isolated: Path, receiver: Receiver
) -> None:
    cli.ok("agents", "register", "boss")
    _configure(isolated, {"url": receiver.url, "secret": SECRET, "events": ["dm"]})
    receiver.enqueue(500)
    sent = int(cli.ok("msg", "send", "--to", "boss", "try again").strip())
    failed, taken = receiver.wait_for(2)
    assert (failed.status, taken.status) == (500, 204)
    assert failed.body == taken.body and _signed(taken)["message"]["id"] == sent  # type: ignore[index]
    assert failed.headers["x-dev-sessions-delivery"] == taken.headers["x-dev-sessions-delivery"]

    def attempts() -> list[tuple[object, ...]]:
        hooks: list[dict[str, list[dict[str, object]]]] = _status(cli)["webhooks"]  # type: ignore[assignment]
        return [(a["attempt"], a["status"], a["outcome"]) for a in hooks[0]["attempts"]]

    eventually(lambda: len(attempts()) == 2)
    assert attempts() == [(1, 500, "retrying"), (2, 204, "ok")]
    assert "#1  retrying  500" in cli.ok("webhooks", "status")


def test_msg_send_waits_for_no_webhook(cli: DevSessions, isolated: Path, receiver: Receiver) -> None:
    cli.ok("agents", "register", "boss")
    # A POST would wait up to a minute for the answer: msg send must be done long before.
    _configure(isolated, {"url": receiver.url, "secret": SECRET, "timeout": 60})
    receiver.hold()  # the endpoint takes the request and does not answer
    sending = cli.start("msg", "send", "--to", "boss", "do not wait for the hook")
    done = sending.finish(timeout=30)
    assert done.returncode == 0, done.stderr
    receiver.wait_held(1)  # posted, after msg send was done, and still unanswered
    assert [m["body"] for m in json.loads(cli.ok("msg", "read", "--as", "boss", "--json"))] == [
        "do not wait for the hook"
    ]
    receiver.release()
    assert _signed(receiver.wait_for(1)[0])["message"]["body"] == "do not wait for the hook"  # type: ignore[index]


def test_a_slow_endpoint_never_holds_up_a_delivery_into_a_session(
    isolated: Path, receiver: Receiver, message_store: MessageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEV_SESSIONS_DELIVERER_LINGER", "0.2")
    _configure(isolated, {"url": receiver.url, "secret": SECRET, "events": ["dm"]})
    settings = Settings.from_env()
    with SessionStore(settings.store_path).transaction() as document:
        document.put(Session(id="fizz-top", internal_id="fizz-uuid", cli="claude", path=str(isolated)))
    claude = Pasting()
    deliverer = Deliverer(settings, os.environ)
    deliverer.manager = SessionManager(settings, backends={"claude": claude})
    receiver.hold()
    sent = message_store.send(
        "user", {"fizz-top": "conversation"}, "into the session", machine=settings.machine
    )
    thread = threading.Thread(target=deliverer.run, daemon=True)
    thread.start()
    eventually(lambda: claude.pasted)
    receiver.wait_held(1)  # the endpoint still holds its request: the paste did not wait for it
    assert message_store.receipts(sent.id)[0].state == "delivered"
    assert receiver.requests == []
    receiver.release()
    assert _signed(receiver.wait_for(1)[0])["message"]["id"] == sent.id  # type: ignore[index]
    # (On a shared store a deliverer stays while its machine has sessions: without one, it goes.)
    with SessionStore(settings.store_path).transaction() as document:
        document.remove("fizz-top")
    thread.join(30)
    assert not thread.is_alive(), "the deliverer goes once the endpoint has its message"
    deliverer.close()
    deliverer.store.close()


def test_webhooks_status_and_test_from_the_command_line(
    cli: DevSessions, isolated: Path, receiver: Receiver
) -> None:
    assert "no webhooks" in cli("webhooks", "status").stderr
    _configure(isolated, {"url": receiver.url, "secret": SECRET}, {"url": "ftp://nope", "secret": SECRET})
    status = cli("webhooks", "status")
    assert status.returncode == 0 and "webhooks[1]: url:" in status.stderr and SECRET not in status.stderr
    assert status.stdout.startswith(f"{receiver.url}  dm,space,mention,urgent  signed")
    out = cli.ok("webhooks", "test", receiver.url)
    assert out.startswith(f"{receiver.url}: taken (204) in ")
    tested = _signed(receiver.wait_for(1)[0])
    assert tested["test"] is True and tested["events"] == ["test"] and tested["message"] is None
    receiver.enqueue(503)
    one_line_error(cli("webhooks", "test", receiver.url), 1, "the test was not taken (HTTP 503")
    one_line_error(cli("webhooks", "test", "http://127.0.0.1:9/other"), 2, "not one of the 1 webhook(s)")
    attempts = _status(cli)["webhooks"][0]["attempts"]  # type: ignore[index]
    assert [(a["test"], a["status"]) for a in attempts] == [(True, 204), (True, 503)]
    everything = status.stdout + status.stderr + out + json.dumps(_status(cli))
    assert SECRET not in everything
