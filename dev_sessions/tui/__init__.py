"""``dev-sessions tui``: the sessions, their conversations and the messages in the terminal, live.

Built with Textual, which only this package imports (and only the ``tui`` command imports this
package): see :mod:`dev_sessions.tui.app`.
"""
