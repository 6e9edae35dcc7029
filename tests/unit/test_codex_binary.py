"""Finding the codex binary, and knowing whether a recorded pid is still our app-server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dev_sessions.codex.daemon import AppServer, DaemonState, _triples, process_start, resolve_binary
from dev_sessions.errors import ToolMissing
from tests.conftest import eventually


def make_exec(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def npm_layout(root: Path, nested: bool = False) -> tuple[Path, Path]:
    modules = root / "node_modules"
    wrapper = make_exec(
        modules / "@openai" / "codex" / "bin" / "codex.js", "#!/usr/bin/env node\n// wrapper\n"
    )
    base = modules / "@openai" / "codex" / "node_modules" if nested else modules
    native = make_exec(base / "@openai" / "codex-linux-x64" / "vendor" / _triples()[0] / "bin" / "codex")
    bin_dir = modules / ".bin"
    bin_dir.mkdir()
    (bin_dir / "codex").symlink_to(wrapper)
    return bin_dir, native


@pytest.mark.skipif(sys.platform != "linux", reason="the layout uses the linux package name")
@pytest.mark.parametrize("nested", [False, True])
def test_npm_wrapper_resolves_to_the_native_binary(tmp_path: Path, nested: bool) -> None:
    bin_dir, native = npm_layout(tmp_path, nested)
    assert resolve_binary("codex", str(bin_dir)) == native.resolve()


def test_a_native_binary_is_used_as_it_is(tmp_path: Path) -> None:
    binary = make_exec(tmp_path / "bin" / "codex")
    assert resolve_binary("codex", str(tmp_path / "bin")) == binary.resolve()


def test_missing_binary_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ToolMissing, match="npm install -g @openai/codex"):
        resolve_binary("codex", str(tmp_path))


def test_wrapper_without_its_native_binary_says_so(tmp_path: Path) -> None:
    wrapper = make_exec(
        tmp_path / "node_modules" / "@openai" / "codex" / "bin" / "codex.js", "#!/usr/bin/env node\n"
    )
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "codex").symlink_to(wrapper)
    with pytest.raises(ToolMissing, match="native binary is missing"):
        resolve_binary("codex", str(tmp_path / "bin"))


def state_of(pid: int, binary: str, start: str | None) -> DaemonState:
    return DaemonState(
        pid=pid, port=1, url="ws://127.0.0.1:1", startedAt="", binary=binary, procStart=start or ""
    )


def test_a_recorded_pid_counts_only_while_it_is_the_same_process(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        exe = str(Path(f"/proc/{proc.pid}/exe").resolve()) if Path("/proc").exists() else "sleep"
        app = AppServer(tmp_path, "codex", os.environ)
        start = process_start(proc.pid)
        assert start
        assert app.running(state_of(proc.pid, exe, start)) is not None
        # Same pid, another start time: a reused pid, never ours.
        assert app.running(state_of(proc.pid, exe, str(int(start) + 1) if start.isdigit() else "x")) is None
        # Same pid and start, another binary.
        if Path("/proc").exists():
            assert app.running(state_of(proc.pid, "/usr/bin/not-codex", start)) is None
    finally:
        proc.kill()
        proc.wait()
    assert app.running(state_of(proc.pid, exe, start)) is None


def test_a_zombie_is_not_alive() -> None:
    proc = subprocess.Popen(["true"])  # exits at once; unreaped, it stays a zombie
    eventually(lambda: ") Z" in Path(f"/proc/{proc.pid}/stat").read_text(), timeout=5, interval=0.01)
    assert process_start(proc.pid) is None
    proc.wait()
