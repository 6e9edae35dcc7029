"""Leases, the pure part: what a resource names, path globs, whether two globs overlap, and TTLs.

A lease is advisory: an agent says it works on a resource for a while, and the others look before
they touch it (``lease acquire``, ``lease check``, the git guard). A resource is either a name (any
word without ``/`` or a glob character that is not a file: ``deploy``, ``db-migrations``) or a path glob
inside a git repository (``src/**/*.py``, ``README.md``, a directory ``docs`` meaning ``docs/**``). A
file that does not exist yet is ``./new.py`` (or ``path:new.py``); ``name:README`` is a name even where
such a file exists.

A path is kept relative to its worktree's top, under its repository's key: the directory that holds
the repository's common ``.git`` (found by reading ``.git`` files, no git process), so that every
worktree of one repository shares its leases.

Globs (:func:`regex`, :func:`overlaps`): ``*`` is any characters but ``/``, ``?`` one character but
``/``, ``[a-z]`` / ``[!a-z]`` one of (or none of) a set, never ``/``; ``**`` as a whole segment is
any number of segments (``a/**/b`` is ``a/b``, ``a/x/b``, ...; ``a/**`` everything under ``a``; ``**/x``
an ``x`` anywhere). Whether two globs can name one path at all is decided exactly, on their automata
(:func:`overlaps`); a path against a glob is a regular expression match (:func:`matches`).

No I/O here but reading ``.git`` files (:func:`find_repo`); no SQL (the store's), no time of day.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from dev_sessions.durations import parse_duration
from dev_sessions.errors import UsageError

DEFAULT_TTL = "30m"
MAX_TTL_S = 7 * 86400
GLOB_CHARS = frozenset("*?[")
NAME_KIND = "name"
PATH_KIND = "path"
_MAX_CHAR = 0x10FFFF
_SLASH = ord("/")


# -- what a resource names --------------------------------------------------------------------------------


class Target(NamedTuple):
    """A resource as the store keeps it: a name (``repo`` empty), or a glob relative to a worktree's
    top in the repository ``repo``. (A named tuple: never sent anywhere, and cheaper to define.)"""

    kind: str
    repo: str
    pattern: str
    top: str = ""
    """The worktree's top the pattern is relative to (for showing it; not part of the key)."""

    @property
    def prefix(self) -> str:
        return prefix_of(self.pattern) if self.kind == PATH_KIND else self.pattern

    def label(self) -> str:
        return self.pattern


