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


def _add_model(a: ModelTokens, b: ModelTokens) -> ModelTokens:
    return ModelTokens(a.model, *(getattr(a, k) + getattr(b, k) for k in KINDS))


def total(usages: Iterable[Usage]) -> Usage:
    found = Usage()
    for usage in usages:
        found = found + usage
    return found


# -- Claude: the transcript --------------------------------------------------------------------------

_WANTED = (b'"usage"', b'"turn_duration"')


def from_transcript(lines: Iterable[bytes]) -> Usage:
    """A Claude session's usage from its transcript's lines: each API message's ``message.usage`` once
    (Claude writes one assistant entry per content block, each with the message's id and usage), and
    a turn per ``turn_duration`` entry, its ``durationMs`` the time worked. Sidechain entries (a
    subagent's) count too: their tokens were spent for this session. Only lines that can hold these
    are parsed."""
    from dev_sessions.claude.transcript import parse_lines

    seen: set[str] = set()
    counts = dict.fromkeys(KINDS, 0)
    per_model: dict[str, dict[str, int]] = {}
    turns = 0
    millis = 0
    wanted = (line for line in lines if any(w in line for w in _WANTED))
    for entry in parse_lines(wanted):
        kind = entry.get("type")
        if kind == "system" and entry.get("subtype") == "turn_duration":
            if not entry.get("isSidechain"):
                turns += 1
                duration = entry.get("durationMs")
                millis += duration if isinstance(duration, int) else 0
            continue
        message = entry.get("message")
        if kind != "assistant" or not isinstance(message, dict):
            continue
        usage = message.get("usage")
        if not isinstance(usage, dict) or entry.get("isApiErrorMessage"):
            continue
        key = str(message.get("id") or entry.get("requestId") or entry.get("uuid") or "")
        if key in seen:
            continue
        seen.add(key)
        tokens = {
            "input": _int(usage.get("input_tokens")),
            "output": _int(usage.get("output_tokens")),
            "cache_read": _int(usage.get("cache_read_input_tokens")),
            "cache_write": _int(usage.get("cache_creation_input_tokens")),
        }
        model = per_model.setdefault(str(message.get("model") or "unknown"), dict.fromkeys(KINDS, 0))
        for name, value in tokens.items():
            counts[name] += value
            model[name] += value
    models = tuple(ModelTokens(name, **per_model[name]) for name in sorted(per_model))
    return Usage(**counts, turns=turns, seconds=millis / 1000, models=models)


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


# -- Claude's usage, cached by transcript size and mtime ----------------------------------------------


def of_transcript(path: Path, cache_dir: Path) -> Usage:
    """The usage in a Claude transcript; read again only when its size or mtime changed (the answer
    is kept in ``cache_dir``, one small file per transcript)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return Usage()
    stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    cached = cache_dir / (path.stem + ".json")
    from dev_sessions import files

    raw = files.read_bytes(cached)
    if raw:
        try:
            data = json.loads(raw)
            if data.get("stamp") == stamp and data.get("path") == str(path):
                return _from_json(data["usage"])
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    with path.open("rb") as handle:
        data_bytes = handle.read(stat.st_size)  # what the stamp describes, not what came since
    found = from_transcript(data_bytes.split(b"\n"))
    try:
        files.private_dir(cache_dir)
        files.write_atomic(
            cached, json.dumps({"path": str(path), "stamp": stamp, "usage": _to_json(found)}).encode()
        )
    except OSError:
        pass  # a cache that cannot be written costs time, not the answer
    return found


def _to_json(usage: Usage) -> dict[str, Any]:
    data: dict[str, Any] = {k: getattr(usage, k) for k in (*KINDS, "turns", "seconds")}
    data["models"] = [[m.model, *(getattr(m, k) for k in KINDS)] for m in usage.models]
    return data


def _from_json(data: dict[str, Any]) -> Usage:
    models = tuple(ModelTokens(str(m[0]), *(int(v) for v in m[1:5])) for m in data["models"])
    counts = {k: int(data[k]) for k in KINDS}
    return Usage(**counts, turns=int(data["turns"]), seconds=float(data["seconds"]), models=models)
