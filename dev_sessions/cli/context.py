"""Which library a command talks to: the local one, or the host's through the gateway (sandbox mode).

Deciding costs one environment lookup: the gateway client (and http.client) is imported only in a
sandbox, the local library only outside one.
"""

from __future__ import annotations

import os
from typing import Any


def sandboxed() -> bool:
    return os.environ.get("DEV_SESSIONS_SANDBOX", "") not in ("", "0", "false")


def sessions_api() -> Any:
    """``SessionManager``, or in a sandbox (``DEV_SESSIONS_SANDBOX=1``) its remote twin."""
    if sandboxed():
        from dev_sessions.gateway.client import RemoteSessionManager

        return RemoteSessionManager()
    from dev_sessions.sessions import SessionManager

    return SessionManager()


def messages_api() -> Any:
    """``Messenger``, or in a sandbox its remote twin."""
    if sandboxed():
        from dev_sessions.gateway.client import RemoteMessenger

        return RemoteMessenger()
    from dev_sessions.messaging.messenger import Messenger

    return Messenger()
