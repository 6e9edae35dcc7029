"""Which library a command talks to: the local one, or the host's through the gateway (sandbox mode).

Both are the same typed surface (:mod:`dev_sessions.api`), so every call the command line makes is
type-checked against it. Deciding costs reading the environment once (``Settings``): the gateway
client is imported only in a sandbox, the local library only outside one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dev_sessions.config import Settings

if TYPE_CHECKING:
    from dev_sessions.api import MessagesAPI, SessionsAPI


def settings() -> Settings:
    return Settings.from_env()


def sessions_api() -> SessionsAPI:
    """``SessionManager``, or in a sandbox (``DEV_SESSIONS_SANDBOX=1``) the same calls on the host."""
    found = settings()
    if found.sandbox:
        from dev_sessions.gateway.client import remote_sessions

        return remote_sessions(found)
    from dev_sessions.sessions import SessionManager

    return SessionManager(found)


def messages_api() -> MessagesAPI:
    """``Messenger``, or in a sandbox the same calls on the host."""
    found = settings()
    if found.sandbox:
        from dev_sessions.gateway.client import remote_messages

        return remote_messages(found)
    from dev_sessions.messaging.messenger import Messenger

    return Messenger(found)
