"""Settings read from the environment, once: where state lives, which binaries to run, who "I" am.

``Settings.from_env`` is the one place our environment variables are read; everything else is handed
a ``Settings`` (and, where a child process inherits it, ``settings.environ``). The knobs (all optional):

``DEV_SESSIONS_HOME``            state directory (default ``~/.dev-sessions``)
``DEV_SESSIONS_TMUX_SOCKET``     tmux ``-L`` socket name (unset: the user's default tmux server)
``DEV_SESSIONS_CLAUDE_BIN``      the Claude Code binary (default ``claude``)
``DEV_SESSIONS_CODEX_BIN``       the Codex binary (default ``codex``)
``DEV_SESSIONS_DOCKER_CLAUDE``   the command that runs Claude Code in a container (``--mode docker``;
                                default ``clauded``)
``DEV_SESSIONS_READY_TIMEOUT``   seconds to wait for an agent's input box (default 30)
``DEV_SESSIONS_AGENT``           who "I" am when sending, reading or creating (else ``DEV_SESSIONS_ID``,
                                set inside every session we start; else ``user``)
``DEV_SESSIONS_BRIDGE_LINGER``   seconds the Codex bridge stays up without requests (default 600)
``DEV_SESSIONS_DELIVERER_LINGER`` seconds the message deliverer stays up with nothing to do (default 5)
``DEV_SESSIONS_SSH_CONFIG``      (remote hosts) an ssh client config file for ``ssh -F`` (default:
                                ssh's own, ``~/.ssh/config``)
``DEV_SESSIONS_SSH_CONNECT_TIMEOUT`` (remote hosts) seconds ssh waits for a host to answer (default 5)
``DEV_SESSIONS_SSH_PERSIST``     (remote hosts) seconds a shared ssh connection stays open after its
                                last command (default 300; 0: closed with the command)
``DEV_SESSIONS_SERVE_LINGER``    (on a remote host) seconds its warm call server stays up without calls
                                (default 600)
``DEV_SESSIONS_REMOTE_BIN``      (remote hosts) the dev-sessions command on a remote host (default
                                ``dev-sessions``; ``~/...`` is under the remote home)
``DEV_SESSIONS_GATEWAY_TOKEN``   the gateway's owner token (else ``$DEV_SESSIONS_HOME/gateway-token``)
``DEV_SESSIONS_GATEWAY_ROOTS``   directories the gateway serves, ``:``-separated (default: home)
``DEV_SESSIONS_SANDBOX``         ``1``: every command goes to the gateway on the host
``DEV_SESSIONS_GATEWAY_URL``     (sandbox) the gateway's URL (default ``http://host.docker.internal:6767``)
``CONTAINER_WORKSPACE`` / ``HOST_PATH`` (sandbox) the workspace in the container, and the host
                                directory mounted there
``DEV_SESSIONS_WORKTREES``       where ``create --worktree`` makes worktrees (default: ``.worktrees``
                                beside the repository's root)
``DEV_SESSIONS_MESSAGES_URL``    where messages live: unset or ``sqlite:``, the local file
                                ``$DEV_SESSIONS_HOME/messages.db``; ``postgresql://...``, a PostgreSQL
                                server shared by several machines (libpq's URL: ``sslmode``,
                                ``PGPASSFILE``, ``service=`` work; needs libpq: ``dev-sessions[postgres]``
                                or the system's)
``DEV_SESSIONS_MACHINE``         this machine's name among those sharing the store (default: the host
                                name); a session of another machine is ``name@machine``
``DEV_SESSIONS_MESSAGES_RETENTION`` how long messages are kept (an age like ``30d``; unset: for ever):
                                older ones are pruned at most once an hour (pinned ones are kept)
``DEV_SESSIONS_DEBUG``           ``1`` shows tracebacks

Two settings may also come from ``$DEV_SESSIONS_HOME/config.json`` (a JSON object, keys named as the
variables), read only when the variable is unset: ``DEV_SESSIONS_MESSAGES_URL``, so that every command
of a machine uses the team's server without exporting it in each shell, and
``DEV_SESSIONS_MESSAGES_RETENTION``.

The same file's ``webhooks`` section (a list) says which HTTP endpoints the deliverer tells of
messages (:mod:`dev_sessions.messaging.webhooks`); each entry is a :class:`Webhook`::

    {"webhooks": [{"url": "https://example.com/hook", "events": ["dm", "mention"],
                   "agents": ["boss"], "secret": "...", "timeout": 5, "retries": 4}]}

``events`` (default all): ``dm``, ``space``, ``mention`` (an ``@name`` in a body), ``urgent``;
``agents`` (optional): only messages to them (or mentioning them); ``secret`` (optional): the key of
the HMAC-SHA256 signature header. An entry that is not right is left out and said by
``webhooks status`` (``Settings.webhooks_problem``), never with its secret.

Not ours, read to know which agent session a command runs in (``Settings.holder``: who holds an
outside agent's name): ``DEV_SESSIONS_ID``, else Claude Code's ``CLAUDE_CODE_SESSION_ID``, else
Codex's ``CODEX_THREAD_ID``, which each agent sets for the commands it runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

DEFAULT_GATEWAY_URL = "http://host.docker.internal:6767"
DEFAULT_WORKSPACE = "/workspace"
CONFIG_FILE = "config.json"
BROKEN_CONFIG = "broken-config:"
"""A setting's value when ``config.json`` is not a JSON object of strings: this, then the file's path."""


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


def _path(environ: Mapping[str, str], name: str) -> Path | None:
    raw = environ.get(name, "")
    return Path(raw).expanduser() if raw else None


WEBHOOK_EVENTS = ("dm", "space", "mention", "urgent")


class Webhook(NamedTuple):
    """One endpoint of the ``webhooks`` section of ``config.json``. Its secret is never shown."""

    url: str
    events: tuple[str, ...] = WEBHOOK_EVENTS
    agents: tuple[str, ...] | None = None
    """Only messages to (or mentioning) these agents; None: everyone's."""
    secret: str | None = None
    timeout: float = 5.0
    retries: int = 4

    def __repr__(self) -> str:
        signed = "signed" if self.secret else "unsigned"
        return f"Webhook({self.url.split('?')[0]!r}, events={list(self.events)}, {signed})"


