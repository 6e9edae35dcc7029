"""Session commands that talk to a session: send, wait, ask, last-message, status, interrupt, goal,
respond, logs, inspect (starting, listing and stopping sessions: :mod:`.lifecycle`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from dev_sessions.cli.context import sessions_api
from dev_sessions.cli.output import (
    dialog_lines,
    emit_json,
    exit_code,
    note,
    read_message,
    report_wait,
    status_json,
    wait_json,
)
from dev_sessions.durations import parse_duration
from dev_sessions.errors import DevSessionsError, NoReply, SessionFailed, UsageError

if TYPE_CHECKING:
    from dev_sessions.api import SessionsAPI
    from dev_sessions.backend import WaitResult
    from dev_sessions.follow import Event

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
IdArg = Annotated[str, typer.Argument(metavar="ID", help="Session id, e.g. fizz-top.")]
FileOpt = Annotated[
    str | None,
    typer.Option("--file", "-f", metavar="FILE", help="Read the message from FILE ('-' for stdin)."),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress line on the terminal while waiting.")
]
FollowOpt = Annotated[
    bool,
    typer.Option("--follow", help="Print the turn's prompts, replies and tool calls as they land."),
]
TimeoutOpt = Annotated[
    str | None,
    typer.Option("--timeout", "-t", metavar="SECONDS", help="Give up after this long (e.g. 300, 5m)."),
]


def _timeout(value: str | None) -> float | None:
    return None if value is None else parse_duration(value)


def send(
    session_id: IdArg,
    message: Annotated[str | None, typer.Argument(metavar="[MESSAGE]", help="The text to send.")] = None,
    file: FileOpt = None,
    steer: Annotated[
        bool, typer.Option("--steer", help="Codex: add the text to the running turn instead of queueing it.")
    ] = False,
    plan: Annotated[
        bool | None,
        typer.Option(
            "--plan/--no-plan",
            help="Codex: from this prompt on, Plan mode (--plan) or Default mode (--no-plan).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> int:
    """Deliver a prompt and return at once (use `wait` to block until the turn ends)."""
    text = read_message(session_id, message, file)
    session = sessions_api().send(session_id, text, steer=steer, plan=plan)
    mark = session.last_send or {}
    mode = mark.get("mode") or ("queued" if mark.get("queued") else "sent")
    if as_json:
        emit_json({"id": session_id, "mode": mode, "queued": mode == "queued", "bytes": len(text.encode())})
    elif mode == "queued":
        print(f"{session_id}: queued (a turn is running; this prompt goes next)")
    elif mode == "steered":
        print(f"{session_id}: steered into the running turn")
    else:
        print(f"{session_id}: sent")
    return 0


def wait(
    session_ids: Annotated[list[str], typer.Argument(metavar="ID...", help="One or more session ids.")],
    timeout: TimeoutOpt = None,
    goal: Annotated[
        bool, typer.Option("--goal", help="Codex: wait until the thread goal is no longer active.")
    ] = False,
    follow: FollowOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> int:
    """Block until the turn started by the last `send` ends, for every id given."""
    api = sessions_api()
    if follow:
        results = _wait_following(api, session_ids, _timeout(timeout), goal, as_json)
    else:
        with _progress(api, session_ids, as_json=as_json, quiet=quiet):
            results = api.wait(session_ids, _timeout(timeout), goal=goal)
    if as_json:
        emit_json([wait_json(r) for r in results])
    else:
        for result in results:
            report_wait(result)
    return exit_code(results)


def ask(
    session_id: IdArg,
    message: Annotated[str | None, typer.Argument(metavar="[MESSAGE]", help="The text to send.")] = None,
    file: FileOpt = None,
    timeout: TimeoutOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> int:
    """Send, wait for the turn to end, and print the reply."""
    text = read_message(session_id, message, file)
    api = sessions_api()
    if _progress_wanted(as_json=as_json, quiet=quiet):
        # ask's own steps, with the line drawn between the send and the end of the wait
        api.send(session_id, text)
        with _progress(api, [session_id], as_json=as_json, quiet=quiet):
            (result,) = api.wait([session_id], _timeout(timeout))
        answered = result.outcome in ("completed", "interrupted", "failed")
        messages = api.last_messages(session_id, 1) if answered else []
    else:
        result, messages = api.ask(session_id, text, _timeout(timeout))
    if as_json:
        emit_json({**wait_json(result), "message": messages[-1] if messages else None})
        return exit_code([result])
    if result.outcome in ("completed", "interrupted", "failed") and messages:
        print(messages[-1])
    if result.outcome != "completed":
        report_wait(result) if result.outcome != "interrupted" else note(
            f"{session_id}: the turn was interrupted"
        )
    return exit_code([result])


def _progress_wanted(*, as_json: bool, quiet: bool) -> bool:
    import sys

    from dev_sessions.cli.context import settings

    if as_json or quiet or not sys.stderr.isatty():
        return False
    from dev_sessions.cli.progress import wanted

    return wanted(sys.stderr, settings().environ, as_json=as_json, quiet=quiet)


def _progress(
    api: SessionsAPI, session_ids: list[str], *, as_json: bool, quiet: bool
) -> contextlib.AbstractContextManager[object]:
    """The progress line while a wait blocks, where it is wanted (else nothing)."""
    if not _progress_wanted(as_json=as_json, quiet=quiet):
        return contextlib.nullcontext()
    import sys

    from dev_sessions.cli.progress import ProgressLine

    return ProgressLine(api, session_ids, sys.stderr)


def _wait_following(
    api: SessionsAPI, session_ids: list[str], timeout: float | None, goal: bool, as_json: bool
) -> list[WaitResult]:
    """``wait --follow``: the turn's events printed as they land while the wait blocks, and those
    that landed before it ended printed before its result."""
    import threading

    from dev_sessions.cli.progress import print_events

    ended: set[str] = set()
    done = threading.Condition()

    def events() -> Iterator[Event]:
        for event in api.follow(session_ids, start="turn"):
            yield event
            if event.kind in ("turn", "dialog") or (event.kind == "status" and event.state == "exited"):
                with done:
                    ended.add(event.session_id)
                    done.notify_all()

    def pump() -> None:
        try:
            print_events(events(), as_json=as_json)
        except DevSessionsError as err:
            note(str(err))
        finally:
            with done:
                ended.update(session_ids)
                done.notify_all()

    threading.Thread(target=pump, name="follow", daemon=True).start()
    results = api.wait(session_ids, timeout, goal=goal)
    finished = {r.session_id for r in results if r.outcome != "timeout"}
    with done:  # the stream is a little behind the wait: let it print the end it saw coming
        done.wait_for(lambda: finished <= ended, FOLLOW_DRAIN_S)
    return results


FOLLOW_DRAIN_S = 5.0
"""How long ``wait --follow`` lets the stream catch up with a turn that ended."""


def last_message(
    session_id: IdArg,
    count: Annotated[int, typer.Option("-n", "--count", help="How many messages.")] = 1,
    as_json: JsonOpt = False,
) -> int:
    """Print the agent's last reply (or last N replies)."""
    messages = sessions_api().last_messages(session_id, count)
    if as_json:
        emit_json(messages)
        return 0
    if not messages:
        raise NoReply(session_id=session_id)
    print("\n\n---\n\n".join(messages))
    return 0


