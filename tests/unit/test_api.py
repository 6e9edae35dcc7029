"""The API's description: which methods are calls and with what, the command line's use of it, and
errors that cross a process boundary as themselves."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from dev_sessions import errors
from dev_sessions.api import LIBRARIES, Call, call, calls, library
from dev_sessions.errors import (
    EXIT_CODES,
    BadAnswer,
    DevSessionsError,
    NoMessage,
    ReportedError,
    SessionNotFound,
    TmuxError,
    UsageError,
    exit_code_of,
    outcome_exit,
    revive,
)
from dev_sessions.gateway.protocol import CALLS

CLI = Path(__file__).resolve().parents[2] / "dev_sessions" / "cli"


class Library:
    @call(owns="session_id")
    def look(self, session_id: str, count: int = 1, *, deep: bool = False) -> list[str]:
        return [session_id] * count

    @call(scope=("viewer",), identity="reader", long=True)
    def watch(self, reader: str | None = None, viewer: str | None = None) -> int:
        return 0

    def helper(self) -> None:
        """Not a call: never served, never on the remote."""


def test_calls_come_from_the_marks_and_the_signatures() -> None:
    found = calls(Library)
    assert set(found) == {"look", "watch"}
    look = found["look"]
    assert look.args == {"session_id", "count", "deep"}
    assert look.order == ("session_id", "count")
    assert dict(look.defaults) == {"count": 1, "deep": False}
    assert look.owns == "session_id" and not look.long
    watch = found["watch"]
    assert watch.args == {"reader"}  # the gateway sets viewer, never a client
    assert watch.scope == {"viewer"} and watch.identity == "reader" and watch.long


def test_binding_a_call_says_what_is_wrong() -> None:
    look = calls(Library)["look"]
    assert look.bind(("a", 2), {"deep": True}) == {"session_id": "a", "count": 2, "deep": True}
    with pytest.raises(UsageError, match="at most 2 positional"):
        look.bind(("a", 2, True), {})
    with pytest.raises(UsageError, match="session_id given twice"):
        look.bind(("a",), {"session_id": "b"})
    with pytest.raises(UsageError, match="cannot take viewer"):
        calls(Library)["watch"].bind((), {"viewer": "me"})


def test_every_library_call_is_served_and_nothing_else() -> None:
    for api in LIBRARIES:
        cls = library(api)
        # Its own methods and its base classes' (the messenger's coordination calls).
        marked = {
            name for klass in cls.__mro__ for name, f in vars(klass).items() if hasattr(f, "__api_call__")
        }
        assert set(CALLS[api]) == marked
        assert all(isinstance(c, Call) for c in CALLS[api].values())
        for name, spec in CALLS[api].items():
            assert not name.startswith("_")
            if spec.long and spec.stream:  # an async iterator of the items
                assert inspect.isasyncgenfunction(getattr(cls, f"{name}_async")), name
            elif spec.long:
                assert inspect.iscoroutinefunction(getattr(cls, f"{name}_async")), name
            returns = inspect.signature(getattr(cls, name)).return_annotation
            assert returns is not inspect.Signature.empty and "Any" not in str(returns), (api, name)


def _api_uses(source: str) -> set[tuple[str, str]]:
    """Every ``sessions_api().x`` / ``messages_api().x`` in a module, directly or through a name."""
    tree = ast.parse(source)
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Name) and func.id in ("sessions_api", "messages_api"):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        bound[target.id] = func.id
    used = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        value = node.value
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            if value.func.id in ("sessions_api", "messages_api"):
                used.add((value.func.id, node.attr))
        elif isinstance(value, ast.Name) and value.id in bound:
            used.add((bound[value.id], node.attr))
    return used


def test_the_command_line_uses_only_calls() -> None:
    """What the command line asks of the library is what a container can reach through the gateway."""
    used = set()
    for module in CLI.glob("*.py"):
        used |= _api_uses(module.read_text())
    assert len(used) > 25  # the check sees the commands
    apis = {"sessions_api": "sessions", "messages_api": "messages"}
    strays = sorted(f"{apis[f]}.{name}" for f, name in used if name not in CALLS[apis[f]])
    assert strays == []


# -- errors -----------------------------------------------------------------------------------------------


def _all_errors() -> list[type[DevSessionsError]]:
    return [
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, DevSessionsError) and cls.__module__ == errors.__name__
    ]


def test_every_deliberate_error_lives_in_errors() -> None:
    import dev_sessions

    package = Path(dev_sessions.__file__).parent
    strays = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and path.name != "errors.py":
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if bases & ({c.__name__ for c in _all_errors()} | {"Exception"}):
                    strays.append(f"{path.relative_to(package)}:{node.name}")
    # Private, never leave their module: the Codex wire's parse error, the selftest's own failure, and
    # the PostgreSQL client's (libpq's error, turned into ours by postgres.py; the signal to run a write
    # again, a MessagesUnavailable wherever it is not).
    private = {
        "codex/protocol.py:ProtocolError",
        "selftest/checks.py:_Failed",
        "messaging/libpq.py:Error",
        "messaging/postgres.py:TryAgain",
    }
    assert set(strays) <= private, strays
    documented = errors.__doc__ or ""
    missing = [
        c.__name__
        for c in _all_errors()
        if c is not DevSessionsError and f"``{c.__name__}``" not in documented
    ]
    assert missing == []


def test_exit_codes_come_from_one_table() -> None:
    assert exit_code_of(UsageError) == 2 and exit_code_of(BadAnswer) == 2
    assert exit_code_of(NoMessage) == 124
    assert exit_code_of(SessionNotFound) == 1
    assert set(EXIT_CODES.values()) == {2, 124, 130}
    assert outcome_exit(["completed", "idle", "interrupted"]) == 0
    assert outcome_exit(["completed", "failed"]) == 1
    assert outcome_exit(["waiting_for_input", "timeout"]) == 124
    assert outcome_exit([]) == 0


@pytest.mark.parametrize(
    "error",
    [
        SessionNotFound(session_id="fizz-top"),
        BadAnswer(session_id="fizz-top", answer="maybe", options=["1. Yes", "2. No"]),
        NoMessage(reader="boss", timeout=2),
        TmuxError(args=["send-keys", "-t"], detail="no pane"),
        UsageError("--path x: no such directory"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_error_crosses_a_boundary_as_itself(error: DevSessionsError) -> None:
    import json

    again = revive(json.loads(json.dumps(error.to_wire())))
    assert type(again) is type(error)
    assert str(again) == str(error)
    assert again.exit_code == error.exit_code
    assert vars(again) == vars(error)


def test_an_unknown_error_keeps_its_message_and_exit_code() -> None:
    again = revive({"message": "from the future", "exit": 3, "kind": "NewError"})
    assert isinstance(again, ReportedError)
    assert (str(again), again.exit_code, again.kind) == ("from the future", 3, "NewError")
    # A known class with another exit code than ours: the sender's version differs; keep its code.
    odd = revive({"message": "x", "exit": 7, "kind": "SessionNotFound"})
    assert isinstance(odd, ReportedError) and odd.exit_code == 7
    assert isinstance(revive({"kind": "DevSessionsError", "exit": "bad"}), DevSessionsError)


def test_settings_are_read_once_and_never_show_the_token() -> None:
    from dev_sessions.config import Settings

    secret = "s3cret-" + "x" * 40
    settings = Settings.from_env(
        {
            "HOME": "/h",
            "DEV_SESSIONS_GATEWAY_TOKEN": secret,
            "DEV_SESSIONS_ID": "fizz-top",
            "DEV_SESSIONS_WORKTREES": "~/t",
        }
    )
    assert settings.gateway_token == secret and settings.agent == "fizz-top"
    assert settings.me() == "fizz-top" and settings.me("boss") == "boss"
    assert settings.worktrees == Path("~/t").expanduser()
    assert secret not in repr(settings) and secret not in str(settings)
    with pytest.raises(UsageError, match="not a valid agent name"):
        settings.me("bad name")
