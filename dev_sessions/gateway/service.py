"""``gateway install | uninstall | status``: run the gateway as a user service (systemd or launchd).

The service runs this interpreter's ``-m dev_sessions gateway`` with the chosen port, and the
non-secret settings of the installing shell (PATH, the DEV_SESSIONS_* knobs, CLAUDE_CONFIG_DIR,
CODEX_HOME), so that it finds tmux and the agents as the user does. Secrets are never written into
the unit: the gateway keeps its own token file, and the agents their own logins.

Linux: ``~/.config/systemd/user/dev-sessions-gateway.service`` (``$XDG_CONFIG_HOME`` respected), loaded
with ``systemctl --user``; without ``loginctl enable-linger`` it only runs while the user is logged in.
macOS: ``~/Library/LaunchAgents/dev.dev-sessions.gateway.plist``, written with ``plistlib``, loaded
with ``launchctl``.
"""

from __future__ import annotations

import itertools
import os
import plistlib
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dev_sessions.config import Settings
from dev_sessions.errors import UsageError

UNIT = "dev-sessions-gateway.service"
LABEL = "dev.dev-sessions.gateway"
KEPT_ENV = (
    "PATH",
    "LANG",
    "DEV_SESSIONS_HOME",
    "DEV_SESSIONS_TMUX_SOCKET",
    "DEV_SESSIONS_CLAUDE_BIN",
    "DEV_SESSIONS_CODEX_BIN",
    "DEV_SESSIONS_DOCKER_CLAUDE",
    "DEV_SESSIONS_GATEWAY_ROOTS",
    "CLAUDE_CONFIG_DIR",
    "CODEX_HOME",
)


def service_argv(port: int, binds: Sequence[str] = (), python: str | None = None) -> list[str]:
    argv = [python or sys.executable, "-m", "dev_sessions", "gateway", "--port", str(port)]
    for address in binds:
        argv += ["--bind", address]
    return argv


def service_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: environ[k] for k in KEPT_ENV if environ.get(k)}


def _check_plain(argv: Sequence[str], environment: Mapping[str, str]) -> None:
    """Refuse control characters: a line break in a value would start a directive of its own in a unit
    file (``Environment=X=a`` + newline + ``ExecStartPre=...``), and a plist cannot hold them at all."""
    for arg in argv:
        if not arg.isprintable():
            raise UsageError(f"{arg!r}: a control character; a service file cannot carry it")
    for key, value in environment.items():
        if not (key.isprintable() and value.isprintable()):
            raise UsageError(
                f"${key}: its value has a control character (a line break?); fix it, then install"
            )


def systemd_quote(value: str, *, dollars: bool = True) -> str:
    """One word of a systemd command line or assignment, quoted as systemd reads it back.

    ``%`` starts a specifier everywhere; ``$`` starts a variable in command arguments only (not in
    the executable's path, nor in Environment= values).
    """
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if dollars:
        escaped = escaped.replace("$", "$$")
    return f'"{escaped}"'


