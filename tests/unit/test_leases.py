"""Leases, the pure part: path globs, whether two globs overlap, prefixes, TTLs, and what a resource
names (a name, or a glob relative to a worktree's top under its repository's key)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dev_sessions.errors import UsageError
from dev_sessions.messaging.leases import (
    NAME_KIND,
    PATH_KIND,
    ancestors,
    find_repo,
    matches,
    overlaps,
    parse_ttl,
    prefix_of,
    resolve,
)


class Match(NamedTuple):
    test_id: str
    pattern: str
    path: str
    expected: bool


MATCHES = [
    Match("literal", "src/a.py", "src/a.py", True),
    Match("literal other", "src/a.py", "src/b.py", False),
    Match("star in a segment", "src/*.py", "src/a.py", True),
    Match("star stops at a slash", "src/*.py", "src/sub/a.py", False),
    Match("star matches nothing", "src/*.py", "src/.py", True),
    Match("globstar segments", "src/**/*.py", "src/a/b/c.py", True),
    Match("globstar zero segments", "src/**/*.py", "src/c.py", True),
    Match("globstar is whole segments", "src/**/*.py", "srcx/c.py", False),
    Match("trailing globstar", "docs/**", "docs/a/b.md", True),
    Match("trailing globstar not the dir's sibling", "docs/**", "docsx/a.md", False),
    Match("leading globstar", "**/Makefile", "a/b/Makefile", True),
    Match("leading globstar at the top", "**/Makefile", "Makefile", True),
    Match("leading globstar is a whole name", "**/Makefile", "xMakefile", False),
    Match("everything", "**", "a/b/c", True),
    Match("question mark", "a?.txt", "ab.txt", True),
    Match("question mark not a slash", "a?b", "a/b", False),
    Match("class", "f[0-9].c", "f7.c", True),
    Match("class miss", "f[0-9].c", "fx.c", False),
    Match("negated class", "f[!0-9].c", "fx.c", True),
    Match("negated class never a slash", "a[!x]b", "a/b", False),
    Match("unclosed bracket is itself", "a[b", "a[b", True),
    Match("two stars inside a name are one", "a**b", "axxb", True),
    Match("two stars inside a name stop at a slash", "a**b", "ax/b", False),
    Match("regex characters are themselves", "a+(b).c", "a+(b).c", True),
    Match("a dot is a dot", "a.c", "abc", False),
]


@pytest.mark.parametrize("case", MATCHES, ids=[c.test_id for c in MATCHES])
def test_glob_matches(case: Match) -> None:
    assert matches(case.pattern, case.path) is case.expected
    # The automata decide the same (a path is a glob with no special character).
    assert overlaps(case.pattern, case.path, b_literal=True) is case.expected


class Overlap(NamedTuple):
    test_id: str
    a: str
    b: str
    expected: bool


OVERLAPS = [
    Overlap("same", "src/*.py", "src/*.py", True),
    Overlap("different extensions", "src/*.py", "src/*.md", False),
    Overlap("prefix and suffix", "src/a*", "src/*.py", True),
    Overlap("directory under a globstar", "src/**", "src/deep/x/*.c", True),
    Overlap("sibling directories", "src/**", "docs/**", False),
    Overlap("globstar anywhere and a file", "**/*.py", "tools/x.py", True),
    Overlap("globstar anywhere and another kind", "**/*.py", "tools/x.md", False),
    Overlap("star does not cross a slash", "src/*", "src/a/b.py", False),
    Overlap("star against globstar segments", "a/*/c", "a/**/c", True),
    Overlap("classes that share a character", "f[a-c]", "f[c-e]", True),
    Overlap("classes that share none", "f[a-c]", "f[d-f]", False),
    Overlap("a class and its negation", "f[a-c]", "f[!a-c]", False),
    Overlap("two negations", "f[!a]", "f[!b]", True),
    Overlap("question marks and a length", "??", "abc", False),
    Overlap("everything and anything", "**", "x/y", True),
]


@pytest.mark.parametrize("case", OVERLAPS, ids=[c.test_id for c in OVERLAPS])
def test_globs_overlap_exactly(case: Overlap) -> None:
    assert overlaps(case.a, case.b) is case.expected
    assert overlaps(case.b, case.a) is case.expected


SEGMENT = st.sampled_from(["a", "b", "ab", "*", "?", "**", "[ab]", "[!a]", "a*", "*b", ".x"])
GLOB = st.lists(SEGMENT, min_size=1, max_size=4).map("/".join)
PATH = st.lists(st.sampled_from(["a", "b", "ab", "ba", "x", ".x", "aab"]), min_size=1, max_size=4).map(
    "/".join
)


@settings(max_examples=400, deadline=None)
@given(GLOB, PATH)
def test_the_automata_and_the_regular_expression_agree(pattern: str, path: str) -> None:
    assert overlaps(pattern, path, b_literal=True) == matches(pattern, path)


@settings(max_examples=300, deadline=None)
@given(GLOB, GLOB, PATH)
def test_a_path_both_globs_name_means_they_overlap(a: str, b: str, path: str) -> None:
    if matches(a, path) and matches(b, path):
        assert overlaps(a, b)


@settings(max_examples=300, deadline=None)
@given(GLOB, GLOB)
def test_globs_overlap_only_where_their_prefixes_allow(a: str, b: str) -> None:
    """What the store's index relies on: one prefix starts the other, or they cannot overlap."""
    pa, pb = prefix_of(a), prefix_of(b)
    if overlaps(a, b):
        assert pa.startswith(pb) or pb.startswith(pa)


