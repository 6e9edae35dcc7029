"""dev-sessions: spawn, instruct, wait on and read other coding-agent sessions.

The package is a library first (`dev_sessions.sessions.SessionManager`); the command line in
`dev_sessions.cli` only parses, calls it and prints. Nothing heavy is imported here, so that quick
commands stay quick.
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
