"""Which library a command talks to: the local one, or the host's through the gateway (sandbox mode)."""

from __future__ import annotations

from typing import Any


def sessions_api() -> Any:
    """``SessionManager``, or in a sandbox (``DEV_SESSIONS_SANDBOX=1``) its remote twin."""
    from dev_sessions.gateway.client import RemoteSessionManager, sandboxed

    if sandboxed():
        return RemoteSessionManager()
    from dev_sessions.sessions import SessionManager

    return SessionManager()


def messages_api() -> Any:
    """``Messenger``, or in a sandbox its remote twin."""
    from dev_sessions.gateway.client import RemoteMessenger, sandboxed

    if sandboxed():
        return RemoteMessenger()
    from dev_sessions.messaging.messenger import Messenger

    return Messenger()
