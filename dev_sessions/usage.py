"""Tokens, turns and time a session used, and what they cost under a price table the user supplies.

``Usage`` is one session's (or a total's) counts. Tokens follow Anthropic's split, for both agents:
``input`` is input not read from a cache, ``cache_read`` input read from the prompt cache,
``cache_write`` input written to it, ``output`` what the model produced (Codex's reasoning tokens
included). Claude's come from its transcript (:func:`from_transcript`), Codex's from the app-server's
``thread/tokenUsage/updated`` totals (:func:`from_codex`).

Prices change, so none are built in: a cost is reported only from ``$DEV_SESSIONS_HOME/prices.json``,
``{"MODEL": {"input": N, "output": N, "cache_read": N, "cache_write": N}}`` in currency units per
million tokens (``"*"`` prices any model not named). No pure I/O here but :func:`load_prices`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dev_sessions.errors import UsageError

KINDS = ("input", "output", "cache_read", "cache_write")


@dataclass(frozen=True)
class ModelTokens:
    """The tokens one model used (a session may change model)."""

    model: str
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0


@dataclass(frozen=True)
class Usage:
    """Tokens, finished turns and seconds worked (the turns' durations added up)."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    turns: int = 0
    seconds: float = 0.0
    models: tuple[ModelTokens, ...] = ()

    @property
    def tokens(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_write

    def __add__(self, other: Usage) -> Usage:
        merged: dict[str, ModelTokens] = {m.model: m for m in self.models}
        for m in other.models:
            had = merged.get(m.model)
            merged[m.model] = m if had is None else _add_model(had, m)
        return Usage(
            self.input + other.input,
            self.output + other.output,
            self.cache_read + other.cache_read,
            self.cache_write + other.cache_write,
            self.turns + other.turns,
            round(self.seconds + other.seconds, 3),
            tuple(merged[k] for k in sorted(merged)),
        )

    def to_json(self, cost: float | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {k: getattr(self, k) for k in KINDS}
        data.update(tokens=self.tokens, turns=self.turns, seconds=self.seconds)
        data["models"] = {m.model: {k: getattr(m, k) for k in KINDS} for m in self.models}
        if cost is not None:
            data["cost"] = cost
        return data


def compact(count: int) -> str:
    """A token count in a few characters: 950, 12.3k, 456k, 1.2M, 3B."""
    if count < 1000:
        return str(count)
    for unit, scale in (("k", 1e3), ("M", 1e6), ("B", 1e9)):
        value = count / scale
        text = f"{value:.1f}" if value < 99.95 else f"{value:.0f}"
        if float(text) < 1000 or unit == "B":
            return text.removesuffix(".0") + unit
    raise AssertionError("unreachable")


def _add_model(a: ModelTokens, b: ModelTokens) -> ModelTokens:
    return ModelTokens(a.model, *(getattr(a, k) + getattr(b, k) for k in KINDS))


def total(usages: Iterable[Usage]) -> Usage:
    found = Usage()
    for usage in usages:
        found = found + usage
    return found


# -- Claude: the transcript --------------------------------------------------------------------------

_WANTED = (b'"usage"', b'"turn_duration"')


class Tally:
    """A Claude transcript's usage so far, fed its lines in order, a few at a time if need be
    (:func:`of_transcript` feeds only the lines written since its last read). ``seen`` holds the API
    message ids already counted: Claude writes one message over several lines, and a file may end
    between two of them."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.per_model: dict[str, dict[str, int]] = {}
        self.turns = 0
        self.millis = 0

    def feed(self, lines: Iterable[bytes]) -> None:
        """Each API message's ``message.usage`` once (Claude writes one assistant entry per content
        block, each with the message's id and usage), and a turn per ``turn_duration`` entry, its
        ``durationMs`` the time worked. Sidechain entries (a subagent's) count too: their tokens were
        spent for this session. Only lines that can hold these are parsed."""
        from dev_sessions.claude.transcript import parse_lines

        wanted = (line for line in lines if any(w in line for w in _WANTED))
        for entry in parse_lines(wanted):
            kind = entry.get("type")
            if kind == "system" and entry.get("subtype") == "turn_duration":
                if not entry.get("isSidechain"):
                    self.turns += 1
                    duration = entry.get("durationMs")
                    self.millis += duration if isinstance(duration, int) else 0
                continue
            message = entry.get("message")
            if kind != "assistant" or not isinstance(message, dict):
                continue
            usage = message.get("usage")
            if not isinstance(usage, dict) or entry.get("isApiErrorMessage"):
                continue
            key = str(message.get("id") or entry.get("requestId") or entry.get("uuid") or "")
            if key in self.seen:
                continue
            self.seen.add(key)
            model = self.per_model.setdefault(str(message.get("model") or "unknown"), dict.fromkeys(KINDS, 0))
            model["input"] += _int(usage.get("input_tokens"))
            model["output"] += _int(usage.get("output_tokens"))
            model["cache_read"] += _int(usage.get("cache_read_input_tokens"))
            model["cache_write"] += _int(usage.get("cache_creation_input_tokens"))

    def usage(self) -> Usage:
        models = tuple(ModelTokens(name, **self.per_model[name]) for name in sorted(self.per_model))
        counts = {k: sum(m[k] for m in self.per_model.values()) for k in KINDS}
        return Usage(**counts, turns=self.turns, seconds=self.millis / 1000, models=models)

    def to_json(self) -> dict[str, Any]:
        """All but ``seen`` (kept apart: only a transcript that grew needs it)."""
        return {"models": self.per_model, "turns": self.turns, "millis": self.millis}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], seen: Iterable[str]) -> Tally:
        tally = cls()
        tally.seen = {str(key) for key in seen}
        tally.per_model = {
            str(name): {k: int(counts[k]) for k in KINDS} for name, counts in data["models"].items()
        }
        tally.turns, tally.millis = int(data["turns"]), int(data["millis"])
        return tally


def from_transcript(lines: Iterable[bytes]) -> Usage:
    """A Claude session's usage from its transcript's lines (:class:`Tally`)."""
    tally = Tally()
    tally.feed(lines)
    return tally.usage()


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


# -- Codex: the app-server's totals --------------------------------------------------------------------


def from_codex(found: Mapping[str, Any]) -> Usage:
    """A Codex session's usage from the bridge's ``usage`` op: ``tokens`` (the last
    ``thread/tokenUsage/updated`` ``tokenUsage.total``, or None), ``model``, ``turns``, ``seconds``.
    OpenAI counts cached input inside ``inputTokens``; here it is taken out, as Anthropic reports it."""
    tokens = found.get("tokens") or {}
    cached = _int(tokens.get("cachedInputTokens"))
    written = _int(tokens.get("cacheWriteInputTokens"))
    counts = {
        "input": max(0, _int(tokens.get("inputTokens")) - cached - written),
        "output": _int(tokens.get("outputTokens")),
        "cache_read": cached,
        "cache_write": written,
    }
    models: tuple[ModelTokens, ...] = ()
    if any(counts.values()):
        models = (ModelTokens(str(found.get("model") or "unknown"), **counts),)
    seconds = found.get("seconds")
    return Usage(
        **counts,
        turns=_int(found.get("turns")),
        seconds=float(seconds) if isinstance(seconds, (int, float)) else 0.0,
        models=models,
    )


# -- cost -------------------------------------------------------------------------------------------


Prices = Mapping[str, Mapping[str, float]]


def load_prices(home: Path) -> Prices | None:
    """The user's price table, ``$DEV_SESSIONS_HOME/prices.json``; None when there is none. A table
    that does not parse is a usage error naming the file."""
    path = home / "prices.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise UsageError(f"{path}: {err.strerror}") from None
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise UsageError(f"{path}: not JSON ({err})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected {{MODEL: {{input, output, cache_read, cache_write}}}}")
    table: dict[str, dict[str, float]] = {}
    for model, prices in data.items():
        if not isinstance(prices, dict) or not all(
            k in KINDS and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
            for k, v in prices.items()
        ):
            raise UsageError(f"{path}: {model!r}: expected prices per million tokens for {', '.join(KINDS)}")
        table[str(model)] = {k: float(v) for k, v in prices.items()}
    return table


def cost(usage: Usage, prices: Prices) -> float | None:
    """What the tokens cost under ``prices``; None when a model that used tokens has no price (nor
    ``"*"``), so that a cost shown is never a partial one."""
    amount = 0.0
    for model in usage.models:
        price = prices.get(model.model) or prices.get("*")
        if price is None:
            return None
        amount += sum(getattr(model, k) * price.get(k, 0.0) for k in KINDS) / 1_000_000
    return round(amount, 6)


# -- what the API returns ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionUsage:
    """One session's usage; ``cost`` only under a price table; ``error`` when it could not be read
    (its host did not answer): then ``usage`` is empty and left out of the total."""

    id: str
    cli: str
    usage: Usage
    cost: float | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"id": self.id, "cli": self.cli, **self.usage.to_json(self.cost)}
        if self.error is not None:
            data["error"] = self.error
        return data


@dataclass(frozen=True)
class UsageReport:
    """Every session's usage and the total. ``priced``: a price table was found; ``cost`` is then
    the total's, or None when some model used has no price."""

    sessions: tuple[SessionUsage, ...]
    total: Usage
    priced: bool = False
    cost: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "sessions": [s.to_json() for s in self.sessions],
            "total": self.total.to_json(self.cost),
        }


def report(found: Iterable[SessionUsage], prices: Prices | None) -> UsageReport:
    rows = tuple(
        s if prices is None or s.error else SessionUsage(s.id, s.cli, s.usage, cost(s.usage, prices))
        for s in found
    )
    summed = total(s.usage for s in rows if s.error is None)
    return UsageReport(rows, summed, prices is not None, None if prices is None else cost(summed, prices))


# -- Claude's usage, kept per transcript and read on from where it stopped ----------------------------

_CACHE_VERSION = 2
_MARK = 64  # bytes before the offset kept to recognise the file next time


def of_transcript(path: Path, cache_dir: Path) -> Usage:
    """The usage in a Claude transcript. What was read is kept in ``cache_dir`` (per transcript: the
    totals, the offset read to and the file's stamp in ``<name>.json``; the message ids counted in
    ``<name>.ids.json``), so that an unchanged transcript is not read at all and one that grew is read
    only from where the last read stopped (its complete lines). A transcript that shrank, was replaced
    (another inode) or no longer ends where it did at the offset is read again from the start."""
    from dev_sessions.watch import Tail

    tail = Tail(path)
    try:
        stat = tail.stat()
        if stat is None:
            return Usage()
        stamp = [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns]
        meta_path = cache_dir / (path.stem + ".json")
        ids_path = cache_dir / (path.stem + ".ids.json")
        meta = _load(meta_path)
        tally: Tally | None = None
        try:
            if meta.get("v") == _CACHE_VERSION and meta.get("path") == str(path):
                if meta["stamp"] == stamp:
                    return Tally.from_json(meta["tally"], ()).usage()
                offset = int(meta["offset"])
                same_file = meta["stamp"][:2] == stamp[:2] and offset <= stat.st_size
                if same_file and tail.before(offset, _MARK).hex() == meta["mark"]:
                    ids = _load(ids_path)
                    if ids.get("at") == [*stamp[:2], offset]:
                        tally = Tally.from_json(meta["tally"], ids["ids"])
                        tail.offset = offset
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            tally = None  # a cache of another shape: read the whole transcript
        fresh = tally is None
        if tally is None:
            tally, tail.offset = Tally(), 0
        lines = tail.read_lines(upto=stat.st_size)  # what the stamp describes, not what came since
        if tail.rewound:  # cut short since we looked: its lines are the whole file's again
            tally = Tally()
        counted = fresh or tail.rewound or bool(lines)
        tally.feed(lines)
        offset = tail.complete
        mark = tail.before(offset, _MARK).hex()
    finally:
        tail.close()
    from dev_sessions import files
    from dev_sessions.errors import WriteFailed

    try:
        if counted:  # the ids first: a kept offset whose ids are not there is read again from the start
            at = [*stamp[:2], offset]
            files.write_atomic(ids_path, json.dumps({"at": at, "ids": list(tally.seen)}).encode())
        record = {"v": _CACHE_VERSION, "path": str(path), "stamp": stamp, "offset": offset, "mark": mark}
        files.write_atomic(meta_path, json.dumps({**record, "tally": tally.to_json()}).encode())
    except (OSError, WriteFailed):
        pass  # a cache that cannot be written costs time, not the answer
    return tally.usage()


def _load(path: Path) -> dict[str, Any]:
    from dev_sessions import files

    try:
        data = json.loads(files.read_bytes(path) or b"{}")
    except (ValueError, OSError):
        return {}
    return data if isinstance(data, dict) else {}
