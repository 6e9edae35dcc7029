"""What a reaction may be: one emoji (``👍``, ``👍🏽``, ``🇫🇷``, ``1️⃣``, ``👨‍👩‍👧``) or a ``:short_name:``.

Pure: no I/O. ``check_emoji`` returns the reaction as given or raises a one-line ``UsageError``; it
refuses text (``ok``), whitespace, control characters and anything long, so that a reaction is a
reaction and never a message of its own.
"""

from __future__ import annotations

import re
import unicodedata

from dev_sessions.errors import UsageError

MAX_CODE_POINTS = 16
"""The longest emoji sequences (a family with skin tones, a subdivision flag) stay under this."""
_SHORT_NAME = re.compile(r":[a-z0-9_+-]{1,32}:")
_JOINERS = {0x200D, 0xFE0E, 0xFE0F, 0x20E3}  # zero-width joiner, text/emoji presentation, keycap
_KEYCAP_BASES = set("0123456789#*")


def _is_pictograph(char: str) -> bool:
    code = ord(char)
    if 0x1F1E6 <= code <= 0x1F1FF:  # regional indicators (flags)
        return True
    return unicodedata.category(char) == "So"


def _is_part(char: str) -> bool:
    code = ord(char)
    if code in _JOINERS or 0x1F3FB <= code <= 0x1F3FF:  # skin tones
        return True
    return 0xE0020 <= code <= 0xE007F  # tags (subdivision flags)


def check_emoji(text: str) -> str:
    """``text`` if it is one emoji or a ``:short_name:``, else a one-line ``UsageError``."""
    if not text or not text.strip():
        raise UsageError("the reaction is empty: give an emoji like 👍, or a :short_name:")
    if _SHORT_NAME.fullmatch(text):
        return text
    what = repr(text) if len(text) <= 40 else repr(text[:40] + "…")
    refused = UsageError(f"{what} is not an emoji: give one emoji like 👍, or a :short_name: like :+1:")
    if len(text) > MAX_CODE_POINTS:
        raise refused
    keycap = "\u20e3" in text
    pictographs = 0
    for char in text:
        if _is_pictograph(char):
            pictographs += 1
        elif not (_is_part(char) or (keycap and char in _KEYCAP_BASES)):
            raise refused
    if pictographs == 0 and not keycap:
        raise refused
    return text
