"""What a selftest reports: which agent binary ran, and how each capability check went.

Plain data: :mod:`dev_sessions.selftest.runner` produces it, the ``selftest`` command prints it (as
lines, or ``to_json``). No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from dev_sessions.compat import TESTED

Result = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True)
class Check:
    """One capability and how it went: ``ok``, ``failed`` (``detail`` says why) or ``skipped``."""

    name: str
    result: Result
    detail: str = ""


@dataclass(frozen=True)
class Tested:
    """Which agent binary a selftest runs (``binary`` None: not found) and what ``--version`` says."""

    agent: str
    binary: str | None
    version: str | None
    placement: str | None = None

    @property
    def tested_range(self) -> str:
        low, high = TESTED[self.agent]
        return f"{low} to {high}"


@dataclass(frozen=True)
class Report:
    tested: Tested
    checks: tuple[Check, ...]
    seconds: float
    sandbox: str | None = None
    tmux_socket: str | None = None

    @property
    def ok(self) -> bool:
        return all(c.result != "failed" for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        tested = self.tested
        return {
            "cli": tested.agent,
            "binary": tested.binary,
            "version": tested.version,
            "placement": tested.placement,
            "testedRange": list(TESTED[tested.agent]),
            "ok": self.ok,
            "seconds": round(self.seconds, 2),
            "sandbox": self.sandbox,
            "tmuxSocket": self.tmux_socket,
            "checks": [{"check": c.name, "result": c.result, "detail": c.detail} for c in self.checks],
        }


Listener = Callable[[Tested | Check], None]
