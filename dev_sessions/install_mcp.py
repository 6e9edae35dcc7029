"""``install-mcp`` / ``uninstall-mcp``: register ``dev-sessions mcp`` with Claude Code and Codex.

How each agent keeps its MCP servers (checked with Claude Code 2.1.197 and 2.1.332, Codex 0.169.0 and
0.171.0; see ``docs/mcp.md``):

* Claude Code: ``claude mcp add-json --scope user|local NAME JSON`` and ``claude mcp remove --scope ...``
  work offline. User scope is ``mcpServers`` at the top of ``.claude.json`` (``$CLAUDE_CONFIG_DIR`` or
  ``~``), local scope is ``projects[<git root or directory>].mcpServers`` in the same file. Claude
  rewrites the whole file when it saves it (two-space JSON, plus its own bookkeeping keys) and keeps
  its own backups, so we let Claude write it: other servers keep their values, not their bytes.
  ``add`` refuses a name that exists, so an update is ``remove`` then ``add-json``. Claude 2.1.197
  given a corrupt ``.claude.json`` replaces it with a fresh one (the old one only in ``backups/``):
  we read the file first and stop on anything but a JSON object.
* Codex: ``$CODEX_HOME/config.toml`` (``~/.codex``), table ``[mcp_servers.NAME]``; a project's
  ``.codex/config.toml`` is read too, only when the project is trusted. ``codex mcp add`` writes only
  the user file (and leaves ``tmp/arg0-linux`` behind when pointed elsewhere) and cannot set
  ``env_vars``, which we need: Codex starts MCP servers with a short list of variables (HOME, PATH,
  ...), so ``DEV_SESSIONS_HOME`` and the rest must be named to reach our server. So we edit the file
  here, as text: only our table's lines change, everything else stays byte for byte, and the result
  is parsed again and must equal the old configuration with only our entry changed.

Everything runs with argument lists, never a shell. Errors come back per agent as a ``Registered``
with ``action="failed"``, so that one agent's trouble does not stop the other.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson

from dev_sessions.config import Settings
from dev_sessions.errors import AgentConfigError, DevSessionsError, UsageError
from dev_sessions.files import write_atomic

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

NAME = "dev-sessions"
AGENTS = ("claude", "codex")
Scope = Literal["global", "local"]
Action = Literal["installed", "updated", "unchanged", "removed", "absent", "failed"]

# What dev-sessions reads from its environment (config.Settings and the CLI), forwarded by name to
# the server Codex starts (Claude Code passes its whole environment on by itself).
FORWARDED_ENV = (
    "DEV_SESSIONS_HOME",
    "DEV_SESSIONS_AGENT",
    "DEV_SESSIONS_ID",
    "DEV_SESSIONS_TMUX_SOCKET",
    "DEV_SESSIONS_CLAUDE_BIN",
    "DEV_SESSIONS_CODEX_BIN",
    "DEV_SESSIONS_SANDBOX",
    "DEV_SESSIONS_GATEWAY_URL",
    "DEV_SESSIONS_GATEWAY_TOKEN",
    "DEV_SESSIONS_GATEWAY_ROOTS",
    "DEV_SESSIONS_SSH_CONFIG",
    "DEV_SESSIONS_WORKTREES",
    "DEV_SESSIONS_DEBUG",
    "CLAUDE_CONFIG_DIR",
    "CODEX_HOME",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "TMUX_TMPDIR",
)
AGENT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Server:
    """How an agent starts our server: an executable and its arguments, passed literally."""

    command: str
    args: tuple[str, ...]
    # Names of variables Codex must pass on (it starts MCP servers with a short fixed environment).
    env_vars: tuple[str, ...] = FORWARDED_ENV

    def claude_json(self) -> dict[str, object]:
        return {"type": "stdio", "command": self.command, "args": list(self.args)}

    def codex_table(self) -> dict[str, object]:
        return {"command": self.command, "args": list(self.args), "env_vars": list(self.env_vars)}

    def __str__(self) -> str:
        return " ".join([self.command, *self.args])


@dataclass(frozen=True)
class Registered:
    """What was done for one agent: ``where`` names the file (and scope), ``detail`` says why it failed."""

    agent: str
    action: Action
    where: str
    detail: str = ""

    @property
    def line(self) -> str:
        if self.action == "failed":
            return f"{self.agent}: {self.detail}"
        if self.action == "absent":
            return f"{self.agent}: {NAME} was not registered in {self.where}; nothing to do"
        verb = {"removed": "removed from"}.get(self.action, f"{self.action} in")
        extra = f": {self.detail}" if self.detail else ""
        return f"{self.agent}: {NAME} {verb} {self.where}{extra}"


def server_command(argv0: str | None = None, python: str | None = None) -> Server:
    """The running dev-sessions executable (absolute, links kept: an upgrade keeps the path), or
    ``python -m dev_sessions`` when this process was not started through one."""
    first = Path(sys.argv[0] if argv0 is None else argv0)
    if first.name == "dev-sessions" and first.is_file() and os.access(first, os.X_OK):
        return Server(os.path.abspath(first), ("mcp",))
    interpreter = python or sys.executable
    # A checkout run as `python -m` finds its package through PYTHONPATH: Codex must pass it on.
    return Server(interpreter, ("-m", "dev_sessions", "mcp"), (*FORWARDED_ENV, "PYTHONPATH"))


def detect(settings: Settings) -> list[str]:
    """The agents whose binary is on PATH."""
    path = settings.environ.get("PATH")
    return [
        agent
        for agent, binary in (("claude", settings.claude_bin), ("codex", settings.codex_bin))
        if shutil.which(binary, path=path)
    ]


def install(
    agents: Iterable[str], scope: Scope, settings: Settings, cwd: Path, server: Server | None = None
) -> list[Registered]:
    wanted = server or server_command()
    return [_each(agent, lambda a: _install(a, scope, settings, cwd, wanted)) for agent in agents]


def uninstall(agents: Iterable[str], scope: Scope, settings: Settings, cwd: Path) -> list[Registered]:
    return [_each(agent, lambda a: _uninstall(a, scope, settings, cwd)) for agent in agents]


def _each(agent: str, work: Callable[[str], Registered]) -> Registered:
    try:
        return work(agent)
    except DevSessionsError as err:
        return Registered(agent, "failed", "", str(err))


def _install(agent: str, scope: Scope, settings: Settings, cwd: Path, server: Server) -> Registered:
    if agent == "claude":
        return Claude(settings, cwd).install(scope, server)
    if agent == "codex":
        return codex_install(codex_config(scope, settings, cwd), scope, server)
    raise UsageError(f"install-mcp: unknown agent {agent!r}")


def _uninstall(agent: str, scope: Scope, settings: Settings, cwd: Path) -> Registered:
    if agent == "claude":
        return Claude(settings, cwd).uninstall(scope)
    if agent == "codex":
        return codex_uninstall(codex_config(scope, settings, cwd), scope)
    raise UsageError(f"uninstall-mcp: unknown agent {agent!r}")


# --- Claude Code ------------------------------------------------------------------------------


class Claude:
    """Claude Code's own ``claude mcp`` commands, with ``.claude.json`` read first (never written)."""

    def __init__(self, settings: Settings, cwd: Path) -> None:
        self.settings = settings
        self.cwd = cwd
        environ = settings.environ
        explicit = environ.get("CLAUDE_CONFIG_DIR")
        self.config = (Path(explicit).expanduser() if explicit else settings.user_home) / ".claude.json"

    def _scope(self, scope: Scope) -> str:
        return "user" if scope == "global" else "local"

    def _where(self, scope: Scope) -> str:
        if scope == "global":
            return f"{self.config} (user scope)"
        return f"{self.config} (local scope, project {project_key(self.cwd)})"

    def _read(self) -> dict[str, object]:
        try:
            data = self.config.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as err:
            raise AgentConfigError(
                detail=f"{self.config}: cannot read it ({err.strerror}); nothing was changed"
            ) from err
        try:
            parsed = orjson.loads(data) if data.strip() else {}
        except orjson.JSONDecodeError as err:
            raise AgentConfigError(
                detail=f"{self.config}: not valid JSON ({err}); fix or move it, then run this again "
                "(nothing was changed)"
            ) from err
        if not isinstance(parsed, dict):
            raise AgentConfigError(detail=f"{self.config}: not a JSON object; nothing was changed")
        return parsed

    def current(self, scope: Scope) -> object:
        """Our entry in this scope as Claude keeps it, or None."""
        config = self._read()
        holder: object = config
        if scope == "local":
            projects = config.get("projects")
            holder = projects.get(str(project_key(self.cwd))) if isinstance(projects, dict) else None
        servers = holder.get("mcpServers") if isinstance(holder, dict) else None
        return servers.get(NAME) if isinstance(servers, dict) else None

    def install(self, scope: Scope, server: Server) -> Registered:
        binary = self._binary()
        before = self.current(scope)
        wanted = server.claude_json()
        if isinstance(before, dict) and _same_claude_entry(before, wanted):
            return Registered("claude", "unchanged", self._where(scope), str(server))
        removed = self._remove(binary, scope)
        body = orjson.dumps(wanted).decode()
        self._run(binary, "mcp", "add-json", "--scope", self._scope(scope), NAME, body)
        return Registered("claude", "updated" if removed else "installed", self._where(scope), str(server))

    def uninstall(self, scope: Scope) -> Registered:
        binary = self._binary()
        self._read()  # a corrupt file: say so rather than let Claude replace it
        removed = self._remove(binary, scope)
        return Registered("claude", "removed" if removed else "absent", self._where(scope))

    def _remove(self, binary: str, scope: Scope) -> bool:
        """Remove our entry in this scope; False when there was none."""
        done = self._call(binary, "mcp", "remove", "--scope", self._scope(scope), NAME)
        if done.returncode == 0:
            return True
        said = (done.stderr + done.stdout).strip()
        if "No MCP server" in said or "not found" in said.lower():
            return False
        raise AgentConfigError(detail=f"`claude mcp remove` failed: {_first_line(said, done.returncode)}")

    def _binary(self) -> str:
        found = shutil.which(self.settings.claude_bin, path=self.settings.environ.get("PATH"))
        if not found:
            raise AgentConfigError(
                detail=f"`{self.settings.claude_bin}` not found on PATH; "
                "install Claude Code, or leave out --claude"
            )
        return found

    def _call(self, binary: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **self.settings.environ,
            # `claude mcp` needs nothing from the network; without these it tries outside hosts.
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
        try:
            return subprocess.run(
                [binary, *args],
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=AGENT_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise AgentConfigError(
                detail=f"`claude {' '.join(args[:2])}` did not finish in {AGENT_TIMEOUT:.0f} s"
            ) from err
        except OSError as err:
            raise AgentConfigError(detail=f"{binary}: cannot run it ({err.strerror})") from err

    def _run(self, binary: str, *args: str) -> None:
        done = self._call(binary, *args)
        if done.returncode != 0:
            said = (done.stderr + done.stdout).strip()
            raise AgentConfigError(
                detail=f"`claude {' '.join(args[:2])}` failed: {_first_line(said, done.returncode)}"
            )


def _same_claude_entry(have: Mapping[str, object], wanted: Mapping[str, object]) -> bool:
    # `claude mcp add` stores "env": {} and older entries may lack "type": both mean the same.
    normal = {k: v for k, v in have.items() if not (k == "env" and not v)}
    normal.setdefault("type", "stdio")
    return normal == dict(wanted)


def project_key(cwd: Path) -> Path:
    """The key Claude Code files a directory's local-scope settings under: its git root, else itself."""
    real = cwd.resolve()
    for directory in (real, *real.parents):
        if (directory / ".git").exists():
            return directory
    return real


def _first_line(text: str, code: int) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else f"exit status {code}"


# --- Codex ------------------------------------------------------------------------------------


def codex_config(scope: Scope, settings: Settings, cwd: Path) -> Path:
    if scope == "local":
        return cwd / ".codex" / "config.toml"
    return settings.codex_home / "config.toml"


def _codex_where(path: Path, scope: Scope) -> str:
    return f"{path} (read by Codex in a trusted project)" if scope == "local" else str(path)


def codex_install(path: Path, scope: Scope, server: Server) -> Registered:
    text, parsed = _read_toml(path)
    wanted = server.codex_table()
    have = _mcp_servers(parsed).get(NAME)
    if have == wanted:
        return Registered("codex", "unchanged", _codex_where(path, scope), str(server))
    block = _toml_block(wanted)
    lines = text.splitlines(keepends=True)
    spans = _our_tables(lines)
    if spans:
        # Our table is rewritten where it is; its sub-tables (all after it) go.
        (start, end), later = spans[0], spans[1:]
        kept = _drop(lines, later)
        new = [*kept[:start], block, *kept[end:]]
    else:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        separator = ["\n"] if lines and lines[-1].strip() else []
        new = lines + separator + [block]
    expected = dict(parsed)
    expected["mcp_servers"] = {**_mcp_servers(parsed), NAME: wanted}
    _write_checked(path, "".join(new), expected, scope)
    action: Action = "updated" if have is not None else "installed"
    return Registered("codex", action, _codex_where(path, scope), str(server))


def codex_uninstall(path: Path, scope: Scope) -> Registered:
    if not path.exists():
        return Registered("codex", "absent", _codex_where(path, scope))
    text, parsed = _read_toml(path)
    if NAME not in _mcp_servers(parsed):
        return Registered("codex", "absent", _codex_where(path, scope))
    lines = text.splitlines(keepends=True)
    spans = _our_tables(lines)
    expected = dict(parsed)
    servers = {k: v for k, v in _mcp_servers(parsed).items() if k != NAME}
    expected["mcp_servers"] = servers
    _write_checked(path, "".join(_drop(lines, spans)), expected, scope)
    return Registered("codex", "removed", _codex_where(path, scope))


def _read_toml(path: Path) -> tuple[str, dict[str, object]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "", {}
    except OSError as err:
        raise AgentConfigError(
            detail=f"{path}: cannot read it ({err.strerror}); nothing was changed"
        ) from err
    try:
        text = data.decode("utf-8")
        return text, tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise AgentConfigError(
            detail=f"{path}: not valid TOML ({err}); "
            "fix or move it, then run this again (nothing was changed)"
        ) from err


def _mcp_servers(parsed: Mapping[str, object]) -> dict[str, object]:
    servers = parsed.get("mcp_servers")
    return dict(servers) if isinstance(servers, dict) else {}


def _toml_block(table: Mapping[str, object]) -> str:
    out = [f"[mcp_servers.{NAME}]\n"]  # a bare key: letters, digits, - and _
    for key, value in table.items():
        out.append(f"{key} = {_toml_value(value)}\n")
    return "".join(out)


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        # JSON string escapes are valid TOML basic-string escapes, except \/ which orjson never writes.
        return orjson.dumps(value).decode()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def _header(line: str) -> tuple[str, ...] | None:
    """The key path of a table header line (``[a.b]`` or ``[[a.b]]``), or None for any other line."""
    stripped = line.strip()
    if not stripped.startswith("["):
        return None
    try:
        parsed: object = tomllib.loads(stripped)
    except tomllib.TOMLDecodeError:
        return None  # an array value continued on this line, not a header
    path: list[str] = []
    while isinstance(parsed, (dict, list)):
        if isinstance(parsed, list):
            parsed = parsed[-1] if parsed else None
            continue
        if len(parsed) != 1:
            break
        key, parsed = next(iter(parsed.items()))
        path.append(key)
    return tuple(path) if path else None


def _our_tables(lines: Sequence[str]) -> list[tuple[int, int]]:
    """Line spans ``[start, end)`` of ``[mcp_servers.dev-sessions]`` and its sub-tables, each up to
    the next header; the blank lines and comments just before that next header belong to it."""
    headers = [(i, h) for i, line in enumerate(lines) if (h := _header(line)) is not None]
    spans = []
    for n, (start, path) in enumerate(headers):
        if path[:2] != ("mcp_servers", NAME):
            continue
        end = headers[n + 1][0] if n + 1 < len(headers) else len(lines)
        while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
            end -= 1
        spans.append((start, end))
    return spans


def _drop(lines: Sequence[str], spans: Sequence[tuple[int, int]]) -> list[str]:
    """``lines`` without the spans, each with the blank lines that set it apart (those before it, or
    after it when it opens the file), so that removing what we appended gives the old text back."""
    gone: set[int] = set()
    for start, end in spans:
        first, last = start, end
        while first > 0 and not lines[first - 1].strip():
            first -= 1
        if first == 0:
            first = start
            while last < len(lines) and not lines[last].strip():
                last += 1
        gone.update(range(first, last))
    return [line for i, line in enumerate(lines) if i not in gone]


def _write_checked(path: Path, text: str, expected: dict[str, object], scope: Scope) -> None:
    """Write ``text`` only if it parses to exactly ``expected`` (else our entry was in a form we do
    not edit, such as an inline table or dotted keys)."""
    if not expected.get("mcp_servers"):
        expected.pop("mcp_servers", None)
    try:
        got = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        got = None
    if got is not None and not got.get("mcp_servers"):
        got.pop("mcp_servers", None)
    if got != expected:
        raise AgentConfigError(
            detail=f"{path}: mcp_servers.{NAME} is written in a form install-mcp does not edit (an inline "
            "table or dotted keys); change it by hand (nothing was changed)"
        )
    target = path.resolve() if path.is_symlink() else path  # a linked dotfile stays a link
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o600
    if not text.strip() and target.exists() and scope == "local":
        target.unlink()  # a project file that held only our entry
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, text.encode(), mode)
