"""Usage: tokens from recorded Claude transcripts (each API message once), Codex's totals, the
transcript cache, price tables and cost, and the library's ``usage`` call against a scripted backend."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from dev_sessions.config import Settings
from dev_sessions.errors import SessionNotFound, UsageError
from dev_sessions.sessions import SessionManager
from dev_sessions.store import Session
from dev_sessions.usage import (
    ModelTokens,
    SessionUsage,
    Usage,
    compact,
    cost,
    from_codex,
    from_transcript,
    load_prices,
    of_transcript,
    report,
)
from tests.fakes.backend import FakeBackend

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "fixtures" / "transcripts"


def lines(name: str) -> list[bytes]:
    return (TRANSCRIPTS / name).read_bytes().split(b"\n")


def entry(kind: str, **fields: Any) -> bytes:
    return json.dumps({"type": kind, **fields}).encode()


def assistant(mid: str, block: str = "text", model: str = "claude-x", **usage: int) -> bytes:
    message = {"id": mid, "role": "assistant", "model": model, "content": [{"type": block}], "usage": usage}
    return entry("assistant", message=message)


def turn_end(ms: int, **fields: Any) -> bytes:
    return entry("system", subtype="turn_duration", durationMs=ms, **fields)


# -- Claude: the transcript ----------------------------------------------------------------------------


def test_a_recorded_transcript_counts_each_api_message_once() -> None:
    # Recorded (2.1.197): four API messages of 10 in / 10 out; the <<multi>> one is three assistant
    # entries (thinking, two texts) with one message id and one usage, so counting entries gives 60.
    found = from_transcript(lines("first-turn-tool.jsonl"))
    assistant_entries = sum(
        1 for line in lines("first-turn-tool.jsonl") if line and json.loads(line)["type"] == "assistant"
    )
    assert assistant_entries == 6
    assert (found.input, found.output, found.cache_read, found.cache_write) == (40, 40, 0, 0)
    assert found.turns == 3
    assert found.seconds == pytest.approx((143 + 25 + 46) / 1000)
    assert found.models == (ModelTokens("claude-opus-4-8", 40, 40, 0, 0),)


def test_an_api_error_entry_spends_no_tokens() -> None:
    # 2.1.197 api-error: two real answers, then a synthetic API-error entry (model "<synthetic>").
    found = from_transcript(lines("api-error.jsonl"))
    assert (found.input, found.output) == (20, 20)
    assert [m.model for m in found.models] == ["claude-opus-4-8"]


def test_cache_reads_and_writes_and_models_are_kept_apart() -> None:
    found = from_transcript(
        [
            assistant("m1", "thinking", "opus", input_tokens=3, cache_read_input_tokens=100,
                      cache_creation_input_tokens=50, output_tokens=7),
            assistant("m1", "text", "opus", input_tokens=3, cache_read_input_tokens=100,
                      cache_creation_input_tokens=50, output_tokens=7),
            assistant("m2", "text", "haiku", input_tokens=1, output_tokens=2),
            turn_end(1500),
            turn_end(900, isSidechain=True),  # a subagent's turn is not one of the session's
            b"not json",
            entry("user", message={"content": 'a prompt that says "usage"'}),
        ]
    )  # fmt: skip
    assert (found.input, found.output, found.cache_read, found.cache_write) == (4, 9, 100, 50)
    assert found.tokens == 163
    assert (found.turns, found.seconds) == (1, 1.5)
    assert found.models == (ModelTokens("haiku", 1, 2, 0, 0), ModelTokens("opus", 3, 7, 100, 50))


def test_a_transcript_is_read_again_only_when_it_changed(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    cache = tmp_path / "cache"
    path.write_bytes(assistant("m1", input_tokens=5, output_tokens=6) + b"\n")
    assert of_transcript(path, cache).input == 5
    stat = path.stat()
    # Same size and mtime: the cached answer, though the bytes differ.
    path.write_bytes(assistant("m1", input_tokens=7, output_tokens=6) + b"\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert of_transcript(path, cache).input == 5
    # Grown: read again.
    with path.open("ab") as handle:
        handle.write(assistant("m2", input_tokens=1, output_tokens=1) + b"\n")
    assert of_transcript(path, cache).input == 8
    assert of_transcript(tmp_path / "none.jsonl", cache) == Usage()


def append(path: Path, *lines: bytes, end: bytes = b"\n") -> None:
    with path.open("ab") as handle:
        handle.write(b"\n".join(lines) + end)


def kept(cache: Path, path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((cache / (path.stem + ".json")).read_text())
    return data


def test_a_transcript_that_grew_is_read_on_from_where_the_last_read_stopped(tmp_path: Path) -> None:
    path, cache = tmp_path / "t.jsonl", tmp_path / "cache"
    append(path, assistant("m1", input_tokens=5, output_tokens=6), turn_end(1000))
    assert (of_transcript(path, cache).input, of_transcript(path, cache).turns) == (5, 1)
    assert kept(cache, path)["offset"] == path.stat().st_size
    # The kept totals are built upon, not worked out again: a tally changed in the cache shows through
    # once the transcript grows (a whole read would count 1 turn, not 10).
    record = kept(cache, path)
    record["tally"]["turns"] = 9
    (cache / "t.json").write_text(json.dumps(record))
    append(path, assistant("m2", input_tokens=1, output_tokens=1), turn_end(500))
    found = of_transcript(path, cache)
    assert (found.input, found.output, found.turns) == (6, 7, 10)
    assert kept(cache, path)["offset"] == path.stat().st_size
    assert of_transcript(path, cache) == found  # unchanged since: the kept answer


def test_a_message_written_across_two_reads_is_counted_once(tmp_path: Path) -> None:
    path, cache = tmp_path / "t.jsonl", tmp_path / "cache"
    # Claude writes one API message as an entry per content block, each with its id and usage.
    append(path, assistant("m1", "thinking", input_tokens=3, output_tokens=7))
    assert of_transcript(path, cache).output == 7
    text = assistant("m1", "text", input_tokens=3, output_tokens=7)
    append(path, text[:20], end=b"")  # half a line: not counted, not skipped
    assert of_transcript(path, cache).output == 7
    append(path, text[20:], assistant("m2", input_tokens=1, output_tokens=2), turn_end(900))
    found = of_transcript(path, cache)
    assert (found.input, found.output, found.turns) == (4, 9, 1)
    assert found == from_transcript(path.read_bytes().split(b"\n"))
    append(path, assistant("m2", "text", input_tokens=1, output_tokens=2))
    assert of_transcript(path, cache) == found


def test_a_transcript_cut_short_is_read_again_from_the_start(tmp_path: Path) -> None:
    path, cache = tmp_path / "t.jsonl", tmp_path / "cache"
    append(path, assistant("m1", input_tokens=50), assistant("m2", input_tokens=60))
    assert of_transcript(path, cache).input == 110
    inode = path.stat().st_ino
    path.write_bytes(assistant("m3", input_tokens=1) + b"\n")  # truncated in place, shorter
    assert path.stat().st_ino == inode
    assert of_transcript(path, cache).input == 1


def test_a_transcript_rewritten_in_place_is_read_again_from_the_start(tmp_path: Path) -> None:
    path, cache = tmp_path / "t.jsonl", tmp_path / "cache"
    append(path, assistant("m1", input_tokens=5))
    assert of_transcript(path, cache).input == 5
    # The same inode, longer than before, other bytes where the last read stopped.
    path.write_bytes(assistant("m1", input_tokens=7) + b"\n" + assistant("m2", input_tokens=1) + b"\n")
    assert of_transcript(path, cache).input == 8


def test_a_replaced_transcript_is_read_again_from_the_start(tmp_path: Path) -> None:
    path, cache = tmp_path / "t.jsonl", tmp_path / "cache"
    tail = assistant("m2", input_tokens=1)
    append(path, assistant("m1", input_tokens=5), tail)
    assert of_transcript(path, cache).input == 6
    # Another file in its place (another inode), longer, and ending where the last read stopped in
    # the same bytes: only the inode tells (read on, it would count 5 + 1 + 2).
    fresh = tmp_path / "new.jsonl"
    fresh.write_bytes(
        b"\n".join([assistant("m1", input_tokens=7), tail, assistant("m3", input_tokens=2)]) + b"\n"
    )
    os.replace(fresh, path)
    assert of_transcript(path, cache).input == 10


# -- Codex ------------------------------------------------------------------------------------------------


def test_codex_cached_input_is_taken_out_of_its_input() -> None:
    tokens = {"inputTokens": 30, "cachedInputTokens": 8, "outputTokens": 12, "reasoningOutputTokens": 2}
    found = from_codex({"tokens": tokens, "model": "gpt-x", "turns": 2, "seconds": 0.128})
    assert (found.input, found.output, found.cache_read, found.cache_write) == (22, 12, 8, 0)
    assert (found.turns, found.seconds) == (2, 0.128)
    assert found.models == (ModelTokens("gpt-x", 22, 12, 8, 0),)
    assert from_codex({"tokens": None, "turns": 0}) == Usage()


# -- prices -----------------------------------------------------------------------------------------------


def test_cost_is_per_model_and_per_million_tokens() -> None:
    used = Usage(
        2_000_000, 1_000_000, 4_000_000, 0,
        models=(ModelTokens("a", 1_000_000, 1_000_000, 4_000_000, 0), ModelTokens("b", 1_000_000)),
    )  # fmt: skip
    prices = {"a": {"input": 3.0, "output": 15.0, "cache_read": 0.3}, "b": {"input": 1.0}}
    assert cost(used, prices) == pytest.approx(3 + 15 + 1.2 + 1)
    assert cost(used, {"a": prices["a"]}) is None  # b has no price: no partial cost
    assert cost(used, {"*": {"input": 1.0}}) == pytest.approx(2.0)


def test_no_price_table_means_no_cost(tmp_path: Path) -> None:
    assert load_prices(tmp_path) is None
    rows = [SessionUsage("a-b", "claude", Usage(1, models=(ModelTokens("m", 1),)))]
    found = report(rows, None)
    assert (found.priced, found.cost) == (False, None)
    assert "cost" not in found.to_json()["total"]
    assert "cost" not in found.to_json()["sessions"][0]


@pytest.mark.parametrize(
    "text",
    ["{", "[]", '{"m": 3}', '{"m": {"input": "3"}}', '{"m": {"inputs": 3}}', '{"m": {"input": -1}}'],
)
def test_a_bad_price_table_is_a_usage_error_naming_the_file(tmp_path: Path, text: str) -> None:
    (tmp_path / "prices.json").write_text(text)
    with pytest.raises(UsageError, match=r"prices\.json"):
        load_prices(tmp_path)


@pytest.mark.parametrize(
    ("count", "shown"),
    [
        (0, "0"), (999, "999"), (1000, "1k"), (12_345, "12.3k"), (99_949, "99.9k"), (99_950, "100k"),
        (456_789, "457k"), (999_499, "999k"), (999_500, "1M"), (1_234_567, "1.2M"),
        (999_999_999, "1B"), (3_000_000_000_000, "3000B"),
    ],
)  # fmt: skip
def test_token_counts_are_shown_in_a_few_characters(count: int, shown: str) -> None:
    assert compact(count) == shown


# -- the library ------------------------------------------------------------------------------------------


def manager(tmp_path: Path, claude: FakeBackend, codex: FakeBackend) -> SessionManager:
    settings = Settings.from_env({**os.environ, "DEV_SESSIONS_HOME": str(tmp_path)})
    return SessionManager(settings, backends={"claude": claude, "codex": codex})


def test_usage_is_per_session_and_in_total_with_a_cost_only_from_a_price_table(tmp_path: Path) -> None:
    claude, codex = FakeBackend("claude"), FakeBackend("codex")
    sessions = manager(tmp_path, claude, codex)
    a = sessions.create(cli="claude").session.id
    b = sessions.create(cli="codex").session.id
    claude.enqueue("four")
    codex.enqueue("fifteen letters")
    sessions.ask(a, "hi")
    sessions.ask(b, "hello")
    found = sessions.usage()
    by_id = {row.id: row for row in found.sessions}
    assert (by_id[a].usage.input, by_id[a].usage.output, by_id[a].usage.turns) == (2, 4, 1)
    assert (by_id[b].usage.input, by_id[b].usage.output, by_id[b].usage.turns) == (5, 15, 1)
    assert (found.total.input, found.total.output, found.total.turns) == (7, 19, 2)
    assert found.total.seconds == 2.0
    assert found.cost is None and by_id[a].cost is None
    (tmp_path / "prices.json").write_text('{"fake-model": {"input": 1000000, "output": 2000000}}')
    priced = sessions.usage([b])
    assert [row.id for row in priced.sessions] == [b]
    assert priced.sessions[0].cost == 5 + 30
    assert priced.cost == 35
    assert sessions.inspect(a).facts["usage"] == {
        "id": a, "cli": "claude", "input": 2, "output": 4, "cache_read": 0, "cache_write": 0,
        "tokens": 6, "turns": 1, "seconds": 1.0, "models": {"fake-model": {
            "input": 2, "output": 4, "cache_read": 0, "cache_write": 0}}, "cost": 10.0,
    }  # fmt: skip


def test_usage_of_an_unknown_session_is_refused(tmp_path: Path) -> None:
    sessions = manager(tmp_path, FakeBackend("claude"), FakeBackend("codex"))
    with pytest.raises(SessionNotFound):
        sessions.usage(["nope-nope"])


def test_usage_of_this_machine_only_leaves_remote_sessions_out(tmp_path: Path) -> None:
    claude = FakeBackend("claude")
    sessions = manager(tmp_path, claude, FakeBackend("codex"))
    here = sessions.create(cli="claude").session.id
    with sessions.store.transaction() as doc:
        doc.put(Session(id="far-away", internal_id="x", cli="claude", path="/", host="elsewhere"))
    found = sessions.usage(remote=False)  # no host is asked: none is set up to answer
    assert [row.id for row in found.sessions] == [here]
    assert [row.id for row in sessions.usage([here, "far-away"], remote=False).sessions] == [here]
