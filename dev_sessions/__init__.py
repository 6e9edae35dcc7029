"""dev-sessions: spawn, instruct, wait on and read other coding-agent sessions.

The package is a library first (`dev_sessions.sessions.SessionManager`); the command line in
`dev_sessions.cli` only parses, calls it and prints. Nothing heavy is imported here, so that quick
commands stay quick.
"""

from __future__ import annotations

__version__ = "0.1.0"

_quiet = False


def quiet_logs() -> None:
    """Give the library's loggers the NullHandler Python asks of a library (no "last resort" lines on
    stderr when the application configured no logging). Called by the modules every logging module
    imports (``errors``, ``watch``), not here: importing ``logging`` costs ~20 ms that ``--version``
    and the warm command server's client do not need."""
    global _quiet
    if not _quiet:
        import logging

        logging.getLogger(__name__).addHandler(logging.NullHandler())
        _quiet = True