_MISSING = object()


class _ConfigFile:
    """``$DEV_SESSIONS_HOME/config.json``, read once (one small read: its ``webhooks`` are always wanted)."""

    def __init__(self, home: str) -> None:
        self.path = Path(home).expanduser() / CONFIG_FILE
        self.values: object = _MISSING
        self.read = False

    def parsed(self) -> object:
        """The file's JSON (a dict when it is right), ``_MISSING`` when there is none, or
        ``BROKEN_CONFIG`` when it is not JSON."""
        if not self.read:
            self.read = True
            try:
                raw = self.path.read_bytes()
            except OSError:
                raw = None  # no file (the usual case): nothing set there
            if raw is not None:
                import json

                try:
                    self.values = json.loads(raw)
                except ValueError:
                    self.values = BROKEN_CONFIG
        return self.values

    def get(self, name: str) -> str | None:
        """``name`` in the file, if the file exists and sets it to a string."""
        if self.parsed() is _MISSING:
            return None
        value = self.values.get(name, "") if isinstance(self.values, dict) else None
        if not isinstance(value, str):
            # Not silently the default: the command that needs the value says what is wrong with the file.
            return f"{BROKEN_CONFIG}{self.path}"
        return value or None


def _webhooks(home: str, config: object) -> tuple[tuple[Webhook, ...], str | None]:
    """The usable entries of ``config.json``'s ``webhooks``, and what is wrong with the others."""
    if not isinstance(config, dict) or "webhooks" not in config:
        return (), None
    where = f"{Path(home).expanduser() / CONFIG_FILE}: webhooks"
    entries = config["webhooks"]
    if not isinstance(entries, list):
        return (), f"{where}: not a list"
    hooks: list[Webhook] = []
    problems: list[str] = []
    for n, entry in enumerate(entries):
        hook = _webhook(entry)
        if isinstance(hook, str):
            problems.append(f"[{n}]: {hook}")
        else:
            hooks.append(hook)
    return tuple(hooks), (f"{where}{'; '.join(problems)}" if problems else None)


