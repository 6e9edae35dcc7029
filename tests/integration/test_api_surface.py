"""One API, every face: each call of ``SessionsAPI`` and ``MessagesAPI`` answers through the gateway
(real HTTP, the sandbox client derived from the description) with the same types as the library in
process, and errors come back as the same class, message and exit code.

The gateway runs in this process (a thread with its own event loop), serving the real library over
scripted fake backends (``tests.fakes.backend``), so no agent is needed to reach every call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web

from dev_sessions.api import library
from dev_sessions.backend import Dialog, Option
from dev_sessions.config import Settings
from dev_sessions.errors import (
    BadAnswer,
    DevSessionsError,
    LeaseConflict,
    MessageNotFound,
    NameInUse,
    NoMessage,
    ProjectInUse,
    ProjectNotFound,
    SessionNotFound,
    SpaceNotFound,
    UsageError,
)
from dev_sessions.gateway.checks import required
from dev_sessions.gateway.client import remote_messages, remote_sessions
from dev_sessions.gateway.protocol import CALLS
from dev_sessions.gateway.server import Gateway, listen
from dev_sessions.messaging.messenger import Messenger
from dev_sessions.sessions import SessionManager
from tests.fakes.backend import FakeBackend, Turn
from tests.fakes.webhooks import Receiver

if TYPE_CHECKING:
    from dev_sessions.api import MessagesAPI, SessionsAPI

TOKEN = "surface-test-token-" + "x" * 32
QUESTION = Dialog("Allow?", options=(Option(1, "Yes"), Option(2, "No")))


@dataclasses.dataclass
class Faces:
    local_sessions: SessionsAPI
    remote_sessions: SessionsAPI
    local_messages: MessagesAPI
    remote_messages: MessagesAPI
    claude: FakeBackend
    codex: FakeBackend
    workspace: Path


@pytest.fixture
def faces(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Faces]:
    workspace = isolated / "ws"
    workspace.mkdir()
    monkeypatch.chdir(workspace)  # where a create without --path runs, in the container and on the host
    # A webhook to test (`webhook_test`), for messages none of the cases sends (no deliverer starts).
    receiver = Receiver()
    state = isolated / "state"
    state.mkdir(mode=0o700, exist_ok=True)
    webhook = {"url": receiver.url, "events": ["urgent"], "agents": ["nobody-at-all"], "secret": "s3"}
    (state / "config.json").write_text(json.dumps({"webhooks": [webhook]}))
    host = Settings.from_env(os.environ)
    claude, codex = FakeBackend("claude"), FakeBackend("codex")
    backends = {"claude": claude, "codex": codex}
    gateway = Gateway(
        host,
        token=TOKEN,
        binds=["127.0.0.1"],
        roots=[isolated],
        libraries={
            "sessions": lambda: SessionManager(host, backends=backends),
            "messages": lambda: Messenger(host),
        },
    )
    (sock,) = listen(["127.0.0.1"], 0)
    port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(gateway.app(), access_log=None)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.SockSite(runner, sock).start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    container = Settings.from_env(
        {
            **os.environ,
            "DEV_SESSIONS_SANDBOX": "1",
            "DEV_SESSIONS_GATEWAY_URL": f"http://127.0.0.1:{port}",
            "DEV_SESSIONS_GATEWAY_TOKEN": TOKEN,
            "CONTAINER_WORKSPACE": str(workspace),
            "HOST_PATH": str(workspace),
        }
    )
    try:
        yield Faces(
            SessionManager(host, backends=backends),
            remote_sessions(container),
            Messenger(host),
            remote_messages(container),
            claude,
            codex,
            workspace,
        )
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        gateway.pool.shutdown(wait=False)
        receiver.close()


def shape(value: object) -> object:
    """The types a value is made of, recursively (a list: the set of its elements' shapes)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value),
            tuple((f.name, shape(getattr(value, f.name))) for f in dataclasses.fields(value)),
        )
    if isinstance(value, list):
        return ("list", frozenset(repr(shape(v)) for v in value))
    if isinstance(value, tuple):
        return ("tuple", tuple(shape(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, repr(shape(v))) for k, v in value.items())))
    return type(value)


def same_shape(local: object, remote: object) -> None:
    assert shape(remote) == shape(local), f"local {local!r}\nremote {remote!r}"


