"""The command surface, described once: every call a face of dev-sessions can make, and its values.

``SessionsAPI`` and ``MessagesAPI`` list the calls with their full signatures and return types. The
local library (``SessionManager``, ``Messenger``) implements them; everything else is derived from
them, so that a new command is written in the library and in its command line and nowhere else:

* the gateway serves exactly the methods marked ``@call`` here, with the arguments of their signature
  (``gateway.protocol.CALLS``);
* the sandbox client is these protocols over the gateway (``gateway.client.remote``);
* values travel as the dataclasses named in the return types (``gateway.protocol.encode``), and errors
  as their own class (``errors.to_wire`` / ``errors.revive``).

``@call`` also says what the gateway's policy looks at: ``long`` calls block (served as a coroutine,
``<name>_async`` on the library, with keep-alive lines); ``paths`` name a directory on the host
(translated from the container's, and checked against the served roots); ``identity`` says who acts
(filled in from ``DEV_SESSIONS_AGENT`` / ``DEV_SESSIONS_ID`` in a container, or by the gateway);
``owns`` holds the session id(s) acted on; ``scope`` are arguments only the gateway sets (a scoped
token's name, as a filter), never a client.

This module imports only the standard library at run time: a command in a container loads it to
know the calls, and nothing of the library behind them.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from dev_sessions.errors import UsageError

if TYPE_CHECKING:
    from dev_sessions.backend import LogItem, Started, Status, WaitResult
    from dev_sessions.messaging.store import Agent, Message, Receipt, Space
    from dev_sessions.store import Session

JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]
JsonObject = dict[str, JsonValue]

USER = "user"
# Matched with fullmatch: "$" would also accept a trailing newline.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:+-]{0,63}")


def check_name(name: str, what: str = "name") -> str:
    """An agent, space or session name as given, or a one-line ``UsageError``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UsageError(f"{name!r} is not a valid {what} (letters, digits and . _ @ : + -, up to 64)")
    return name


# -- the values calls return, besides the library's own records ------------------------------------------


@dataclass(frozen=True)
class Created:
    session: Session
    started: Started


@dataclass(frozen=True)
class Goal:
    """A Codex thread goal: what the agent works towards until it is met, and what it has used.
    ``record`` is the app-server's own record of it (printed by ``goal --json``)."""

    objective: str
    status: str
    token_budget: int | None
    tokens_used: int
    time_used_seconds: float
    record: JsonObject = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: JsonObject) -> Goal:
        def number(key: str) -> float:
            value = record.get(key)
            return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0

        budget = record.get("tokenBudget")
        return cls(
            objective=str(record.get("objective") or ""),
            status=str(record.get("status") or ""),
            token_budget=budget if isinstance(budget, int) and not isinstance(budget, bool) else None,
            tokens_used=int(number("tokensUsed")),
            time_used_seconds=number("timeUsedSeconds"),
            record=record,
        )


@dataclass(frozen=True)
class Inspection:
    """Everything known about a session: its record, its status, and what its backend adds (the tmux
    pane, the transcript, the app-server and bridge) as JSON."""

    session: Session
    status: Status
    facts: JsonObject = field(default_factory=dict)


@dataclass(frozen=True)
class AgentInfo:
    """One agent as ``agents`` lists it: a session (with its cli and parent) or an outside agent."""

    name: str
    kind: str
    status: str
    last_seen: str | None
    cli: str | None = None
    parent: str | None = None

    def to_json(self) -> JsonObject:
        data: JsonObject = {"name": self.name, "kind": self.kind}
        if self.kind == "session":
            data.update(cli=self.cli, status=self.status, parent=self.parent, lastSeen=self.last_seen)
        else:
            data.update(status=self.status, lastSeen=self.last_seen)
        return data