def status(session_id: IdArg, as_json: JsonOpt = False) -> int:
    """Print one word: idle, working, waiting_for_input, exited or starting (the question goes to stderr)."""
    found = sessions_api().status(session_id)
    if found.state == "error" and not as_json:
        raise SessionFailed(session_id=session_id, detail=found.detail)
    if as_json:
        emit_json(status_json(session_id, found))
        return 0
    print(found.state)  # one word on stdout: [ "$(dev-sessions status ID)" = idle ] works
    if found.dialog is not None:
        note(
            "\n".join(
                [*dialog_lines(found.dialog), f"  answer with: dev-sessions respond {session_id} ANSWER"]
            )
        )
    elif found.detail:
        note(f"  {found.detail}")
    return 0


def goal(
    session_id: IdArg,
    objective: Annotated[
        str | None, typer.Argument(metavar="[OBJECTIVE]", help="Set this as the goal.")
    ] = None,
    budget: Annotated[int | None, typer.Option("--budget", help="Token budget for the goal.")] = None,
    pause: Annotated[bool, typer.Option("--pause", help="Pause the goal.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Resume a paused goal.")] = False,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the goal.")] = False,
    as_json: JsonOpt = False,
) -> int:
    """Codex: show, set, pause, resume or clear the thread goal (the agent works on until it is met)."""
    flags = [name for name, on in (("pause", pause), ("resume", resume), ("clear", clear)) if on]
    if len(flags) > 1 or (flags and objective is not None):
        raise UsageError("goal: give an OBJECTIVE, or one of --pause, --resume, --clear")
    action = flags[0] if flags else ("set" if objective is not None else "get")
    if budget is not None and action != "set":
        raise UsageError("goal: --budget goes with an OBJECTIVE")
    found = sessions_api().goal(session_id, action, objective, budget)
    if as_json:
        emit_json(found.record if found is not None else None)
    elif found is None:
        print(f"{session_id}: no goal" if action != "clear" else f"{session_id}: goal cleared")
    else:
        budget_text = f", budget {found.token_budget} tokens" if found.token_budget else ""
        print(f"{session_id}: {found.status}: {found.objective}{budget_text}")
        print(f"  used {found.tokens_used} tokens in {found.time_used_seconds:g} s")
    return 0