# Each case gets one face of the API and returns what a call gave; it is run once in process and once
# through the gateway (set-up for both happens before either runs).
SessionCase = Callable[["SessionsAPI", Faces], object]


def _session(api: SessionsAPI, cli: str = "claude") -> str:
    return api.create(cli=cli).session.id


def _sent(api: SessionsAPI, faces: Faces, *turns: str | Turn) -> str:
    sid = _session(api)
    faces.claude.enqueue(*turns)
    api.send(sid, "go")
    return sid


def _respond(api: SessionsAPI, faces: Faces) -> object:
    sid = _sent(api, faces, Turn(outcome="waiting_for_input", dialog=QUESTION))
    return api.respond(sid, "Yes")


def _kill_older_than(api: SessionsAPI, faces: Faces) -> object:
    sid = _session(api)
    manager = faces.local_sessions
    assert isinstance(manager, SessionManager)
    with manager.store.transaction() as doc:
        doc.put(doc.get(sid).evolve(created_at="2020-01-01T00:00:00.000Z"))
    return api.kill_older_than(3600)


SESSION_CASES: dict[str, SessionCase] = {
    "create": lambda api, f: api.create(description="d"),
    "get": lambda api, f: api.get(_session(api)),
    "send": lambda api, f: api.send(_session(api), "hi"),
    "wait": lambda api, f: api.wait([_sent(api, f, "done")], 5),
    "ask": lambda api, f: api.ask(_session(api), "2+2?", 5),
    "last_messages": lambda api, f: api.last_messages(_sent(api, f, "reply"), 1),
    "status": lambda api, f: api.status(_session(api)),
    "interrupt": lambda api, f: api.interrupt(_sent(api, f, Turn(outcome="running"))),
    "respond": _respond,
    "goal": lambda api, f: api.goal(_session(api, "codex"), "set", "ship it", 100),
    "logs": lambda api, f: api.logs(_sent(api, f, "logged")),
    "follow": lambda api, f: list(api.follow([_sent(api, f, "followed")], since="2026-01-01T00:00:00Z")),
    "screen": lambda api, f: api.screen(_sent(api, f, "x")),
    "inspect": lambda api, f: api.inspect(_session(api)),
    "list_sessions": lambda api, f: (_session(api), api.list_sessions())[1],
    "kill": lambda api, f: api.kill([_session(api)]),
    "kill_all": lambda api, f: (_session(api), api.kill_all())[1],
    "kill_older_than": _kill_older_than,
}

MessageCase = Callable[["MessagesAPI", str], object]


def _message(api: MessagesAPI, me: str) -> int:
    return api.send("boss", "hello", sender=me).id


