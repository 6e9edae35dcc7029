"""Checks on what arrives at the gateway, as pure functions: the Host header, the JSON body, argument types.

Everything here answers with :class:`BadRequest` (one line, HTTP 400) or lets the value through; no
input may reach the library in a shape that would make it fail with anything but its own errors
(a ``TypeError`` on a wrong type, ``ValueError: embedded null byte`` from the OS, a
``UnicodeEncodeError`` on a lone surrogate, a ``RecursionError`` on deep nesting).
"""

from __future__ import annotations

import functools
import inspect
import ipaddress
import json
import math
import re
import types
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from dev_sessions.errors import BadRequest

MAX_DEPTH = 16
MAX_INT = 2**53
_HOST = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]{2,45})\]|(?P<name>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})))(?::(?P<port>[0-9]{1,5}))?"
)
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


def host_name(header: str | None) -> str:
    """The host name of a ``Host`` header, lower-cased (``[::1]:6767`` -> ``::1``).

    Only the forms RFC 9110 allows: a name or IPv4 address, or an IPv6 address in brackets, and an
    optional numeric port. ``[::1]evil`` or ``127.0.0.1:abc`` are refused, not trimmed into a match.
    """
    if header is None or header == "":
        raise BadRequest("the request has no Host header")
    match = _HOST.fullmatch(header)
    if match is None:
        raise BadRequest("the Host header is malformed")
    port = match.group("port")
    if port is not None and int(port) > 65535:
        raise BadRequest("the Host header's port is out of range")
    if match.group("v6") is not None:
        try:
            return str(ipaddress.IPv6Address(match.group("v6")))
        except ValueError:
            raise BadRequest("the Host header's IPv6 address is malformed") from None
    return match.group("name").lower().rstrip(".")


def host_refusal(values: Sequence[str], allowed: Collection[str]) -> tuple[int, str] | None:
    """Why a request's ``Host`` header(s) are refused (status, one line), or None.

    ``allowed``: the host names (normalised as :func:`normal_host` does) this server answers to; any
    other (DNS rebinding) is a 403. Never ask aiohttp for ``request.host``: without a Host header it
    falls back to a blocking DNS lookup.
    """
    if len(values) > 1:
        return 400, "the request has more than one Host header"
    host = host_name(values[0] if values else None)
    if host not in allowed:
        return 403, f"Host {host!r} is not one of this server's names"
    return None


def origin_refusal(origin: str | None, fetch_site: str | None, own: Collection[str] = ()) -> str | None:
    """Why a request is refused as cross-origin, or None. ``own``: the origins of the server's own
    pages (``http://127.0.0.1:7433``), which browsers name on every POST; the gateway has none, so any
    request that names an origin (a page in a browser) is refused. ``Sec-Fetch-Site`` must say the
    request came from no page (typed, a program) or from one of this server's own."""
    if origin and origin not in own:
        return "cross-origin requests are refused"
    if (fetch_site or "none") not in ("none", "same-origin"):
        return "cross-origin requests are refused"
    return None


def normal_host(name: str) -> str:
    """A host name as ``host_name`` gives it (an IP address in its canonical form, a name lower-cased)."""
    try:
        return str(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        return name.lower().rstrip(".")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_body(body: bytes) -> dict[str, Any]:
    """The request's JSON object: strict JSON, at most MAX_DEPTH deep, no NUL, no lone surrogate."""
    try:
        data = json.loads(body, parse_constant=_no_constants)
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not JSON (UTF-8)") from None
    if not isinstance(data, dict):
        raise BadRequest("the body is not a JSON object")
    _check_value(data, 0, "body")
    return data


def _check_value(value: Any, depth: int, where: str) -> None:
    if depth > MAX_DEPTH:
        raise BadRequest(f"{where}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        if _BAD_CHARS.search(value):
            raise BadRequest(f"{where}: a NUL character or a lone surrogate in a string")
    elif isinstance(value, bool):
        pass
    elif isinstance(value, int):
        if abs(value) > MAX_INT:
            raise BadRequest(f"{where}: a number beyond ±2^53")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise BadRequest(f"{where}: a number beyond what a double holds")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_value(key, depth + 1, where)
            _check_value(item, depth + 1, where)
    elif isinstance(value, list):
        for item in value:
            _check_value(item, depth + 1, where)


def _plain(function: Callable[..., Any]) -> Callable[..., Any]:
    """The function behind a bound method: what the caches are keyed on (a method is bound anew for
    every request's fresh library object)."""
    return getattr(function, "__func__", function)


@functools.cache
def _hints_of(function: Callable[..., Any]) -> Mapping[str, Any]:
    """The parameters' types (not the return type: its classes are loaded only by the call itself)."""
    from dev_sessions import api

    parameters = types.FunctionType(function.__code__, function.__globals__, closure=function.__closure__)
    parameters.__annotations__ = {k: v for k, v in function.__annotations__.items() if k != "return"}
    # The JSON types of dev_sessions.api refer to themselves by name, wherever they are used.
    return typing.get_type_hints(parameters, localns={"JsonValue": api.JsonValue})


def hints(function: Callable[..., Any]) -> Mapping[str, Any]:
    """The types of a library method's parameters (what a value must be to be passed)."""
    return _hints_of(_plain(function))


def required(function: Callable[..., Any]) -> frozenset[str]:
    """The parameters a call cannot do without."""
    return _required_of(_plain(function))


@functools.cache
def _required_of(function: Callable[..., Any]) -> frozenset[str]:
    parameters = inspect.signature(function).parameters.values()
    return frozenset(
        p.name
        for p in parameters
        if p.name != "self"
        and p.default is inspect.Parameter.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    )


def check_args(function: Callable[..., Any], args: Mapping[str, Any], call: str) -> None:
    """Every argument of the types the library method declares, and none it requires missing."""
    types_ = hints(function)
    missing = sorted(required(function) - set(args))
    if missing:
        raise BadRequest(f"{call}: missing {', '.join(missing)}")
    for name, value in args.items():
        hint = types_.get(name, Any)
        if not _fits(value, hint):
            raise BadRequest(f"{call}: {name} must be {_describe(hint)}")


def _fits(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    if isinstance(hint, typing.ForwardRef):
        # JsonValue within itself: any JSON (parse_body has checked the body is JSON, and not too deep).
        return hint.__forward_arg__ == "JsonValue"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arm) for arm in typing.get_args(hint))
    if hint is None or hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, Sequence, tuple) or hint in (list, Sequence):
        if not isinstance(value, list):
            return False
        arms = typing.get_args(hint)
        return not arms or all(_fits(item, arms[0]) for item in value)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, dict):
            return False
        arms = typing.get_args(hint)
        return not arms or all(_fits(k, arms[0]) and _fits(v, arms[1]) for k, v in value.items())
    return False  # a type the wire cannot carry: refuse rather than guess


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arm) for arm in typing.get_args(hint))
    if hint is None or hint is type(None):
        return "null"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(hint))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint in names:
        return names[hint]
    if origin in (list, Sequence, tuple):
        arms = typing.get_args(hint)
        return f"a list of {_describe(arms[0])}" if arms else "a list"
    if origin in (dict, Mapping):
        return "an object"
    return str(hint)
