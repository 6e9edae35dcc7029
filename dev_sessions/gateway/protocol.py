"""What goes over the gateway's wire: the calls it serves, and how their values travel.

A call is ``POST /v1/call`` with ``{"api": "sessions" | "messages", "method": ..., "args": {...}}``.
The calls served are the library's ``@call`` methods (``CALLS``, see :mod:`dev_sessions.api`), with
only the arguments of their signatures, so the HTTP API can never reach more of the library than the
command line can. The answer is a stream of JSON lines: ``{"keepalive": true}``
while a long call (``wait``, ``ask``, ``msg wait``) runs, then one ``{"result": ...}`` or
``{"error": {"message", "exit", "kind", "fields"}}`` (``errors.to_wire``).

Values are the library's own: a dataclass travels as ``{"$": "module:Class", **fields}`` (only
dataclasses of this package are made again), a tuple as ``{"$tuple": [...]}``, and both come back as
the same objects, so that the command line prints exactly what it prints locally.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator, Mapping
from pathlib import PurePath

from dev_sessions.api import LIBRARIES, Call, calls, library
from dev_sessions.errors import BadRequest, NoSuchCall, ReportedError


class _Calls(Mapping[str, dict[str, Call]]):
    """The calls of each API, by API name; an API's library is loaded when its calls are first asked
    for (a remote host's ``dev-sessions call`` loads only the one it serves)."""

    def __getitem__(self, api: str) -> dict[str, Call]:
        if api not in LIBRARIES:
            raise KeyError(api)
        return calls(library(api))

    def __iter__(self) -> Iterator[str]:
        return iter(LIBRARIES)

    def __len__(self) -> int:
        return len(LIBRARIES)


CALLS: Mapping[str, dict[str, Call]] = _Calls()

_PACKAGE = "dev_sessions."


def lookup(request: object) -> tuple[str, Call, dict[str, object]]:
    """The API, the call and the arguments a request (``{"api", "method", "args"}``) names, or a
    one-line ``BadRequest``: an unknown call, or an argument the call does not take."""
    if not isinstance(request, dict):
        raise BadRequest("a request is a JSON object")
    api, method, args = request.get("api"), request.get("method"), request.get("args")
    spec = CALLS.get(api, {}).get(method) if isinstance(api, str) and isinstance(method, str) else None
    if spec is None:
        raise NoSuchCall("no such call (see dev_sessions/api.py)")
    if args is None:
        args = {}
    if not isinstance(args, dict) or not set(args) <= spec.args:
        raise BadRequest(f"{api}.{method} takes only: {', '.join(sorted(spec.args)) or 'no arguments'}")
    return str(api), spec, args


def encode(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        cls = type(value)
        return {"$": f"{cls.__module__}:{cls.__qualname__}", **data}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, PurePath):
        return str(value)
    return value


def decode(value: object) -> object:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if "$tuple" in value and len(value) == 1:
            return tuple(decode(v) for v in value["$tuple"])
        if "$" in value:
            cls = _type(str(value["$"]))
            return cls(**{k: decode(v) for k, v in value.items() if k != "$"})
        return {k: decode(v) for k, v in value.items()}
    return value


def _type(name: str) -> type:
    """The dataclass a value on the wire names; imported only when one arrives."""
    module, _, qualname = name.partition(":")
    cls: object = None
    if module.startswith(_PACKAGE) and qualname.isidentifier():
        try:
            cls = getattr(importlib.import_module(module), qualname, None)
        except ImportError:
            cls = None
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ReportedError(
            f"the gateway sent a value this dev-sessions does not know ({name}); "
            "run the same version in the container and on the host"
        )
    return cls
