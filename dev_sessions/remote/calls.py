"""The API's calls made on another dev-sessions, derived from the library's description.

``Remote`` is ``SessionsAPI`` or ``MessagesAPI`` (the library's ``@call`` methods, see
:mod:`dev_sessions.api`) over a transport: the gateway over HTTP (sandbox mode,
:mod:`dev_sessions.gateway.client`) or ssh to a remote host (:mod:`dev_sessions.remote.host`). No
method is written here. A call's arguments are bound to the library's signature; who acts
(``identity``) is the caller's own name when it has one, else left to the other side; a ``paths``
argument goes through the transport's translation (a container path becomes the host's; over ssh a
path is the remote's own); and only what differs from the defaults is sent, so that a newer client
still makes the calls an older server knows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from dev_sessions.api import Call, calls, check_name, library
from dev_sessions.config import Settings


class Transport(Protocol):
    def call(self, api: str, method: str, args: dict[str, object], *, long: bool = False) -> object:
        """Make one call on the other side and return its decoded value (or raise its error)."""
        ...


class Remote:
    def __init__(
        self,
        api: str,
        settings: Settings,
        transport: Transport,
        translate: Callable[[str | None], str | None] | None = None,
    ) -> None:
        self.api = api
        self.calls = calls(library(api))
        self.settings = settings
        self.transport = transport
        self.translate = translate

    def __getattr__(self, name: str) -> Any:
        spec = self.calls.get(name)
        if spec is None:
            raise AttributeError(f"{self.api} has no call {name!r}")

        def invoke(*args: object, **kwargs: object) -> object:
            sent = self.arguments(spec, args, kwargs)
            if spec.stream:
                stream = getattr(self.transport, "stream", None)
                if stream is None:
                    from dev_sessions.errors import UsageError

                    raise UsageError(f"{self.api}.{name} streams, and this link does not carry streams yet")
                return stream(self.api, name, sent)
            return self.transport.call(self.api, name, sent, long=spec.long)

        invoke.__name__ = name
        return invoke

    def arguments(self, spec: Call, args: tuple[object, ...], kwargs: dict[str, object]) -> dict[str, object]:
        named = spec.bind(args, kwargs)
        defaults = dict(spec.defaults)
        sent = {k: _json(v) for k, v in named.items() if k not in defaults or v != defaults[k]}
        if spec.identity is not None:
            who = named.get(spec.identity) or self.settings.agent
            if who is not None:
                sent[spec.identity] = check_name(str(who), "agent name")
        if self.translate is not None:
            for name in spec.paths:
                given = named.get(name)
                sent[name] = self.translate(None if given is None else str(given))
        return sent


def _json(value: object) -> object:
    return list(value) if isinstance(value, (tuple, list)) else value