MESSAGE_CASES: dict[str, MessageCase] = {
    "send": lambda api, me: api.send("boss", "hi", sender=me, metadata={"k": [1, "v"]}),
    "reply": lambda api, me: api.reply(_message(api, me), "re", sender="boss"),
    "read": lambda api, me: (_message(api, me), api.read("boss", unread=True))[1],
    "wait": lambda api, me: (_message(api, me), api.wait("boss", 5))[1],
    "thread": lambda api, me: api.thread(_message(api, me)),
    "mark_read": lambda api, me: api.mark_read([_message(api, me)], "boss"),
    "status": lambda api, me: api.status(_message(api, me)),
    "search": lambda api, me: (_message(api, me), api.search("hello"))[1],
    "feed": lambda api, me: (_message(api, me), api.feed())[1],
    "create_space": lambda api, me: api.create_space(f"room-{me}", description="d", creator=me),
    "spaces": lambda api, me: (api.create_space(f"hall-{me}", creator=me), api.spaces())[1],
    "join": lambda api, me: api.join(_space(api, me), "boss"),
    "leave": lambda api, me: api.leave(_space(api, me), me),
    "members": lambda api, me: api.members(_space(api, me)),
    "space_send": lambda api, me: api.space_send(_space(api, me), "all", sender=me),
    "space_read": lambda api, me: (
        api.space_send(s := _space(api, me), "x", sender=me),
        api.space_read(s, "boss"),
    )[1],
    "register": lambda api, me: api.register(f"new-{me}"),
    "heartbeat": lambda api, me: api.heartbeat(me, "busy"),
    "agents": lambda api, me: api.agents(),
    "react": lambda api, me: api.react(_message(api, me), "👍", me),
    "unreact": lambda api, me: api.unreact((m := _message(api, me), api.react(m, "👍", me))[0], "👍", me),
    "reactions": lambda api, me: api.reactions((m := _message(api, me), api.react(m, ":+1:", me))[0]),
    "pin": lambda api, me: api.pin(_message(api, me), me),
    "unpin": lambda api, me: api.unpin((m := _message(api, me), api.pin(m, me))[0]),
    "pinned": lambda api, me: (api.pin(_message(api, me), me), api.pinned(reader=me))[1],
    "conversations": lambda api, me: (_message(api, me), api.conversations(me))[1],
    "context": lambda api, me: (api.send("boss", f"@{me} hi", sender="boss"), api.context(me))[1],
    "prune": lambda api, me: api.prune("30d", dry_run=True),
    "create_project": lambda api, me: api.create_project(
        f"p-{me}", tags=["web", "api"], description="d", creator=me
    ),
    "project": lambda api, me: api.project(_project(api, me)),
    "update_project": lambda api, me: api.update_project(_project(api, me), status="paused", tags=[]),
    "delete_project": lambda api, me: api.delete_project(_project(api, me)),
    "set_focus": lambda api, me: api.set_focus(_project(api, me), me),
    "update_space": lambda api, me: api.update_space(_space(api, me), project=_project(api, me)),
    "lease_acquire": lambda api, me: api.lease_acquire([f"res-{me}"], holder=me, reason="r", ttl="1h"),
    "lease_renew": lambda api, me: (
        api.lease_acquire([f"ren-{me}"], holder=me),
        api.lease_renew([f"ren-{me}"], ttl="2h", holder=me),
    )[1],
    "lease_release": lambda api, me: (
        api.lease_acquire([f"rel-{me}"], holder=me),
        api.lease_release([f"rel-{me}"], holder=me),
    )[1],
    "lease_check": lambda api, me: (
        api.lease_acquire([f"chk-{me}"], holder=me, exclusive=False),
        api.lease_check([f"chk-{me}"], holder="boss"),
    )[1],
    "install_lease_guard": lambda api, me: api.install_lease_guard(_repo(me)),
    "uninstall_lease_guard": lambda api, me: (
        api.install_lease_guard(repo := _repo(me)),
        api.uninstall_lease_guard(repo),
    )[1],
    "webhook_test": lambda api, me: api.webhook_test(api.webhooks().hooks[0].url),
}


def _project(api: MessagesAPI, me: str) -> str:
    name = f"p{os.urandom(3).hex()}"
    api.create_project(name, creator=me)
    return name


def _repo(me: str) -> str:
    """A git repository in the workspace (the same directory on the host and in the container)."""
    path = Path.cwd() / f"repo-{me}-{os.urandom(2).hex()}"
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return str(path)


def _space(api: MessagesAPI, me: str) -> str:
    name = f"s{os.urandom(3).hex()}"
    api.create_space(name, creator=me)
    api.join(name, me)
    api.join(name, "boss")
    return name


def _needs_arguments(api: str, call: str) -> bool:
    return bool(required(getattr(library(api), call)))


def test_every_call_that_takes_arguments_has_a_case() -> None:
    """A call without required arguments is called bare; the others need a case here."""
    assert set(SESSION_CASES) <= set(CALLS["sessions"])
    assert set(MESSAGE_CASES) <= set(CALLS["messages"])
    for api, cases in (("sessions", SESSION_CASES), ("messages", MESSAGE_CASES)):
        missing = [c for c in CALLS[api] if c not in cases and _needs_arguments(api, c)]
        assert not missing, f"{api}: add a case for {missing}"


def _bare(call: str) -> Callable[[object, object], object]:
    return lambda api, _: getattr(api, call)()


@pytest.mark.parametrize("call", sorted(CALLS["sessions"]))
def test_session_calls_answer_alike_through_the_gateway(faces: Faces, call: str) -> None:
    case = SESSION_CASES.get(call, _bare(call))
    local = case(faces.local_sessions, faces)
    remote = case(faces.remote_sessions, faces)
    same_shape(local, remote)
    assert remote is not None or call == "goal"


