"""What the PostgreSQL store does without a server: FTS5 queries as tsqueries, URLs without passwords."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from dev_sessions.errors import UsageError
from dev_sessions.messaging.fts import to_tsquery


class Query(NamedTuple):
    test_id: str
    fts5: str
    tsquery: str


QUERIES = [
    Query("word", "deploy", "'deploy'"),
    Query("words-are-anded", "deploy failed", "('deploy' & 'failed')"),
    Query("prefix-or", "deploy* OR lunch", "('deploy':* | 'lunch')"),
    Query("explicit-and", "a AND b", "('a' & 'b')"),
    Query("not-is-but-not", "a NOT b", "('a' & !'b')"),
    Query("precedence", "a b OR c NOT d", "(('a' & 'b') | ('c' & !'d'))"),
    Query("phrase", '"deploy failed"', "('deploy' <-> 'failed')"),
    Query("phrase-prefix", '"deploy fail"*', "('deploy' <-> 'fail':*)"),
    Query("parentheses", "(a OR b) c", "(('a' | 'b') & 'c')"),
    Query("accents-kept-for-the-server", "Déploiement", "'Déploiement'"),
    Query("quotes-cannot-escape", '"it\'s"', "('it' <-> 's')"),
]


@pytest.mark.parametrize("case", QUERIES, ids=lambda c: c.test_id)
def test_fts5_queries_become_tsqueries(case: Query) -> None:
    assert to_tsquery(case.fts5) == case.tsquery


@pytest.mark.parametrize(
    "query", ['"unbalanced', "a OR", "(a b", "a)", "", "body:x", "a NEAR b", "a - b", "'; DROP TABLE x"]
)
def test_what_fts5_refuses_is_refused(query: str) -> None:
    with pytest.raises(UsageError, match="is not a search query"):
        to_tsquery(query)


def test_a_url_is_shown_without_its_password() -> None:
    from dev_sessions.messaging.postgres import redact

    assert redact("postgresql://me:hunter2@db.example:5432/team?sslmode=require") == (
        "postgresql://me:***@db.example:5432/team?sslmode=require"
    )
    assert redact("postgresql:///team?host=/run/pg&password=hunter2") == (
        "postgresql:///team?host=/run/pg&password=***"
    )
    assert redact("postgresql://me@db/team") == "postgresql://me@db/team"
    assert "hunter2" not in redact("postgresql://me:hunter2@[::1/team")


# -- libpq through ctypes: the parts that need no server -------------------------------------------------


class Param(NamedTuple):
    test_id: str
    value: object
    oid: int
    text: bytes | None


PARAMS = [
    Param("none-is-null", None, 0, None),
    Param("text-lets-the-server-infer", "héllo 'x'", 0, "héllo 'x'".encode()),
    Param("bool-before-int", True, 16, b"t"),
    Param("false", False, 16, b"f"),
    Param("int-is-bigint", -(2**40), 20, b"-1099511627776"),
    Param("float", 0.5, 701, b"0.5"),
    Param("array", ["a", None, 'q"b\\'], 0, b'{"a",NULL,"q\\"b\\\\"}'),
    Param("empty-array", [], 0, b"{}"),
]


@pytest.mark.parametrize("case", PARAMS, ids=lambda c: c.test_id)
def test_parameters_go_as_text(case: Param) -> None:
    from dev_sessions.messaging.libpq import text_of, type_of

    assert (type_of(case.value), text_of(case.value)) == (case.oid, case.text)


def test_what_postgresql_cannot_take_is_refused_before_sending() -> None:
    from dev_sessions.messaging.libpq import text_of

    with pytest.raises(ValueError, match="NUL"):
        text_of("a\0b")  # libpq would cut it there
    with pytest.raises(TypeError, match="dict"):
        text_of({"a": 1})


class Value(NamedTuple):
    test_id: str
    oid: int
    text: bytes
    value: object


VALUES = [
    Value("int2", 21, b"-3", -3),
    Value("int4", 23, b"7", 7),
    Value("int8", 20, b"9007199254740993", 9007199254740993),
    Value("bool-true", 16, b"t", True),
    Value("bool-false", 16, b"f", False),
    Value("float8", 701, b"1.5", 1.5),
    Value("numeric-whole", 1700, b"12", 12),
    Value("numeric-fraction", 1700, b"1.25", 1.25),
    Value("void", 2278, b"", None),
    Value("text", 25, "ünïcode".encode(), "ünïcode"),
    Value("varchar", 1043, b"v", "v"),
    Value("name", 19, b"dstest", "dstest"),
    Value("unknown-type-is-text", 3802, b'{"a": 1}', '{"a": 1}'),
]


@pytest.mark.parametrize("case", VALUES, ids=lambda c: c.test_id)
def test_values_come_back_by_their_column_type(case: Value) -> None:
    from dev_sessions.messaging.libpq import converter

    assert converter(case.oid)(case.text) == case.value


@pytest.mark.parametrize(
    ("sql", "numbered"),
    [
        ("SELECT ?, ? FROM t WHERE a = ?", "SELECT $1, $2 FROM t WHERE a = $3"),
        ("SELECT '?', \"?\", ? WHERE x = 'it''s ?'", "SELECT '?', \"?\", $1 WHERE x = 'it''s ?'"),
        ("SELECT 1", "SELECT 1"),
    ],
)
def test_placeholders_are_numbered_outside_quotes(sql: str, numbered: str) -> None:
    from dev_sessions.messaging.libpq import numbered as number

    assert number(sql) == numbered


class Failure(NamedTuple):
    test_id: str
    sqlstate: str | None
    connected: bool
    sent: bool
    kind: str
    lost: bool | None


FAILURES = [
    Failure("deadlock-rolled-back", "40P01", True, True, "RolledBack", None),
    Failure("serialization-rolled-back", "40001", True, True, "RolledBack", None),
    Failure("undefined-table", "42P01", True, True, "UndefinedTable", None),
    Failure("foreign-key", "23503", True, True, "ForeignKeyViolation", None),
    Failure("syntax-is-ours", "42601", True, True, "ServerError", None),
    Failure("cancelled-unavailable", "57014", True, True, "Unavailable", False),
    Failure("too-many-connections", "53300", True, False, "Unavailable", False),
    Failure("terminated-is-lost", "57P01", False, True, "Unavailable", True),
    Failure("lost-whatever-it-said", "40P01", False, True, "Unavailable", True),
    Failure("libpq-without-sqlstate", None, False, False, "Unavailable", True),
]


@pytest.mark.parametrize("case", FAILURES, ids=lambda c: c.test_id)
def test_failures_are_told_apart_by_sqlstate_and_connection(case: Failure) -> None:
    from dev_sessions.messaging import libpq

    error = libpq.error_for("ERROR:  it\n  failed\n", case.sqlstate, connected=case.connected, sent=case.sent)
    assert type(error).__name__ == case.kind
    assert str(error) == "ERROR: it failed" and error.sqlstate == case.sqlstate
    if case.lost is not None:
        assert isinstance(error, libpq.Unavailable) and (error.lost, error.sent) == (case.lost, case.sent)


def test_rows_read_like_a_cursor() -> None:
    from dev_sessions.messaging.libpq import Rows

    rows = Rows([(1, "a"), (2, "b"), (3, "c")], 3)
    assert rows.fetchone() == (1, "a")
    assert list(rows) == [(2, "b"), (3, "c")]
    assert rows.fetchone() is None and rows.fetchall() == [] and rows.rowcount == 3


def test_every_libpq_function_called_is_declared() -> None:
    """A function without its restype returns a C int: a pointer cut to 32 bits, then a crash."""
    import re
    from pathlib import Path

    from dev_sessions.messaging import libpq

    called = set(re.findall(r"\b(PQ\w+)\(", Path(libpq.__file__).read_text()))
    assert called and called <= set(libpq._SIGNATURES)


def test_a_busy_write_is_tried_again_a_few_times_then_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from dev_sessions.messaging import libpq, postgres

    pauses: list[int] = []
    monkeypatch.setattr(postgres, "_pause", pauses.append)
    url = "postgresql://me:hunter2@db/team"
    calls: list[int] = []

    def busy(until: int) -> str:
        calls.append(1)
        if len(calls) < until:
            raise postgres.TryAgain(url, libpq.RolledBack("deadlock detected (hunter2)", "40P01"))
        return "done"

    assert postgres.retrying(lambda: busy(3)) == "done"
    assert (len(calls), pauses) == (3, [0, 1])
    calls.clear()
    with pytest.raises(postgres.MessagesUnavailable) as raised:
        postgres.retrying(lambda: busy(100))
    assert len(calls) == postgres.ATTEMPTS
    line = str(raised.value)
    assert "deadlock detected" in line and f"still so after {postgres.ATTEMPTS} tries" in line
    assert "hunter2" not in line and "me:***@db" in line
