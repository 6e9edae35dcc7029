"""Text on its way into a terminal pane, made unable to do anything but be text.

A pasted text is wrapped in bracketed-paste markers; an ESC inside it could close the bracket early
and type keys of its own (``\\x1b[201~`` then ``/exit`` and Enter). Control characters other than
newline, carriage return and tab are therefore shown as their Unicode control pictures (``␛`` for ESC)
instead of being sent: visible, harmless, and nothing is silently dropped.
"""

from __future__ import annotations

_KEEP = {"\n", "\r", "\t"}
_TABLE = {code: chr(0x2400 + code) for code in range(0x20) if chr(code) not in _KEEP}
_TABLE[0x7F] = "\u2421"  # ␡
_TABLE.update({code: "\ufffd" for code in range(0x80, 0xA0)})


def neutralise(text: str) -> str:
    return text.translate(_TABLE)