def interrupt(session_id: IdArg) -> int:
    """Stop the running turn, so that a pending `wait` returns."""
    if sessions_api().interrupt(session_id):
        print(f"{session_id}: interrupted")
    else:
        print(f"{session_id}: nothing to interrupt (idle)")
    return 0


def respond(
    session_id: IdArg,
    answer: Annotated[str, typer.Argument(help="Option number, option label, or free text where allowed.")],
) -> int:
    """Answer the dialog a session is waiting on (see `status`)."""
    chosen = sessions_api().respond(session_id, answer)
    print(f"{session_id}: answered {chosen}")
    return 0


def logs(
    session_id: IdArg,
    pane: Annotated[
        bool, typer.Option("--pane", help="Print the terminal screen and scrollback instead.")
    ] = False,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Then print each new event as it lands, until the session ends."),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="AGE|TIME", help="With --follow: the backlog since then (30m, ISO)."),
    ] = None,
    as_json: JsonOpt = False,
) -> int:
    """Print the conversation: prompts, replies, tool calls and turn ends."""
    manager = sessions_api()
    if since is not None and not follow:
        raise UsageError("logs: --since goes with --follow")
    if follow:
        if pane:
            raise UsageError("logs: --follow prints the conversation, not the pane")
        from dev_sessions.cli.progress import print_events

        print_events(manager.follow([session_id], start="all", since=since), as_json=as_json)
        return 0
    if pane:
        print(manager.screen(session_id), end="")
        return 0
    items = manager.logs(session_id)
    if as_json:
        emit_json([{"timestamp": i.timestamp, "role": i.role, "text": i.text} for i in items])
        return 0
    for item in items:
        stamp = item.timestamp[11:19] if len(item.timestamp) >= 19 else item.timestamp
        text = item.text.replace("\n", "\n    ")
        print(f"[{stamp}] {item.role}: {text}")
    return 0


def inspect(session_id: IdArg) -> int:
    """Print everything known about a session, as JSON."""
    found = sessions_api().inspect(session_id)
    emit_json(
        {"session": found.session.to_record(), **found.facts, "status": status_json(session_id, found.status)}
    )
    return 0


COMMANDS = frozenset(
    {"send", "wait", "ask", "last-message", "status", "interrupt", "goal", "respond", "logs", "inspect"}
)


def register(app: typer.Typer) -> None:
    app.command()(send)
    app.command()(wait)
    app.command()(ask)
    app.command("last-message")(last_message)
    app.command()(status)
    app.command()(interrupt)
    app.command()(goal)
    app.command()(respond)
    app.command()(logs)
    app.command()(inspect)
