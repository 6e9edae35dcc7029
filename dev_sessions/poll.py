"""Polling with a deadline, written once: look, then look again every ``interval`` until something is
found or ``timeout`` seconds have passed.

For conditions nothing announces, such as what a tmux pane shows or whether an editor took a spool
file. Where a file-system event or a process exit can wake the waiter, pass a
:meth:`~dev_sessions.watch.Watcher.wait` as ``sleep``: it returns early when something happens, and
the deadline stays the same. This module does no I/O of its own and knows nothing of sessions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 0.05,
    *,
    wait_first: bool = False,
    sleep: Callable[[float], object] = time.sleep,
) -> T | None:
    """The first truthy value ``predicate`` returns, or None once a look at or after the deadline
    finds nothing.

    It looks at once (after one ``interval`` with ``wait_first``, when the caller has just looked
    itself) and after every pause of ``interval``: a look always follows the last pause, so a condition
    that holds by the deadline is never missed, and one that never holds costs ``timeout`` plus at most
    one ``interval``. The deadline starts when this is called. Whatever ``predicate`` raises goes
    through.
    """
    deadline = time.monotonic() + timeout
    if wait_first:
        sleep(interval)
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        sleep(interval)