def parse_ttl(text: str) -> float:
    """Seconds of a ``--ttl`` (``30m``, ``2h``, ``90s``), more than 0 and at most a week."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise UsageError(f"--ttl {text!r}: a lease lasts more than 0 s")
    if seconds > MAX_TTL_S:
        raise UsageError(f"--ttl {text!r}: a lease lasts at most a week (7d); renew it instead")
    return seconds


def find_repo(directory: str | Path) -> tuple[Path, Path] | None:
    """(the worktree's top, the repository's key) for a directory inside a git worktree; None outside.

    The key is the directory holding the repository's common git directory: the main worktree's top
    for a repository and all its linked worktrees (``.git`` files naming ``gitdir:`` with a
    ``commondir``), the git directory itself otherwise (a submodule's).
    """
    current = Path(os.path.realpath(directory))
    for candidate in (current, *current.parents):
        dot_git = candidate / ".git"
        if dot_git.is_dir():
            return candidate, candidate
        if dot_git.is_file():
            return candidate, _key_of_file(candidate, dot_git)
    return None


def _key_of_file(top: Path, dot_git: Path) -> Path:
    try:
        line = dot_git.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return top
    if not line.startswith("gitdir:"):
        return top
    gitdir = Path(os.path.normpath(top / line[len("gitdir:") :].strip()))
    try:
        common = (gitdir / "commondir").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return gitdir  # no commondir: a submodule's own git directory
    common_dir = Path(os.path.realpath(gitdir / common))
    return common_dir.parent if common_dir.name == ".git" else common_dir


def looks_like_path(resource: str, directory: str) -> bool:
    """A resource is a path when it has a ``/`` or a glob character, or names something that exists."""
    if "/" in resource or any(c in GLOB_CHARS for c in resource) or resource in (".", ".."):
        return True
    return os.path.lexists(os.path.join(directory, resource))


def resolve(resource: str, directory: str) -> Target:
    """What ``resource`` names, seen from ``directory`` (a ``UsageError`` when it names nothing to keep)."""
    text = resource.strip()
    if not text:
        raise UsageError("a lease needs a resource: a name, or a path or glob inside a git repository")
    if "\x00" in text or any(ord(c) < 32 or 0xD800 <= ord(c) < 0xE000 for c in text):
        raise UsageError(f"{resource!r}: control characters or bytes that are not UTF-8 in a resource")
    forced = None
    for kind in (NAME_KIND, PATH_KIND):
        if text.startswith(f"{kind}:"):
            forced, text = kind, text[len(kind) + 1 :]
            if not text:
                raise UsageError(f"{resource!r}: a {kind} after {kind}:")
    if forced == NAME_KIND or (forced is None and not looks_like_path(text, directory)):
        from dev_sessions.api import check_name

        check_name(text, "resource name")
        return Target(NAME_KIND, "", text)
    found = find_repo(directory)
    if found is None:
        raise UsageError(
            f"{resource}: {directory} is not inside a git repository; a path lease needs one "
            "(or lease a name without / or glob characters)"
        )
    top, key = found
    absolute = os.path.normpath(os.path.join(os.path.realpath(directory), text))
    relative = os.path.relpath(absolute, top)
    if relative == ".." or relative.startswith("../"):
        raise UsageError(f"{resource}: outside the repository at {top}")
    directory_like = (
        text.endswith("/")
        or relative == "."
        or (not any(c in GLOB_CHARS for c in text) and os.path.isdir(absolute))
    )
    if relative == ".":
        relative = "**"
    elif directory_like:
        relative = f"{relative}/**"
    return Target(PATH_KIND, str(key), relative, str(top))


@dataclass(frozen=True)
class Lease:
    """One lease as the store holds it (``repo`` empty for a name)."""

    kind: str
    repo: str
    pattern: str
    holder: str
    exclusive: bool
    reason: str
    acquired_at: str
    expires_at: str
    ttl_s: float
    machine: str | None = None

    @property
    def mode(self) -> str:
        return "exclusive" if self.exclusive else "shared"

    def label(self) -> str:
        return self.pattern if self.kind == NAME_KIND else f"{self.pattern} in {self.repo}"

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "resource": self.pattern,
            "repo": self.repo or None,
            "holder": self.holder,
            "mode": self.mode,
            "reason": self.reason,
            "acquiredAt": self.acquired_at,
            "expiresAt": self.expires_at,
            "ttl": self.ttl_s,
            "machine": self.machine,
        }


@dataclass(frozen=True)
class LeaseCheck:
    """Who holds a path (or name) that ``lease check`` was asked about."""

    resource: str
    kind: str
    repo: str
    pattern: str
    leases: list[Lease]
    blocked: bool
    """Another agent holds it exclusively."""
    asker: str = ""
    """Who asked (whose own leases never block it)."""

    @property
    def blockers(self) -> list[Lease]:
        return [lease for lease in self.leases if lease.exclusive and lease.holder != self.asker]

    def to_json(self) -> dict[str, object]:
        return {
            "resource": self.resource,
            "kind": self.kind,
            "repo": self.repo or None,
            "pattern": self.pattern,
            "blocked": self.blocked,
            "leases": [lease.to_json() for lease in self.leases],
        }


# -- globs ------------------------------------------------------------------------------------------------

Intervals = tuple[tuple[int, int], ...]
ANY: Intervals = ((0, _MAX_CHAR),)
NOT_SLASH: Intervals = ((0, _SLASH - 1), (_SLASH + 1, _MAX_CHAR))


def _normal(ranges: list[tuple[int, int]]) -> Intervals:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(r for r in ranges if r[0] <= r[1]):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def _intersect(a: Intervals, b: Intervals) -> Intervals:
    out: list[tuple[int, int]] = []
    for lo1, hi1 in a:
        for lo2, hi2 in b:
            lo, hi = max(lo1, lo2), min(hi1, hi2)
            if lo <= hi:
                out.append((lo, hi))
    return _normal(out)


def _complement(a: Intervals) -> Intervals:
    out: list[tuple[int, int]] = []
    start = 0
    for lo, hi in a:
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= _MAX_CHAR:
        out.append((start, _MAX_CHAR))
    return tuple(out)


def _class_at(pattern: str, i: int) -> tuple[Intervals, int] | None:
    """The set a ``[...]`` at ``pattern[i]`` stands for (never ``/``) and the index after it; None when
    the ``[`` opens no class (then it is itself)."""
    j = i + 1
    negated = j < len(pattern) and pattern[j] in "!^"
    if negated:
        j += 1
    ranges: list[tuple[int, int]] = []
    first = True
    while j < len(pattern):
        c = pattern[j]
        if c == "]" and not first:
            chosen = _normal(ranges)
            if negated:
                chosen = _complement(chosen)
            return _intersect(chosen, NOT_SLASH), j + 1
        first = False
        if j + 2 < len(pattern) and pattern[j + 1] == "-" and pattern[j + 2] != "]":
            ranges.append((ord(c), ord(pattern[j + 2])))
            j += 3
        else:
            ranges.append((ord(c), ord(c)))
            j += 1
    return None


# Tokens of a glob: ("set", intervals) one character of a set; ("star", None) any run without "/";
# ("globstar", None) any run at all; ("segments", None) any number of whole segments, each with its "/".
Token = tuple[str, Intervals | None]


@functools.lru_cache(maxsize=4096)
def tokens(pattern: str, literal: bool = False) -> tuple[Token, ...]:
    """The tokens of a glob (of a plain path, every character itself, with ``literal``)."""
    if literal:
        return tuple(("set", ((ord(c), ord(c)),)) for c in pattern)
    out: list[Token] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            j = i
            while j < n and pattern[j] == "*":
                j += 1
            whole = (i == 0 or pattern[i - 1] == "/") and (j == n or pattern[j] == "/")
            if j - i >= 2 and whole:
                if j < n:  # "**/": any number of segments, then what follows
                    out.append(("segments", None))
                    i = j + 1
                else:  # a last "**": anything below
                    out.append(("globstar", None))
                    i = j
            else:
                out.append(("star", None))
                i = j
        elif c == "?":
            out.append(("set", NOT_SLASH))
            i += 1
        elif c == "[" and (found := _class_at(pattern, i)) is not None:
            out.append(("set", found[0]))
            i = found[1]
        else:
            out.append(("set", ((ord(c), ord(c)),)))
            i += 1
    return tuple(out)


def _class_regex(intervals: Intervals) -> str:
    if not intervals:
        return "(?!)"
    parts = []
    for lo, hi in intervals:
        parts.append(re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}")
    return "[" + "".join(parts) + "]"


@functools.lru_cache(maxsize=4096)
def regex(pattern: str) -> re.Pattern[str]:
    """A glob as a regular expression over a whole relative path."""
    out = []
    for kind, intervals in tokens(pattern):
        if kind == "star":
            out.append("[^/]*")
        elif kind == "globstar":
            out.append(".*")
        elif kind == "segments":
            out.append("(?:.*/)?")
        else:
            assert intervals is not None
            out.append(_class_regex(intervals))
    return re.compile("(?s:" + "".join(out) + r")\Z")


def matches(pattern: str, path: str) -> bool:
    """Whether the glob ``pattern`` names the relative path ``path``."""
    return regex(pattern).match(path) is not None


# An automaton: state i has moves (set, next state) and empty moves; the last state accepts.
_Automaton = tuple[tuple[tuple[tuple[Intervals, int], ...], tuple[int, ...]], ...]


@functools.lru_cache(maxsize=4096)
def _automaton(pattern: str, literal: bool = False) -> _Automaton:
    moves: list[list[tuple[Intervals, int]]] = [[]]
    empty: list[list[int]] = [[]]

    def new() -> int:
        moves.append([])
        empty.append([])
        return len(moves) - 1

    state = 0
    for kind, intervals in tokens(pattern, literal):
        after = new()
        if kind == "set":
            assert intervals is not None
            moves[state].append((intervals, after))
        elif kind in ("star", "globstar"):
            loop = new()
            empty[state].append(loop)
            moves[loop].append((NOT_SLASH if kind == "star" else ANY, loop))
            empty[loop].append(after)
        else:  # segments: nothing, or anything that ends with "/"
            loop = new()
            empty[state].append(after)
            empty[state].append(loop)
            moves[loop].append((ANY, loop))
            moves[loop].append((((_SLASH, _SLASH),), after))
        state = after
    # The accepting state is the last one made after the last token: renumber so that it is last.
    accept = state
    order = [s for s in range(len(moves)) if s != accept] + [accept]
    index = {old: new_index for new_index, old in enumerate(order)}
    return tuple(
        (tuple((iv, index[t]) for iv, t in moves[old]), tuple(index[t] for t in empty[old])) for old in order
    )


def _closure(automaton: _Automaton, states: Iterator[int] | list[int]) -> frozenset[int]:
    seen: set[int] = set()
    stack = list(states)
    while stack:
        s = stack.pop()
        if s in seen:
            continue
        seen.add(s)
        stack.extend(automaton[s][1])
    return frozenset(seen)


def overlaps(a: str, b: str, *, a_literal: bool = False, b_literal: bool = False) -> bool:
    """Whether some path is named by both globs (a plain path with ``*_literal``): decided on the
    product of their automata, so ``src/*.py`` and ``src/a*`` overlap, ``src/*.py`` and ``src/*.md``
    do not."""
    if a_literal and b_literal:
        return a == b
    if b_literal and not a_literal:
        return matches(a, b)
    if a_literal and not b_literal:
        return matches(b, a)
    first, second = _automaton(a), _automaton(b)
    last_a, last_b = len(first) - 1, len(second) - 1
    start = (_closure(first, [0]), _closure(second, [0]))
    seen = {start}
    pending = [start]
    while pending:
        here_a, here_b = pending.pop()
        if last_a in here_a and last_b in here_b:
            return True
        steps: dict[tuple[int, int], None] = {}
        for sa in here_a:
            for set_a, to_a in first[sa][0]:
                for sb in here_b:
                    for set_b, to_b in second[sb][0]:
                        if _intersect(set_a, set_b):
                            steps[(to_a, to_b)] = None
        for to_a, to_b in steps:
            pair = (_closure(first, [to_a]), _closure(second, [to_b]))
            if pair not in seen:
                seen.add(pair)
                pending.append(pair)
    return False


def prefix_of(pattern: str, literal: bool = False) -> str:
    """The directories every path a glob names starts with (``src/app/`` for ``src/app/*.py``, ``""``
    for ``**/x``): two globs can overlap only when one's prefix starts the other's."""
    end = len(pattern)
    if not literal:
        for i, c in enumerate(pattern):
            if c in GLOB_CHARS:
                end = i
                break
    cut = pattern.rfind("/", 0, end)
    return pattern[: cut + 1] if cut >= 0 else ""


def ancestors(prefix: str) -> list[str]:
    """Every directory prefix above and at ``prefix`` (``""``, ``a/``, ``a/b/`` for ``a/b/``)."""
    found = [""]
    start = 0
    while (cut := prefix.find("/", start)) >= 0:
        found.append(prefix[: cut + 1])
        start = cut + 1
    return found
