"""The decorator of the message store's writes (and of the coordination tables' it mixes in)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar

T = TypeVar("T")


class Retrying(Protocol):
    def retried(self, call: Callable[[], T]) -> T:
        """``call()``, run again whole when the engine says its transaction may be tried again."""
        ...


P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound=Retrying)


def one_write(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """A method whose changes are one :meth:`MessageStore.write` transaction (with reads before and after
    it): the engine may run it again whole when that transaction did nothing and may be tried again (on
    PostgreSQL: a serialization failure, a deadlock, a connection lost before COMMIT)."""

    @functools.wraps(method)
    def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.retried(functools.partial(method, self, *args, **kwargs))

    return run