def _webhook(entry: object) -> Webhook | str:
    """One entry as a :class:`Webhook`, or what is wrong with it (never its secret)."""
    from urllib.parse import urlsplit

    if not isinstance(entry, dict):
        return "not an object"
    unknown = set(entry) - {"url", "events", "agents", "secret", "timeout", "retries"}
    if unknown:
        return f"unknown key {sorted(unknown)[0]!r} (url, events, agents, secret, timeout, retries)"
    url = entry.get("url")
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        host = parts.hostname if parts else None
    except ValueError:
        parts, host = None, None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not host
        or any(ord(c) < 33 for c in str(url))
    ):
        return "url: an http:// or https:// URL"
    events = entry.get("events", list(WEBHOOK_EVENTS))
    if not isinstance(events, list) or not events or not all(e in WEBHOOK_EVENTS for e in events):
        return f"events: a list of {', '.join(WEBHOOK_EVENTS)}"
    agents = entry.get("agents")
    if agents is not None and not (isinstance(agents, list) and all(isinstance(a, str) for a in agents)):
        return "agents: a list of agent names"
    secret = entry.get("secret")
    if secret is not None and (not isinstance(secret, str) or not secret):
        return "secret: a string"
    timeout = entry.get("timeout", 5.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
        return "timeout: seconds, more than 0 and at most 60"
    retries = entry.get("retries", 4)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        return "retries: a whole number from 0 to 10"
    return Webhook(
        str(url), tuple(dict.fromkeys(events)), tuple(agents) if agents is not None else None, secret,
        float(timeout), retries,
    )  # fmt: skip


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "") not in ("", "0", "false")


