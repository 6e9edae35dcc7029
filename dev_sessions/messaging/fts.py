"""``msg search``'s query language on PostgreSQL: SQLite FTS5's, translated to a ``tsquery``.

The SQLite store hands the query to FTS5 as it is; PostgreSQL has its own syntax, so that the same
query finds the same messages on both engines this module turns FTS5's subset that people type into
the text of a ``to_tsquery``: words (ANDed), ``OR``, ``AND``, ``NOT`` (FTS5's binary "a but not b"),
``"a phrase"``, a ``prefix*``, and parentheses; ``NOT`` binds tighter than ``AND``, which binds
tighter than ``OR``, as in FTS5. Anything else (an unbalanced quote, a column filter, ``NEAR``) is a
:class:`UsageError`, as FTS5 refuses it. Pure: no database here. Each word goes out quoted and made
of word characters only, so nothing a user types can change the tsquery's structure; PostgreSQL's
text search configuration then lower-cases it and strips its accents as it did the bodies.
"""

from __future__ import annotations

import re

from dev_sessions.errors import UsageError

_TOKEN = re.compile(r'\s*(?:(?P<phrase>"[^"]*")(?P<pstar>\*)?|(?P<word>\w+)(?P<star>\*)?|(?P<op>[()]))')
_WORDS = re.compile(r"\w+")


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens: list[tuple[str, str]] = []
        position = 0
        text = query.rstrip()
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                raise self.error(f"syntax error near {text[position:].lstrip()[:10]!r}")
            position = match.end()
            if match.group("phrase") is not None:
                words = _WORDS.findall(match.group("phrase")[1:-1])
                if not words:
                    raise self.error("an empty phrase")
                lexemes = [f"'{w}'" for w in words]
                if match.group("pstar"):
                    lexemes[-1] += ":*"
                self.tokens.append(("term", " <-> ".join(lexemes)))
            elif match.group("word") is not None:
                word = match.group("word")
                if word in ("AND", "OR", "NOT") and not match.group("star"):
                    self.tokens.append(("op", word))
                elif word == "NEAR" or text[match.end() : match.end() + 1] == ":":
                    raise self.error(f"{word!r} is not supported here")
                else:
                    self.tokens.append(("term", f"'{word}'" + (":*" if match.group("star") else "")))
            else:
                self.tokens.append(("op", match.group("op")))
        self.at = 0

    def error(self, detail: str) -> UsageError:
        return UsageError(f"search: {self.query!r} is not a search query ({detail})")

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise self.error("it ends too soon")
        self.at += 1
        return token

    def parse(self) -> str:
        if not self.tokens:
            raise self.error("it is empty")
        result = self.either()
        if self.peek() is not None:
            raise self.error(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return result

    def either(self) -> str:
        parts = [self.both()]
        while self.peek() == ("op", "OR"):
            self.take()
            parts.append(self.both())
        return parts[0] if len(parts) == 1 else "(" + " | ".join(parts) + ")"

    def both(self) -> str:
        parts = [self.but_not()]
        while True:
            token = self.peek()
            if token == ("op", "AND"):
                self.take()
            elif token is None or token in (("op", "OR"), ("op", ")")):
                break
            parts.append(self.but_not())
        return parts[0] if len(parts) == 1 else "(" + " & ".join(parts) + ")"

    def but_not(self) -> str:
        result = self.primary()
        while self.peek() == ("op", "NOT"):
            self.take()
            result = f"({result} & !{self.primary()})"
        return result

    def primary(self) -> str:
        kind, value = self.take()
        if kind == "term":
            return f"({value})" if "<->" in value else value
        if value == "(":
            inner = self.either()
            if self.take() != ("op", ")"):
                raise self.error("a parenthesis is not closed")
            return inner
        raise self.error(f"unexpected {value!r}")


def to_tsquery(query: str) -> str:
    """The ``to_tsquery`` text for an FTS5 query (UsageError for one FTS5 would refuse)."""
    return _Parser(query).parse()
