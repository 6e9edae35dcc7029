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
    from dev_sessions.messaging.postgres import redact  # psycopg's only importer (the test extra has it)

    assert redact("postgresql://me:hunter2@db.example:5432/team?sslmode=require") == (
        "postgresql://me:***@db.example:5432/team?sslmode=require"
    )
    assert redact("postgresql:///team?host=/run/pg&password=hunter2") == (
        "postgresql:///team?host=/run/pg&password=***"
    )
    assert redact("postgresql://me@db/team") == "postgresql://me@db/team"
    assert "hunter2" not in redact("postgresql://me:hunter2@[::1/team")
