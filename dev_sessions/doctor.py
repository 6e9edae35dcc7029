"""Health checks behind ``doctor``: tmux, the agent binaries, Claude's set-up, the store."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Literal

from dev_sessions import ids
from dev_sessions.compat import TESTED, placement
from dev_sessions.config import Settings
from dev_sessions.errors import DevSessionsError
from dev_sessions.lock import FileLock
from dev_sessions.store import SessionStore
from dev_sessions.tmux import Tmux

Level = Literal["ok", "warn", "fail"]
MIN_TMUX = (3, 2)


@dataclass(frozen=True)
class Check:
    level: Level
    name: str
    message: str


def _version_of(binary: str) -> str | None:
    try:
        proc = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0] if proc.returncode == 0 and text else None


def check_tmux(settings: Settings) -> list[Check]:
    if not Tmux.available():
        return [
            Check(
                "fail",
                "tmux",
                "not installed; install tmux 3.2 or newer (apt install tmux / brew install tmux)",
            )
        ]
    tmux = Tmux(settings.tmux_socket)
    version = tmux.version()
    match = re.search(r"(\d+)\.(\d+)", version)
    if match and (int(match.group(1)), int(match.group(2))) < MIN_TMUX:
        return [
            Check("fail", "tmux", f"{version} is too old; dev-sessions needs 3.2 or newer (new-session -e)")
        ]
    socket = f"socket {settings.tmux_socket}" if settings.tmux_socket else "default server"
    return [Check("ok", "tmux", f"{version} ({socket})")]


def check_agent(name: str, binary: str, env_var: str, install: str, required: bool) -> Check:
    path = shutil.which(binary)
    if path is None:
        level: Level = "fail" if required else "warn"
        return Check(level, name, f"{binary} not found; {install}, or set {env_var}")
    version = _version_of(path)
    if version is None:
        return Check("fail", name, f"{path} does not answer --version; reinstall it")
    low, high = TESTED[name]
    where = placement(name, version)
    if where == "tested":
        return Check("ok", name, f"{version} ({path}; tested: {low} to {high})")
    said = "not a version number" if where is None else f"{where} than the versions tested ({low} to {high})"
    return Check(
        "warn", name, f"{version} ({path}): {said}; check it with `dev-sessions selftest --cli {name}`"
    )


def check_claude_setup(settings: Settings) -> Check:
    config = settings.claude_config_dir
    explicit = bool(settings.environ.get("CLAUDE_CONFIG_DIR"))
    state_file = config / ".claude.json" if explicit else config.parent / ".claude.json"
    try:
        state = json.loads(state_file.read_text())
    except FileNotFoundError:
        return Check("warn", "claude setup", f"{state_file} missing: run `claude` once and log in")
    except (OSError, ValueError) as err:
        return Check("warn", "claude setup", f"{state_file}: unreadable ({err})")
    if not state.get("hasCompletedOnboarding"):
        return Check("warn", "claude setup", "onboarding not finished: run `claude` once and log in")
    return Check("ok", "claude setup", f"onboarded ({state_file})")


def check_store(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    store = SessionStore(settings.store_path, lock_timeout=2.0)
    try:
        doc = store.read()
    except DevSessionsError as err:
        return [Check("fail", "store", str(err))]
    message = f"{settings.store_path}: {len(doc.sessions)} session(s)"
    if doc.unusable:
        checks.append(
            Check(
                "warn",
                "store",
                f"{message}; {len(doc.unusable)} record(s) this version cannot use, kept as they are",
            )
        )
    else:
        checks.append(Check("ok", "store", message))
    try:
        with FileLock(store.lock_path, timeout=2.0):
            pass
    except DevSessionsError as err:
        checks.append(Check("fail", "store lock", str(err)))
    except OSError as err:
        checks.append(Check("fail", "store lock", f"{store.lock_path}: {err.strerror}"))
    if Tmux.available():
        live = {name for name in Tmux(settings.tmux_socket).panes() if ids.from_tmux_name(name)}
        known = {ids.tmux_name(s.id) for s in doc.sessions.values() if s.cli == "claude"}
        gone = sorted(
            s.id for s in doc.sessions.values() if s.cli == "claude" and ids.tmux_name(s.id) not in live
        )
        if gone:
            checks.append(
                Check("warn", "sessions", f"no tmux session for {', '.join(gone)}: `dev-sessions kill` them")
            )
        strays = sorted(live - known)
        if strays:
            checks.append(
                Check("warn", "tmux", f"tmux sessions with no record here: {', '.join(strays)} "
                      "(another DEV_SESSIONS_HOME, or a lost store)")
            )  # fmt: skip
    return checks


def check_gateway(settings: Settings) -> list[Check]:
    """In a sandbox only the gateway matters: does it answer, and does it take our token?"""
    from dev_sessions.gateway.client import GatewayClient

    client = GatewayClient(settings)
    try:
        health = client.health()
    except DevSessionsError as err:
        return [Check("fail", "gateway", str(err))]
    checks = [Check("ok", "gateway", f"{client.url} answers (dev-sessions {health.get('version')})")]
    try:
        client.call("sessions", "list_sessions", {})
    except DevSessionsError as err:
        checks.append(Check("fail", "gateway token", str(err)))
    else:
        checks.append(Check("ok", "gateway token", "accepted"))
    if not settings.host_path:
        checks.append(Check("warn", "paths", "HOST_PATH is not set: sessions cannot be created from here"))
    return checks


def run_checks(settings: Settings) -> list[Check]:
    if settings.sandbox:
        return check_gateway(settings)
    checks = check_tmux(settings)
    checks.append(
        check_agent(
            "claude", settings.claude_bin, "DEV_SESSIONS_CLAUDE_BIN",
            "install it with `npm install -g @anthropic-ai/claude-code`", required=True,
        )
    )  # fmt: skip
    checks.append(check_claude_setup(settings))
    checks.append(
        check_agent(
            "codex", settings.codex_bin, "DEV_SESSIONS_CODEX_BIN",
            "install it with `npm install -g @openai/codex` (only needed for --cli codex)", required=False,
        )
    )  # fmt: skip
    checks += check_store(settings)
    checks += check_codex_daemon(settings)
    checks.append(check_warm(settings))
    return checks


def check_warm(settings: Settings) -> Check:
    """The warm command server of this install (issue 17): on or off, running or why not (nothing is
    started)."""
    import os
    import time

    from dev_sessions.cli import warm
    from dev_sessions.cli.warm_server import running

    name = "warm commands"
    if not warm.enabled(settings.environ):
        return Check("ok", name, f"off ({warm.ENV}=0): each command loads Python's libraries itself")
    home = str(settings.home)
    key = warm.key(warm.identity(home))
    path = warm.socket_path(home, settings.environ, key)
    try:
        ago: float | None = time.time() - os.stat(warm.failed_path(home, key)).st_mtime
    except OSError:
        ago = None
    pids = running(settings.home, key) if os.path.exists(path) else []
    if pids:
        return Check("ok", name, f"pid {pids[0]} on {path}")
    if ago is not None and ago < warm.FAILED_FOR:
        log = settings.home / "serve" / "cli.log"
        detail = f"its server could not start {ago:.0f} s ago (see {log}); commands run without it"
        return Check("warn", name, detail)
    return Check("ok", name, "not running (the next quick command starts it)")


def check_codex_daemon(settings: Settings) -> list[Check]:
    """The shared app-server and the bridge, if Codex sessions are in use (nothing is started)."""
    from dev_sessions.codex.daemon import AppServer
    from dev_sessions.codex.link import BridgeLink

    app = AppServer(settings.home, settings.codex_bin, settings.environ)
    state = app.running()
    if state is None:
        running = "not running (the next Codex command starts it)"
    elif app.answers(state):
        running = f"pid {state.pid} on {state.url}"
    else:
        detail = f"pid {state.pid} runs but {state.url}/readyz does not answer"
        return [Check("fail", "codex app-server", detail)]
    link = BridgeLink(settings, settings.environ)
    bridge = f"; bridge on {link.path}" if link.running() else ""
    return [Check("ok", "codex app-server", running + bridge)]
