"""Durations and ages as people type them: ``90s``, ``30m``, ``2h``, ``1d``, ``1h30m``."""

from __future__ import annotations

import re

from dev_sessions.errors import UsageError

_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in ``text``; a bare number is seconds. Raises ``UsageError`` for anything else."""
    raw = text.strip().lower()
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        if value < 0:
            raise UsageError(f"{text!r}: a duration cannot be negative")
        return value
    parts = _PART.findall(raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        raise UsageError(f"{text!r} is not a duration (examples: 90s, 30m, 2h, 1d, 1h30m)")
    return sum(float(n) * _SECONDS[u] for n, u in parts)


def format_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
