"""The typer application, built for the command at hand.

typer turns every registered command into a click command at start-up (about 0.4 ms each, and there
are about 70), and each group's module brings its own imports, so a quick command imports and
registers only its own group's module; help and unknown commands get all. A group names commands,
or a command and its subcommand (``msg send``): ``msg send`` builds only the ``msg`` commands of its
own group. Which group has which commands is said here (tests/unit/test_cli_args.py checks it against
each module's ``COMMANDS``).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import typer

HELP = "Spawn, instruct, wait on and read other coding-agent sessions (Claude Code, Codex), and message them."

# Each group: its module in dev_sessions.cli (whose ``register`` adds it), and its top-level commands.
GROUPS: dict[str, frozenset[str]] = {
    "sessions": frozenset(
        {"send", "wait", "ask", "last-message", "status", "interrupt", "goal", "respond", "logs", "inspect"}
    ),
    "lifecycle": frozenset({"create", "list", "kill", "usage"}),
    "messaging": frozenset(
        {"space", "agents"}
        | {f"msg {name}" for name in ("feed", "mark-read", "migrate", "read", "reply", "search", "send")}
        | {f"msg {name}" for name in ("status", "thread", "wait")}
    ),
    "messaging_extras": frozenset(
        {"context", "stats"}
        | {f"msg {name}" for name in ("react", "unreact", "reactions", "pin", "unpin", "pinned")}
        | {f"msg {name}" for name in ("conversations", "prune")}
    ),
    "coordination": frozenset({"project", "focus", "lease", "webhooks"}),
    "skills": frozenset({"install-skill"}),
    "install_mcp": frozenset({"install-mcp", "uninstall-mcp"}),
    "gateway": frozenset({"gateway"}),
    "doctor": frozenset({"doctor"}),
    "selftest": frozenset({"selftest"}),
    "call": frozenset({"call"}),
    "mcp_server": frozenset({"mcp"}),
    "tui": frozenset({"tui"}),
    "dashboard": frozenset({"dashboard"}),
}

OPTIONAL_VALUES = {"create": ("--worktree", "-w")}
"""Options whose value may be left out, by command (see ``optional_values``)."""


def optional_values(args: list[str]) -> list[str]:
    """An option whose value may be left out (``create --worktree [BRANCH]``), which typer cannot say:
    given alone, at the end or before another option, it becomes ``--worktree=`` (no branch named)."""
    command = next((a for a in args if not a.startswith("-")), None)
    names = OPTIONAL_VALUES.get(command or "", ())
    if not names:
        return args
    out = list(args)
    for index, arg in enumerate(out):
        if arg == "--":
            break
        if arg in names and (index + 1 == len(out) or out[index + 1].startswith("-")):
            out[index] = f"{names[0]}="
    return out


def _root() -> None:
    """dev-sessions: other coding-agent sessions, and messages between agents."""


def build_app(args: Sequence[str] = ()) -> typer.Typer:
    app = typer.Typer(
        name="dev-sessions",
        help=HELP,
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    # A callback keeps the application a group even when it holds a single command.
    app.callback()(_root)
    words = [a for a in args if not a.startswith("-")][:2]
    command = words[0] if words else None
    chosen = [module for module, names in GROUPS.items() if command in names or " ".join(words) in names]
    for module in chosen or list(GROUPS):
        importlib.import_module(f"dev_sessions.cli.{module}").register(app)
    return app
