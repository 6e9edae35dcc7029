"""What wakes a live face (the dashboard, the TUI): file-system events, a PostgreSQL message server's
push, and a look by hand only where no event comes (busy Codex threads, remote hosts)."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dev_sessions.backend import Status
from dev_sessions.config import Settings
from dev_sessions.live import CODEX_EVERY_S, REMOTE_EVERY_S, Changes
from dev_sessions.store import Session
from tests.conftest import ROOT, DevSessions, need

LONG = 60.0  # a wait that ends before this was woken by the write, not by its timeout


def woken_by(changes: Changes, write: object) -> float:
    """How long ``changes.wait(LONG)`` slept while another thread did ``write()`` once it slept."""
    writer = threading.Timer(0.2, write)  # type: ignore[arg-type]
    started = time.monotonic()
    writer.start()
    changes.wait(LONG)
    writer.join()
    return time.monotonic() - started


def session(sid: str, cli: str = "claude", host: str | None = None, path: str = "/tmp") -> Session:
    return Session(id=sid, internal_id=f"{sid}-0000", cli=cli, path=path, host=host)  # type: ignore[arg-type]


def test_the_stores_and_hook_events_wake_it(isolated: Path) -> None:
    settings = Settings.from_env()
    settings.home.mkdir(parents=True)
    with Changes(settings) as changes:
        assert changes.every is None  # nothing to look at by hand
        assert woken_by(changes, lambda: (settings.home / "sessions.json").write_text("{}")) < LONG / 2
        assert woken_by(changes, lambda: (settings.home / "messages.db-wal").write_bytes(b"x")) < LONG / 2
        # events/ did not exist when it started: its parent was watched, then it is followed itself
        (settings.home / "events").mkdir()
        changes.follow([])
        assert woken_by(changes, lambda: (settings.home / "events" / "a.jsonl").write_text("{}\n")) < LONG / 2


def test_a_claude_session_wakes_it_through_its_transcript_and_state(isolated: Path) -> None:
    settings = Settings.from_env()
    settings.home.mkdir(parents=True)
    one = session("one", path=str(isolated / "work"))
    with Changes(settings) as changes:
        changes.follow([(one, Status("busy"))])
        from dev_sessions.claude.facts import Facts

        transcript = Facts(settings).transcript(one)
        transcript.parent.mkdir(parents=True)
        changes.follow([(one, Status("busy"))])
        assert changes.every is None
        assert woken_by(changes, lambda: transcript.write_text('{"type":"assistant"}\n')) < LONG / 2
        state = Facts(settings).config_dir(one) / "sessions"
        state.mkdir(parents=True)
        changes.follow([(one, Status("idle"))])
        assert woken_by(changes, lambda: (state / "123.json").write_text("{}")) < LONG / 2


def test_busy_codex_threads_and_remote_hosts_are_looked_at_by_hand(isolated: Path) -> None:
    settings = Settings.from_env()
    settings.home.mkdir(parents=True)
    with Changes(settings) as changes:
        changes.follow([(session("c", "codex"), Status("idle"))])
        assert changes.every is None  # an idle thread starts a turn only through us: the store says so
        changes.follow([(session("c", "codex"), Status("busy"))])
        assert changes.every == CODEX_EVERY_S
        # Just idle: one more look (its log may have been read before the turn's end), then none.
        changes.follow([(session("c", "codex"), Status("idle"))])
        assert changes.every == CODEX_EVERY_S
        changes.follow([(session("c", "codex"), Status("idle"))])
        assert changes.every is None
        changes.follow([(session("c", "codex"), Status("busy"))])
        changes.follow([(session("r", host="box"), Status("idle"))])
        assert changes.every == REMOTE_EVERY_S
        changes.follow([(session("r", host="box"), Status("idle")), (session("c", "codex"), Status("busy"))])
        assert changes.every == CODEX_EVERY_S
        started = time.monotonic()
        changes.wait(LONG)  # nothing written: it comes back to look by hand
        assert time.monotonic() - started < LONG / 2


def test_a_message_sent_by_another_process_wakes_it_on_either_engine(
    messages_url: str | None, cli: DevSessions, isolated: Path
) -> None:
    """On SQLite ``messages.db`` changes; on a server nothing here does, and its push wakes it."""
    settings = Settings.from_env()
    settings.home.mkdir(parents=True, exist_ok=True)
    cli.ok("agents", "register", "someone")  # before it watches: the store exists, its first write done
    with Changes(settings) as changes:
        assert changes.every is None
        send = lambda: cli.ok("msg", "send", "--from", "someone", "--to", "user", "news")  # noqa: E731
        assert woken_by(changes, send) < LONG / 2
        assert woken_by(changes, send) < LONG / 2  # and again: nothing was used up


def test_a_server_that_does_not_answer_does_not_stop_it(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        need("psycopg is not installed (scripts/test installs the test extra, which has it)")
    url = f"postgresql://nobody@/nowhere?host={tmp_path}"  # no server listens there
    monkeypatch.setenv("DEV_SESSIONS_MESSAGES_URL", url)
    settings = Settings.from_env()
    settings.home.mkdir(parents=True)
    with caplog.at_level(logging.WARNING), Changes(settings) as changes:
        changes.wait(0.1)  # it tries again in the background, and still wakes on files
        assert woken_by(changes, lambda: (settings.home / "sessions.json").write_text("{}")) < LONG / 2
    assert "trying again in the background" in caplog.text


def test_on_sqlite_it_does_not_import_psycopg(isolated: Path) -> None:
    code = (
        "import sys\n"
        "from dev_sessions.config import Settings\n"
        "from dev_sessions.live import Changes\n"
        "settings = Settings.from_env()\n"
        "settings.home.mkdir(parents=True)\n"
        "Changes(settings).wait(0)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'psycopg' or m.endswith('.postgres')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]", done.stdout
