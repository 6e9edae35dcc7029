"""Which versions of the agent CLIs dev-sessions is tested with (the two pinned sets of tests/agents/).

``doctor`` reports where an installed agent falls; a unit test keeps these in step with the pins.
Outside the range is not refused: it is what ``dev-sessions selftest`` is for.
"""

from __future__ import annotations

import re

TESTED: dict[str, tuple[str, str]] = {
    "claude": ("2.1.197", "2.1.332"),
    "codex": ("0.169.0", "0.171.0"),
}
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def version_of(text: str) -> tuple[int, int, int] | None:
    """The first x.y.z in a ``--version`` answer (``2.1.332 (Claude Code)``, ``codex-cli 0.171.0``)."""
    match = _VERSION.search(text)
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def placement(agent: str, text: str) -> str | None:
    """``tested``, ``older`` or ``newer`` than the tested range; None when no version can be read."""
    found = version_of(text)
    low, high = (version_of(v) for v in TESTED[agent])
    if found is None or low is None or high is None:
        return None
    if found < low:
        return "older"
    if found > high:
        return "newer"
    return "tested"
