"""The store lock and id allocation with real competing processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dev_sessions.errors import LockTimeout
from dev_sessions.lock import FileLock
from tests.conftest import ROOT, SLOW

CREATOR = textwrap.dedent(
    """
    import sys, time, uuid
    from pathlib import Path
    from dev_sessions import ids
    from dev_sessions.store import Session, SessionStore
    store = SessionStore(Path(sys.argv[1]), lock_timeout=60)
    with store.transaction() as doc:
        sid = ids.allocate(set(doc.sessions))
        time.sleep(0.01)  # widen the window a racing writer would need
        doc.put(Session(id=sid, internal_id=str(uuid.uuid4()), cli="claude", path="/tmp"))
    print(sid)
    """
)

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from dev_sessions.lock import FileLock
    lock = FileLock(Path(sys.argv[1]))
    lock.acquire()
    print("held", flush=True)
    time.sleep(120)
    """
)


def python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_twenty_parallel_creators_lose_nothing_and_share_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    procs = [python(CREATOR, str(path)) for _ in range(20)]
    printed = []
    for proc in procs:
        out, err = proc.communicate(timeout=60 * SLOW)
        assert proc.returncode == 0, err
        printed.append(out.strip())
    records = json.loads(path.read_text())["sessions"]
    stored = [r["championId"] for r in records]
    assert len(stored) == 20
    assert sorted(stored) == sorted(printed)
    assert len(set(stored)) == 20
    assert len({r["internalId"] for r in records}) == 20


def start_holder(lock_path: Path) -> subprocess.Popen[str]:
    holder = python(HOLDER, str(lock_path))
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_lock_left_by_a_killed_process_is_recovered(tmp_path: Path) -> None:
    lock_path = tmp_path / "sessions.json.lock"
    holder = start_holder(lock_path)
    with pytest.raises(LockTimeout):
        FileLock(lock_path, timeout=0.2).acquire()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    with FileLock(lock_path, timeout=5) as lock:
        assert lock.held
    assert time.monotonic() - started < 1.0 * SLOW


def test_timeout_names_the_holder(tmp_path: Path) -> None:
    lock_path = tmp_path / "x.lock"
    holder = start_holder(lock_path)
    try:
        with pytest.raises(LockTimeout, match=f"pid {holder.pid}"):
            FileLock(lock_path, timeout=0.2).acquire()
    finally:
        holder.kill()
        holder.wait()


def test_a_process_cannot_release_someone_elses_lock(tmp_path: Path) -> None:
    lock_path = tmp_path / "x.lock"
    holder = start_holder(lock_path)
    try:
        stranger = FileLock(lock_path, timeout=0.1)
        stranger.release()  # never acquired: must not free the holder's lock
        with pytest.raises(LockTimeout):
            FileLock(lock_path, timeout=0.2).acquire()
        assert json.loads(lock_path.read_text())["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_owner_clears_its_own_entry_on_release(tmp_path: Path) -> None:
    lock_path = tmp_path / "x.lock"
    with FileLock(lock_path) as lock:
        assert json.loads(lock_path.read_text())["token"] == lock.token
    assert lock_path.read_text() == ""
