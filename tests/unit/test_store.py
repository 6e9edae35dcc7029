"""The session store on real files: format, round trips, and that nothing is ever dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dev_sessions.errors import SessionNotFound, StoreCorrupt, StoreTooNew
from dev_sessions.store import Session, SessionStore

ORIGINAL_RECORD = {
    # A record as the original TypeScript tool wrote it.
    "championId": "riven-jg",
    "internalId": "0b5e7a43-8a0a-4d0d-9f49-2f0f5d8d3e51",
    "cli": "claude",
    "mode": "yolo",
    "path": "/home/me/project",
    "description": "refactor auth",
    "status": "active",
    "createdAt": "2026-01-02T03:04:05.000Z",
    "lastUsed": "2026-01-02T03:05:00.000Z",
    "lastAssistantMessages": ["done"],
}


@pytest.fixture
def store(tmp_path: Path) -> SessionStore:
    return SessionStore(tmp_path / "state" / "sessions.json")


def session(sid: str = "fizz-top", **extra: object) -> Session:
    return Session(
        id=sid, internal_id="u-" + sid, cli="claude", path="/tmp", created_at="2026-11-21T00:00:00Z", **extra
    )  # type: ignore[arg-type]


def test_empty_store_reads_as_no_sessions(store: SessionStore) -> None:
    assert store.sessions() == []
    assert not store.path.exists()


def test_round_trip_in_the_original_format(store: SessionStore) -> None:
    with store.transaction() as doc:
        doc.put(session(description="x"))
    data = json.loads(store.path.read_text())
    assert data["version"] == 1
    (record,) = data["sessions"]
    assert record["championId"] == "fizz-top"
    assert record["internalId"] == "u-fizz-top"
    assert record["description"] == "x"
    assert store.get("fizz-top").description == "x"


def test_records_of_the_original_tool_load_and_keep_their_fields(store: SessionStore) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text(json.dumps({"version": 1, "sessions": [ORIGINAL_RECORD]}))
    loaded = store.get("riven-jg")
    assert loaded.mode == "yolo"
    assert loaded.description == "refactor auth"
    with store.transaction() as doc:
        doc.put(doc.get("riven-jg").evolve(last_used="2026-11-21T00:00:00Z"))
    (record,) = json.loads(store.path.read_text())["sessions"]
    assert record["lastAssistantMessages"] == ["done"]
    assert record["lastUsed"] == "2026-11-21T00:00:00Z"
    for key, value in ORIGINAL_RECORD.items():
        if key != "lastUsed":
            assert record[key] == value


def test_unusable_records_and_unknown_keys_are_kept(store: SessionStore) -> None:
    odd = [{"championId": "x"}, "not a record", {**ORIGINAL_RECORD, "championId": "grok-top", "cli": "grok"}]
    store.path.parent.mkdir(parents=True)
    store.path.write_text(json.dumps({"version": 1, "sessions": odd, "future": {"a": 1}}))
    assert store.sessions() == []
    with store.transaction() as doc:
        doc.put(session())
    data = json.loads(store.path.read_text())
    assert data["future"] == {"a": 1}
    assert data["sessions"][1:] == odd


def test_wrongly_typed_known_field_is_kept_not_trusted(store: SessionStore) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text(json.dumps({"sessions": [{**ORIGINAL_RECORD, "description": 42}]}))
    assert store.get("riven-jg").description == ""
    with store.transaction() as doc:
        doc.put(doc.get("riven-jg").evolve(status="active"))
    assert json.loads(store.path.read_text())["sessions"][0]["description"] == 42


def test_duplicate_ids_keep_the_first_and_the_rest_raw(store: SessionStore) -> None:
    second = {**ORIGINAL_RECORD, "description": "second"}
    store.path.parent.mkdir(parents=True)
    store.path.write_text(json.dumps({"sessions": [ORIGINAL_RECORD, second]}))
    assert store.get("riven-jg").description == "refactor auth"
    with store.transaction():
        pass
    assert len(json.loads(store.path.read_text())["sessions"]) == 2


def test_corrupt_store_is_reported_and_kept_aside(store: SessionStore) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text('{"version": 1, "sessions": [')
    with pytest.raises(StoreCorrupt) as caught:
        store.sessions()
    message = str(caught.value)
    assert str(store.path) in message
    assert caught.value.kept_at is not None
    assert Path(caught.value.kept_at).read_text() == '{"version": 1, "sessions": ['
    assert store.sessions() == []


def test_store_from_a_newer_version_is_refused_untouched(store: SessionStore) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text(json.dumps({"version": 2, "sessions": []}))
    with pytest.raises(StoreTooNew, match="newer dev-sessions"):
        store.sessions()
    with pytest.raises(StoreTooNew), store.transaction():
        pass
    assert json.loads(store.path.read_text())["version"] == 2


def test_failed_transaction_writes_nothing(store: SessionStore) -> None:
    with store.transaction() as doc:
        doc.put(session())
    before = store.path.read_bytes()
    with pytest.raises(RuntimeError), store.transaction() as doc:
        doc.put(session("lux-mid"))
        raise RuntimeError("boom")
    assert store.path.read_bytes() == before


def test_writes_leave_no_temp_files_and_are_private(store: SessionStore) -> None:
    with store.transaction() as doc:
        doc.put(session())
    names = sorted(p.name for p in store.path.parent.iterdir())
    assert names == ["sessions.json", "sessions.json.lock"]
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.path.parent.stat().st_mode & 0o777 == 0o700


def test_remove_and_missing(store: SessionStore) -> None:
    with store.transaction() as doc:
        doc.put(session())
        doc.put(session("lux-mid"))
    with store.transaction() as doc:
        doc.remove("fizz-top")
    assert [s.id for s in store.sessions()] == ["lux-mid"]
    with pytest.raises(SessionNotFound, match="fizz-top: no such session"):
        store.get("fizz-top")