class Settings(NamedTuple):
    """Every setting, read once (``from_env``). A named tuple, not a dataclass: every command makes this
    class, and a dataclass of twenty fields takes two milliseconds to make, a named tuple a tenth."""

    home: Path
    tmux_socket: str | None = None
    claude_bin: str = "claude"
    codex_bin: str = "codex"
    docker_claude: str = "clauded"
    ready_timeout: float = 30.0
    debug: bool = False
    agent: str | None = None
    """Who "I" am, as the environment says (None: nobody said, which is ``user`` locally)."""
    bridge_linger: float = 600.0
    deliverer_linger: float = 5.0
    ssh_config: Path | None = None
    ssh_connect_timeout: float = 5.0
    ssh_persist: float = 300.0
    remote_bin: str = "dev-sessions"
    serve_linger: float = 600.0
    gateway_token: str | None = None
    gateway_roots: tuple[Path, ...] = ()
    sandbox: bool = False
    gateway_url: str = DEFAULT_GATEWAY_URL
    container_workspace: Path = Path(DEFAULT_WORKSPACE)
    host_path: str | None = None
    worktrees: Path | None = None
    """Where ``create --worktree`` makes worktrees (None: ``.worktrees`` beside the repository)."""
    messages_url: str | None = None
    """Where messages live (None or ``sqlite:``: ``messages.db`` here; ``postgresql://...``: a server)."""
    messages_retention: str | None = None
    """How long messages are kept (an age as typed, checked where it is used); None: for ever."""
    webhooks: tuple[Webhook, ...] = ()
    """The endpoints told of messages (``config.json``'s ``webhooks``)."""
    webhooks_problem: str | None = None
    """What is wrong with the entries of ``webhooks`` that were left out (None: nothing)."""
    machine: str = "localhost"
    """This machine's name among those sharing a message store (``DEV_SESSIONS_MACHINE``, else the
    host name); checked where it is used (``machine_name``)."""
    environ: Mapping[str, str] = MappingProxyType({})
    """The environment these settings were read from: what a process we start inherits."""

    def __repr__(self) -> str:
        # Never the token, nor the environment it may also be in.
        return f"Settings(home={str(self.home)!r}, sandbox={self.sandbox}, agent={self.agent!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        home = env.get("DEV_SESSIONS_HOME") or str(Path(env.get("HOME") or Path.home()) / ".dev-sessions")
        config = _ConfigFile(home)
        webhooks, webhooks_problem = _webhooks(home, config.parsed())
        return cls(
            home=Path(home).expanduser(),
            tmux_socket=env.get("DEV_SESSIONS_TMUX_SOCKET") or None,
            claude_bin=env.get("DEV_SESSIONS_CLAUDE_BIN") or "claude",
            codex_bin=env.get("DEV_SESSIONS_CODEX_BIN") or "codex",
            docker_claude=env.get("DEV_SESSIONS_DOCKER_CLAUDE") or "clauded",
            ready_timeout=_float(env, "DEV_SESSIONS_READY_TIMEOUT", 30.0),
            debug=_flag(env, "DEV_SESSIONS_DEBUG"),
            agent=env.get("DEV_SESSIONS_AGENT") or env.get("DEV_SESSIONS_ID") or None,
            bridge_linger=_float(env, "DEV_SESSIONS_BRIDGE_LINGER", 600.0),
            deliverer_linger=_float(env, "DEV_SESSIONS_DELIVERER_LINGER", 5.0),
            ssh_config=_path(env, "DEV_SESSIONS_SSH_CONFIG"),
            ssh_connect_timeout=_float(env, "DEV_SESSIONS_SSH_CONNECT_TIMEOUT", 5.0),
            ssh_persist=_float(env, "DEV_SESSIONS_SSH_PERSIST", 300.0),
            remote_bin=env.get("DEV_SESSIONS_REMOTE_BIN") or "dev-sessions",
            serve_linger=_float(env, "DEV_SESSIONS_SERVE_LINGER", 600.0),
            gateway_token=env.get("DEV_SESSIONS_GATEWAY_TOKEN") or None,
            gateway_roots=tuple(
                Path(p) for p in (env.get("DEV_SESSIONS_GATEWAY_ROOTS") or "").split(":") if p
            ),
            sandbox=_flag(env, "DEV_SESSIONS_SANDBOX"),
            gateway_url=env.get("DEV_SESSIONS_GATEWAY_URL") or DEFAULT_GATEWAY_URL,
            container_workspace=Path(env.get("CONTAINER_WORKSPACE") or DEFAULT_WORKSPACE),
            host_path=env.get("HOST_PATH") or None,
            worktrees=_path(env, "DEV_SESSIONS_WORKTREES"),
            messages_url=env.get("DEV_SESSIONS_MESSAGES_URL") or config.get("DEV_SESSIONS_MESSAGES_URL"),
            messages_retention=env.get("DEV_SESSIONS_MESSAGES_RETENTION")
            or config.get("DEV_SESSIONS_MESSAGES_RETENTION"),
            webhooks=webhooks,
            webhooks_problem=webhooks_problem,
            machine=env.get("DEV_SESSIONS_MACHINE") or os.uname().nodename or "localhost",
            environ=env,
        )

    @property
    def config_path(self) -> Path:
        return self.home / CONFIG_FILE

    @property
    def store_path(self) -> Path:
        return self.home / "sessions.json"

    @property
    def user_home(self) -> Path:
        return Path(self.environ.get("HOME") or Path.home())

    @property
    def claude_config_dir(self) -> Path:
        return claude_config_dir(self.environ)

    @property
    def codex_home(self) -> Path:
        """Where Codex keeps its config and skills (``CODEX_HOME``, else ``~/.codex``)."""
        explicit = self.environ.get("CODEX_HOME")
        return Path(explicit).expanduser() if explicit else self.user_home / ".codex"

    @property
    def holder(self) -> str | None:
        """The agent session this process runs in, as far as its environment says: a session of ours
        (its id), else a Claude Code session (``claude:<its session id>``), else a Codex thread
        (``codex:<thread id>``); None for anything else (a person's shell). It is who holds an outside
        agent's name that this process registers."""
        env = self.environ
        for variable, prefix in (
            ("DEV_SESSIONS_ID", ""),
            ("CLAUDE_CODE_SESSION_ID", "claude:"),
            ("CODEX_THREAD_ID", "codex:"),
        ):
            value = env.get(variable, "").strip()
            if value:
                return prefix + value[:80]
        return None

    def machine_name(self) -> str:
        """This machine's name, or a one-line ``UsageError`` (a name as for agents, without ``@``)."""
        from dev_sessions.api import check_name
        from dev_sessions.errors import UsageError

        if "@" in self.machine:
            raise UsageError(f"DEV_SESSIONS_MACHINE: {self.machine!r} has an @; name the machine without one")
        return check_name(self.machine, "machine name (DEV_SESSIONS_MACHINE)")

    def me(self, explicit: str | None = None) -> str:
        """Who "I" am: ``--from``/``--as``, else the environment's agent, else ``user``."""
        from dev_sessions.api import USER, check_name

        return check_name(explicit or self.agent or USER, "agent name")


def claude_config_dir(environ: Mapping[str, str]) -> Path:
    """Where a Claude Code started with this environment keeps ``projects/`` and ``sessions/``."""
    explicit = environ.get("CLAUDE_CONFIG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return Path(environ.get("HOME") or Path.home()) / ".claude"
