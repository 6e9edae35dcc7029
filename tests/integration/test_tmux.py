"""The tmux adapter against a real tmux server on a private socket."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from libtmux.server import Server

from dev_sessions import launch
from dev_sessions.tmux import Tmux
from tests.conftest import eventually

NASTY = "quotes \"double\" 'single' $HOME `date` \\back\\slash C-c Enter Escape ünïcödé 🚀 ;exit\n" * 3


@pytest.fixture
def tmux(tmux_server: Server) -> Tmux:
    return Tmux(tmux_server.socket_name)


def test_new_session_runs_the_command_directly_with_exactly_the_launch_environment(
    tmux: Tmux, tmp_path: Path
) -> None:
    out = tmp_path / "env.json"
    env = {
        "PLAIN": "x", "SPACES": "a b  c", "QUOTES": 'it\'s "q"', "MULTI": "line1\nline2", "EQ": "a=b=c",
        "FORMATS": "#(touch pwned)#{session_name}#[fg=red]##", "SEMI": "x;", "LONE": ";", "DASH": "-e",
    }  # fmt: skip
    script = (
        f"import json, os; json.dump(dict(os.environ), open({str(out)!r}, 'w')); import time; time.sleep(60)"
    )
    command, spec = launch.prepare(tmp_path / "spool", [sys.executable, "-c", script], env)
    tmux.new_session("dev-envtest", cwd=str(tmp_path), command=command)
    eventually(out.exists)
    seen = json.loads(eventually(lambda: out.read_text() or None))  # type: ignore[arg-type]
    assert {k: v for k, v in seen.items() if k not in ("LC_CTYPE",)} == env  # nothing added, none lost
    assert not spec.exists()  # the launch file is read once and removed
    assert not (tmp_path / "pwned").exists()
    pane = tmux.panes()["dev-envtest"]
    assert pane.command.startswith("python")  # the agent itself, no shell in between
    assert not pane.dead


def test_dead_pane_stays_with_its_exit_status(tmux: Tmux, tmp_path: Path) -> None:
    tmux.new_session("dev-dies", cwd=str(tmp_path), command=["sh", "-c", "echo bye now; exit 7"])
    # tmux marks the pane dead a moment before it records the exit status: wait for both.
    pane = eventually(
        lambda: (p := tmux.panes().get("dev-dies")) and p.dead and p.dead_status is not None and p
    )
    assert pane.dead_status == 7  # type: ignore[union-attr]
    assert "bye now" in tmux.scrollback("dev-dies")


def test_names_are_matched_exactly(tmux: Tmux, tmp_path: Path) -> None:
    tmux.new_session("dev-fizz-top", cwd=str(tmp_path), command=["sleep", "60"])
    assert tmux.snapshot("dev-fizz") is None
    assert not tmux.exists("dev-fizz")
    assert not tmux.kill("dev-fizz")
    assert tmux.exists("dev-fizz-top")


def test_queries_on_a_server_that_is_not_running(tmux: Tmux) -> None:
    assert tmux.panes() == {}
    assert tmux.snapshot("dev-none") is None


def test_panes_of_all_sessions_in_one_call(
    tmux: Tmux, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(5):
        tmux.new_session(f"dev-s{n}", cwd=str(tmp_path), command=["sleep", "60"])
    calls = []
    real = subprocess.run

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return real(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(subprocess, "run", counting)
    assert {f"dev-s{n}" for n in range(5)} <= set(tmux.panes())
    assert len(calls) == 1


def test_paste_is_byte_exact_for_nasty_and_large_text(tmux: Tmux, tmp_path: Path) -> None:
    out = tmp_path / "received"
    text = NASTY + "x" * (1024 * 1024) + "\nend"
    size = len(text.encode())
    # A raw terminal passes bytes through untouched, and `head` asks for no bracketed paste.
    ready = tmp_path / "raw"
    command = f"stty raw -echo && touch {ready} && head -c {size} > {out}; sleep 60"
    tmux.new_session("dev-paste", cwd=str(tmp_path), command=["sh", "-c", command])
    eventually(ready.exists)
    tmux.paste("dev-paste", text.encode(), enter=False)
    eventually(lambda: out.exists() and out.stat().st_size == size, timeout=20)
    assert out.read_bytes() == text.encode()


def test_a_server_with_no_session_counts_as_no_server(tmux: Tmux) -> None:
    from dev_sessions.tmux import _NO_SERVER, _matches

    # A live server with no session (as while twenty creates race to start it) refuses list-panes -a.
    answer = tmux.run_all([["start-server"], ["list-panes", "-a"]], check=False)
    assert answer.returncode == 1 and "no current target" in answer.stderr
    assert _matches(answer.stderr, _NO_SERVER)
    assert tmux.panes() == {}  # whether it still lives, or is exiting as asked (no session keeps it)
    assert _matches("server exited unexpectedly", _NO_SERVER) and _matches("lost server", _NO_SERVER)