# -- what the gateway needs to know of a call ---------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One served call: the arguments a client may give (``args``), and what the gateway's policy and
    the sandbox client look at (see the module's docstring)."""

    name: str
    args: frozenset[str]
    defaults: tuple[tuple[str, object], ...] = ()
    long: bool = False
    paths: frozenset[str] = frozenset()
    identity: str | None = None
    owns: str | None = None
    scope: frozenset[str] = frozenset()
    order: tuple[str, ...] = ()

    def bind(self, args: Sequence[object], kwargs: dict[str, object]) -> dict[str, object]:
        """The arguments of one call made in Python (positional or by name), by name."""
        if len(args) > len(self.order):
            raise UsageError(f"{self.name}: takes at most {len(self.order)} positional arguments")
        named = dict(zip(self.order, args, strict=False))
        for key, value in kwargs.items():
            if key in named:
                raise UsageError(f"{self.name}: {key} given twice")
            named[key] = value
        unknown = set(named) - self.args
        if unknown:
            raise UsageError(f"{self.name}: cannot take {', '.join(sorted(unknown))} here")
        return named


_Spec = tuple[bool, tuple[str, ...], str | None, str | None, tuple[str, ...]]
F = TypeVar("F", bound=Callable[..., object])


def call(
    *,
    long: bool = False,
    paths: tuple[str, ...] = (),
    identity: str | None = None,
    owns: str | None = None,
    scope: tuple[str, ...] = (),
) -> Callable[[F], F]:
    """Marks a protocol method as a call every face serves."""

    def mark(function: F) -> F:
        spec: _Spec = (long, paths, identity, owns, scope)
        function.__dict__["__api_call__"] = spec
        return function

    return mark


@functools.cache
def calls(protocol: type) -> dict[str, Call]:
    """The calls of a protocol, by method name, from its ``@call`` marks and signatures."""
    found: dict[str, Call] = {}
    for name, function in vars(protocol).items():
        spec: _Spec | None = getattr(function, "__api_call__", None)
        if spec is None:
            continue
        long, paths, identity, owns, scope = spec
        parameters = [p for p in inspect.signature(function).parameters.values() if p.name != "self"]
        args = frozenset(p.name for p in parameters) - set(scope)
        found[name] = Call(
            name=name,
            args=args,
            defaults=tuple(
                (p.name, p.default) for p in parameters if p.default is not inspect.Parameter.empty
            ),
            long=long,
            paths=frozenset(paths),
            identity=identity,
            owns=owns,
            scope=frozenset(scope),
            order=tuple(
                p.name
                for p in parameters
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name in args
            ),
        )
    return found


# -- the two surfaces -----------------------------------------------------------------------------------


class SessionsAPI(Protocol):
    """Agent sessions: create, talk to, wait on, read and stop them."""

    @call(paths=("path",), identity="parent")
    def create(
        self,
        *,
        cli: str = "claude",
        path: str | None = None,
        description: str = "",
        mode: str = "native",
        approvals: str = "never",
        model: str | None = None,
        parent: str | None = None,
        plan: bool = False,
    ) -> Created: ...

    @call(owns="session_id")
    def get(self, session_id: str) -> Session: ...

    @call(owns="session_id")
    def send(
        self, session_id: str, text: str, *, steer: bool = False, plan: bool | None = None
    ) -> Session: ...

    @call(long=True, owns="session_ids")
    def wait(
        self, session_ids: Sequence[str], timeout: float | None = None, *, goal: bool = False
    ) -> list[WaitResult]: ...

    @call(long=True, owns="session_id")
    def ask(
        self, session_id: str, text: str, timeout: float | None = None
    ) -> tuple[WaitResult, list[str]]: ...

    @call(owns="session_id")
    def last_messages(self, session_id: str, count: int = 1) -> list[str]: ...

    @call(owns="session_id")
    def status(self, session_id: str) -> Status: ...

    @call(owns="session_id")
    def interrupt(self, session_id: str) -> bool: ...

    @call(owns="session_id")
    def respond(self, session_id: str, answer: str) -> str: ...

    @call(owns="session_id")
    def goal(
        self, session_id: str, action: str = "get", objective: str | None = None, budget: int | None = None
    ) -> Goal | None: ...

    @call(owns="session_id")
    def logs(self, session_id: str) -> list[LogItem]: ...

    @call(owns="session_id")
    def screen(self, session_id: str) -> str: ...

    @call(owns="session_id")
    def inspect(self, session_id: str) -> Inspection: ...

    @call(scope=("parent",))
    def list_sessions(self, parent: str | None = None) -> list[tuple[Session, Status]]: ...

    @call(owns="session_ids")
    def kill(self, session_ids: Sequence[str]) -> list[str]: ...

    @call(scope=("parent",))
    def kill_all(self, parent: str | None = None) -> list[str]: ...

    @call(scope=("parent",))
    def kill_older_than(self, seconds: float, parent: str | None = None) -> list[str]: ...


class MessagesAPI(Protocol):
    """Messages between agents: direct messages and threads, spaces, and who is there."""

    @call(identity="sender")
    def send(
        self,
        to: str,
        body: str,
        *,
        sender: str | None = None,
        priority: str = "normal",
        reply_to: int | None = None,
        metadata: JsonObject | None = None,
    ) -> Message: ...

    @call(identity="sender")
    def reply(
        self, message_id: int, body: str, *, sender: str | None = None, priority: str = "normal"
    ) -> Message: ...

    @call(identity="reader")
    def read(
        self,
        reader: str | None = None,
        *,
        unread: bool = False,
        mark_read: bool = False,
        sender: str | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> list[Message]: ...

    @call(long=True, identity="reader")
    def wait(
        self, reader: str | None = None, timeout: float | None = None, *, mark_read: bool = True
    ) -> list[Message]: ...

    @call(scope=("viewer",))
    def thread(self, message_id: int, viewer: str | None = None) -> list[Message]: ...

    @call(identity="reader")
    def mark_read(self, message_ids: list[int] | None, reader: str | None = None) -> int: ...

    @call(scope=("viewer",))
    def status(self, message_id: int, viewer: str | None = None) -> tuple[Message, list[Receipt]]: ...

    @call(scope=("viewer",))
    def search(self, query: str, limit: int = 50, viewer: str | None = None) -> list[Message]: ...

    @call(scope=("viewer",))
    def feed(
        self, since: str | None = None, limit: int | None = None, viewer: str | None = None
    ) -> list[Message]: ...

    @call(identity="creator")
    def create_space(
        self, name: str, parent: str | None = None, description: str = "", creator: str | None = None
    ) -> Space: ...

    @call()
    def spaces(self) -> list[Space]: ...

    @call(identity="agent")
    def join(self, space: str, agent: str | None = None) -> bool: ...

    @call(identity="agent")
    def leave(self, space: str, agent: str | None = None) -> bool: ...

    @call()
    def members(self, space: str) -> list[tuple[str, str]]: ...

    @call(identity="sender")
    def space_send(
        self,
        space: str,
        body: str,
        *,
        sender: str | None = None,
        priority: str = "normal",
        metadata: JsonObject | None = None,
        reply_to: int | None = None,
    ) -> Message: ...

    @call(identity="reader")
    def space_read(
        self,
        space: str,
        reader: str | None = None,
        *,
        since: str | None = None,
        limit: int | None = None,
        unread: bool = False,
    ) -> list[Message]: ...

    @call()
    def register(self, name: str) -> Agent: ...

    @call(identity="agent")
    def heartbeat(self, agent: str | None = None, status: str | None = None) -> str: ...

    @call()
    def agents(self, online: bool = False) -> list[AgentInfo]: ...


APIS: dict[str, type] = {"sessions": SessionsAPI, "messages": MessagesAPI}