@pytest.mark.parametrize("call", sorted(CALLS["messages"]))
def test_message_calls_answer_alike_through_the_gateway(faces: Faces, call: str) -> None:
    faces.local_messages.register("boss")
    for me in ("alice", "carol"):
        faces.local_messages.register(me)
    case = MESSAGE_CASES.get(call, _bare(call))
    local = case(faces.local_messages, "alice")
    remote = case(faces.remote_messages, "carol")
    same_shape(local, remote)


def test_a_created_session_is_the_same_record_both_ways(faces: Faces) -> None:
    created = faces.remote_sessions.create(path=str(faces.workspace), description="from the container")
    assert faces.local_sessions.get(created.session.id) == created.session
    assert created.session.path == str(faces.workspace)


def _respond_badly(faces: Faces, remote: bool) -> object:
    api = faces.remote_sessions if remote else faces.local_sessions
    sid = _sent(api, faces, Turn(outcome="waiting_for_input", dialog=QUESTION))
    return api.respond(sid, "perhaps")


ERROR_CASES: list[tuple[str, type[DevSessionsError], Callable[[Faces, bool], object]]] = [
    (
        "no session",
        SessionNotFound,
        lambda f, r: (f.remote_sessions if r else f.local_sessions).status("nope-none"),
    ),
    (
        "empty text",
        UsageError,
        lambda f, r: (f.remote_sessions if r else f.local_sessions).send("nope-none", " "),
    ),
    ("bad answer", BadAnswer, _respond_badly),
    (
        "no message",
        MessageNotFound,
        lambda f, r: (f.remote_messages if r else f.local_messages).thread(987654),
    ),
    (
        "no space",
        SpaceNotFound,
        lambda f, r: (f.remote_messages if r else f.local_messages).members("nowhere"),
    ),
    ("timeout", NoMessage, lambda f, r: (f.remote_messages if r else f.local_messages).wait("boss", 0.2)),
    (
        "not an emoji",
        UsageError,
        lambda f, r: (f.remote_messages if r else f.local_messages).react(1, "ok", "boss"),
    ),
    (
        "no such message to pin",
        MessageNotFound,
        lambda f, r: (f.remote_messages if r else f.local_messages).pin(987654),
    ),
    (
        "no age",
        UsageError,
        lambda f, r: (f.remote_messages if r else f.local_messages).prune("a while"),
    ),
    (
        "name in use",
        NameInUse,
        lambda f, r: (f.remote_messages if r else f.local_messages).register("held", session="codex:other"),
    ),
    (
        "no project",
        ProjectNotFound,
        lambda f, r: (f.remote_messages if r else f.local_messages).set_focus("nowhere"),
    ),
    (
        "project in use",
        ProjectInUse,
        lambda f, r: _used_project(f.remote_messages if r else f.local_messages),
    ),
    ("lease held", LeaseConflict, lambda f, r: _held(f.remote_messages if r else f.local_messages)),
]


def _used_project(api: MessagesAPI) -> object:
    if api.projects() == []:  # made once, by the first face
        api.create_project("used", creator="boss")
        api.create_space("in-use", creator="boss", project="used")
    return api.delete_project("used")


def _held(api: MessagesAPI) -> object:
    api.lease_acquire(["the-db"], holder="boss", reason="migrating", ttl="1h")
    return api.lease_acquire(["the-db", "other"], holder="carol")


@pytest.mark.parametrize(("name", "kind", "case"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors_come_back_as_themselves(
    faces: Faces, name: str, kind: type[DevSessionsError], case: Callable[[Faces, bool], object]
) -> None:
    faces.local_messages.register("boss")
    faces.local_messages.register("held", session="claude:holder")
    with pytest.raises(kind) as local:
        case(faces, False)
    with pytest.raises(kind) as remote:
        case(faces, True)
    assert type(remote.value) is type(local.value)
    assert remote.value.exit_code == local.value.exit_code
    if name not in ("bad answer", "lease held"):  # the session ids differ; the expiry moved on
        assert str(remote.value) == str(local.value)
    assert isinstance(remote.value, LookupError) == isinstance(local.value, LookupError)
    if isinstance(remote.value, LeaseConflict) and isinstance(local.value, LeaseConflict):
        assert [c["holder"] for c in remote.value.conflicts] == ["boss"]
        assert [set(c) for c in remote.value.conflicts] == [set(c) for c in local.value.conflicts]
    else:
        assert vars(remote.value) == vars(local.value) or name == "bad answer"
