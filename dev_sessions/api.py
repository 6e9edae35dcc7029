"""The command surface, described once: which library methods are the API, and the values they return.

The API is the methods of the library marked ``@call``: ``SessionManager`` (the ``sessions`` API,
``SessionsAPI``) and ``Messenger`` (``messages``, ``MessagesAPI``), with their signatures and typed
results written once, there. Every other face is derived from them, so that a new command is written
in the library and in its command line and nowhere else:

* the gateway serves exactly the ``@call`` methods, with the arguments of their signatures
  (``gateway.protocol.CALLS``), and checks each argument against its type;
* the sandbox client is those methods over the gateway (``gateway.client.Remote``), typed as the
  library, returning the same objects;
* values travel as the dataclasses of their return types (``gateway.protocol.encode``), and errors as
  their own class (``errors.to_wire`` / ``errors.revive``).

``@call`` also names the call as an MCP tool (``tool``, ``about``: :mod:`dev_sessions.mcp`), and says
what the gateway's policy looks at: ``long`` calls block (served by the library's
``<name>_async`` coroutine, with keep-alive lines); ``paths`` name a directory on the host (translated
from the container's, and checked against the served roots); ``identity`` says who acts (filled in
from ``DEV_SESSIONS_AGENT`` / ``DEV_SESSIONS_ID`` in a container, or by the gateway); ``owns`` holds
the session id(s) acted on; ``scope`` are arguments only the gateway sets (a scoped token's name, as a
filter), never a client.

Besides, the JSON types and the rule for names. This module is loaded by every command: it holds
nothing that costs time to make.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from dev_sessions.errors import UsageError

if TYPE_CHECKING:
    pass

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


# -- what the gateway needs to know of a call ---------------------------------------------------------------


class Call(NamedTuple):
    """One served call: the arguments a client may give (``args``), and what the gateway's policy and
    the sandbox client look at (see the module's docstring). (A named tuple: made in a tenth of the
    time of a dataclass, and this module is loaded by every command.)"""

    name: str
    args: frozenset[str]
    defaults: tuple[tuple[str, object], ...] = ()
    long: bool = False
    paths: frozenset[str] = frozenset()
    identity: str | None = None
    owns: str | None = None
    scope: frozenset[str] = frozenset()
    order: tuple[str, ...] = ()
    tool: str = ""
    """Its name as an MCP tool (``dev-sessions mcp``): the method's, unless two APIs share it."""
    about: str = ""
    """What it does, in one line for an agent (the MCP tool's description)."""
    stream: bool = False
    """It returns an iterator (``<name>_async``: an async one): the gateway sends each item as a line
    as it comes; no MCP tool (a tool answers once)."""

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


_Spec = tuple[bool, tuple[str, ...], str | None, str | None, tuple[str, ...], str | None, str, bool]
F = TypeVar("F", bound=Callable[..., object])


def call(
    *,
    long: bool = False,
    paths: tuple[str, ...] = (),
    identity: str | None = None,
    owns: str | None = None,
    scope: tuple[str, ...] = (),
    tool: str | None = None,
    about: str = "",
    stream: bool = False,
) -> Callable[[F], F]:
    """Marks a library method as a call of the API, which every face then serves."""

    def mark(function: F) -> F:
        spec: _Spec = (long, paths, identity, owns, scope, tool, about, stream)
        function.__dict__["__api_call__"] = spec
        return function

    return mark


@functools.cache
def calls(cls: type) -> dict[str, Call]:
    """The calls of a library class, by method name, from its ``@call`` marks and signatures."""
    found: dict[str, Call] = {}
    members: dict[str, Callable[..., object]] = {}
    for klass in reversed(cls.__mro__):  # a library's calls may come from a base class of its own
        members.update(vars(klass))
    for name, function in members.items():
        spec: _Spec | None = getattr(function, "__api_call__", None)
        if spec is None:
            continue
        long, paths, identity, owns, scope, tool, about, stream = spec
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
            tool=tool or name,
            about=about,
            stream=stream,
        )
    return found


# -- the two surfaces -----------------------------------------------------------------------------------

# Where each API is implemented: the library class whose ``@call`` methods are the API.
LIBRARIES: dict[str, tuple[str, str]] = {
    "sessions": ("dev_sessions.sessions", "SessionManager"),
    "messages": ("dev_sessions.messaging.messenger", "Messenger"),
}


def library(api: str) -> type:
    """The class that implements ``api`` (imported on first use)."""
    module, name = LIBRARIES[api]
    found: type = getattr(importlib.import_module(module), name)
    return found


if TYPE_CHECKING:
    # The typed surfaces every face is written against: the library classes, of which only the
    # ``@call`` methods are used outside the library (tests/unit/test_api.py checks the command line).
    from dev_sessions.messaging.messenger import Messenger as MessagesAPI
    from dev_sessions.sessions import SessionManager as SessionsAPI

    __all__ = ["MessagesAPI", "SessionsAPI"]