def render_systemd(argv: Sequence[str], environment: Mapping[str, str]) -> str:
    _check_plain(argv, environment)
    if any(c in argv[0] for c in '"\\'):
        raise UsageError(f"{argv[0]}: systemd cannot run an executable whose path has quotes or backslashes")
    command = [systemd_quote(argv[0], dollars=False), *(systemd_quote(arg) for arg in argv[1:])]
    lines = [
        "[Unit]",
        "Description=dev-sessions gateway (dev-sessions over HTTP for agents in containers)",
        "After=network.target",
        "",
        "[Service]",
        "Type=simple",
        "ExecStart=" + " ".join(command),
        *(f"Environment={systemd_quote(f'{k}={v}', dollars=False)}" for k, v in sorted(environment.items())),
        "Restart=on-failure",
        "RestartSec=2",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


def render_launchd(argv: Sequence[str], environment: Mapping[str, str], log_path: Path) -> bytes:
    _check_plain([*argv, str(log_path)], environment)
    plist = {
        "Label": LABEL,
        "ProgramArguments": list(argv),
        "EnvironmentVariables": dict(environment),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "StandardOutPath": str(log_path),
        "StandardErrorPath": str(log_path),
        "ProcessType": "Background",
    }
    return plistlib.dumps(plist, fmt=plistlib.FMT_XML, sort_keys=True)


@dataclass
class Location:
    kind: str  # "systemd" or "launchd"
    path: Path


def location(environ: Mapping[str, str], platform: str | None = None) -> Location:
    home = Path(environ.get("HOME") or Path.home())
    if (platform or sys.platform) == "darwin":
        return Location("launchd", home / "Library" / "LaunchAgents" / f"{LABEL}.plist")
    config = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    return Location("systemd", config / "systemd" / "user" / UNIT)


@dataclass
class Report:
    path: Path
    kind: str
    loaded: bool = False
    notes: list[str] = field(default_factory=list)


def _run(argv: Sequence[str]) -> tuple[bool, str]:
    if shutil.which(argv[0]) is None:
        return False, f"{argv[0]} not found"
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    return proc.returncode == 0, (proc.stderr or proc.stdout).strip()


def install(port: int, binds: Sequence[str], environ: Mapping[str, str], *, start: bool = True) -> Report:
    where = location(environ)
    argv = service_argv(port, binds)
    env = service_env(environ)
    where.path.parent.mkdir(parents=True, exist_ok=True)
    report = Report(where.path, where.kind)
    if where.kind == "launchd":
        log_path = Path(environ.get("HOME") or Path.home()) / "Library" / "Logs" / "dev-sessions-gateway.log"
        where.path.write_bytes(render_launchd(argv, env, log_path))
        if start:
            _run(["launchctl", "bootout", f"gui/{os.getuid()}", str(where.path)])
            report.loaded, detail = _run(["launchctl", "bootstrap", f"gui/{os.getuid()}", str(where.path)])
            if not report.loaded:
                report.notes.append(f"load it with: launchctl bootstrap gui/$(id -u) {where.path} ({detail})")
        return report
    where.path.write_text(render_systemd(argv, env))
    if start:
        ok, detail = _run(["systemctl", "--user", "daemon-reload"])
        if ok:
            report.loaded, detail = _run(["systemctl", "--user", "enable", "--now", UNIT])
        if not report.loaded:
            command = f"systemctl --user daemon-reload && systemctl --user enable --now {UNIT}"
            report.notes.append(f"start it with: {command} ({detail})")
    report.notes.append("to keep it running while you are logged out: loginctl enable-linger $USER")
    return report


def uninstall(environ: Mapping[str, str]) -> Report | None:
    where = location(environ)
    if not where.path.exists():
        return None
    report = Report(where.path, where.kind)
    if where.kind == "launchd":
        _run(["launchctl", "bootout", f"gui/{os.getuid()}", str(where.path)])
    else:
        _run(["systemctl", "--user", "disable", "--now", UNIT])
    where.path.unlink()
    if where.kind == "systemd":
        _run(["systemctl", "--user", "daemon-reload"])
    return report


def installed_port(path: Path, kind: str) -> int | None:
    """The port an installed service was given."""
    if kind == "launchd":
        argv = plistlib.loads(path.read_bytes()).get("ProgramArguments", [])
    else:
        match = re.search(r"^ExecStart=(.*)$", path.read_text(), re.MULTILINE)
        argv = re.findall(r'"((?:[^"\\]|\\.)*)"', match.group(1)) if match else []
    for flag, value in itertools.pairwise(argv):
        if flag == "--port" and str(value).isdigit():
            return int(value)
    return None


def status(environ: Mapping[str, str]) -> dict[str, object]:
    from dev_sessions.gateway.client import GatewayClient

    where = location(environ)
    info: dict[str, object] = {"kind": where.kind, "path": str(where.path), "installed": where.path.exists()}
    if not where.path.exists():
        return info
    port = installed_port(where.path, where.kind)
    info["port"] = port
    if where.kind == "systemd":
        ok, detail = _run(["systemctl", "--user", "is-active", UNIT])
        info["active"] = detail or ("active" if ok else "unknown")
    try:
        local = Settings.from_env({"DEV_SESSIONS_GATEWAY_URL": f"http://127.0.0.1:{port}"})
        health = GatewayClient(local).health()
        info["health"] = "ok" if health.get("ok") else "bad answer"
    except Exception as err:  # any failure to reach it is the answer to "does it answer?"
        info["health"] = f"no answer ({type(err).__name__})"
    return info