def test_prefixes_and_their_ancestors() -> None:
    assert prefix_of("src/app/*.py") == "src/app/"
    assert prefix_of("src/a.py") == "src/"
    assert prefix_of("src/a.py", literal=True) == "src/"
    assert prefix_of("**/x") == ""
    assert prefix_of("a*/b/c") == ""
    assert prefix_of("top.txt") == ""
    assert prefix_of("we[ird/x*", literal=True) == "we[ird/"
    assert ancestors("a/b/") == ["", "a/", "a/b/"]
    assert ancestors("") == [""]


@pytest.mark.parametrize(
    ("text", "seconds"), [("30m", 1800.0), ("2h", 7200.0), ("90", 90.0), ("1h30m", 5400.0), ("7d", 604800.0)]
)
def test_ttls(text: str, seconds: float) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["0", "0s", "8d", "-5", "soon", "", "1y"])
def test_bad_ttls_are_one_line_usage_errors(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_ttl(text)
    assert "\n" not in str(caught.value)


def _git_dir(top: Path) -> Path:
    (top / ".git").mkdir(parents=True)
    return top


def test_a_repository_and_its_linked_worktree_share_one_key(tmp_path: Path) -> None:
    main = _git_dir(tmp_path / "main")
    (main / "src").mkdir()
    linked = tmp_path / "linked"
    (main / ".git" / "worktrees" / "linked").mkdir(parents=True)
    (main / ".git" / "worktrees" / "linked" / "commondir").write_text("../..\n")
    linked.mkdir()
    (linked / ".git").write_text(f"gitdir: {main / '.git' / 'worktrees' / 'linked'}\n")
    (linked / "src").mkdir()
    assert find_repo(main / "src") == (main.resolve(), main.resolve())
    assert find_repo(linked / "src") == (linked.resolve(), main.resolve())
    assert find_repo(tmp_path) is None
    here, there = resolve("src/*.py", str(main)), resolve("*.py", str(linked / "src"))
    assert (here.repo, here.pattern) == (there.repo, there.pattern) == (str(main.resolve()), "src/*.py")


def test_what_a_resource_names(tmp_path: Path) -> None:
    repo = _git_dir(tmp_path / "repo")
    (repo / "docs").mkdir()
    (repo / "README.md").write_text("x")
    inside = str(repo / "docs")
    assert resolve("deploy", inside).kind == NAME_KIND
    assert (resolve("deploy", inside).repo, resolve("deploy", inside).pattern) == ("", "deploy")
    (repo / "docs" / "deploy").write_text("a file of that name")
    assert resolve("deploy", inside).kind == PATH_KIND
    assert (resolve("name:deploy", inside).kind, resolve("name:deploy", inside).pattern) == (
        NAME_KIND,
        "deploy",
    )
    named = {
        "a path": ("../README.md", "README.md"),
        "a glob": ("*.md", "docs/*.md"),
        "a directory": ("../docs", "docs/**"),
        "a trailing slash": ("api/", "docs/api/**"),
        "the top": ("..", "**"),
        "an absolute path": (str(repo / "README.md"), "README.md"),
        "a file to be": ("./new.py", "docs/new.py"),
        "a path by its prefix": ("path:new.py", "docs/new.py"),
    }
    for what, (text, pattern) in named.items():
        target = resolve(text, inside)
        assert (target.kind, target.pattern, target.repo) == (PATH_KIND, pattern, str(repo.resolve())), what


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("../../elsewhere.txt", "outside the repository"),
        ("", "needs a resource"),
        ("a\nb", "control characters"),
        ("bad name!", "not a valid resource name"),
    ],
)
def test_resources_that_name_nothing_are_refused(tmp_path: Path, text: str, needle: str) -> None:
    repo = _git_dir(tmp_path / "repo")
    with pytest.raises(UsageError, match=re.escape(needle)):
        resolve(text, str(repo))


def test_a_path_outside_any_repository_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not inside a git repository"):
        resolve("src/a.py", str(tmp_path))
