"""Session commands: create, send, wait, ask, last-message, status, interrupt, respond, list, logs,
inspect, kill."""

from __future__ import annotations

import time
from typing import Annotated

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
from dev_sessions.durations import format_age, parse_duration
from dev_sessions.errors import NoReply, SessionFailed, UsageError
from dev_sessions.store import parse_iso
from dev_sessions.terminal import cell

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
IdArg = Annotated[str, typer.Argument(metavar="ID", help="Session id, e.g. fizz-top.")]
FileOpt = Annotated[
    str | None,
    typer.Option("--file", "-f", metavar="FILE", help="Read the message from FILE ('-' for stdin)."),
]
TimeoutOpt = Annotated[
    str | None,
    typer.Option("--timeout", "-t", metavar="SECONDS", help="Give up after this long (e.g. 300, 5m)."),
]


def _timeout(value: str | None) -> float | None:
    return None if value is None else parse_duration(value)


def create(
    cli: Annotated[str, typer.Option("--cli", help="claude or codex.")] = "claude",
    path: Annotated[
        str | None, typer.Option("--path", "-p", help="Working directory (default: here).")
    ] = None,
    description: Annotated[str, typer.Option("--description", "-d", help="What the session is for.")] = "",
    mode: Annotated[
        str,
        typer.Option("--mode", help="native (or yolo), or docker: Claude via $DEV_SESSIONS_DOCKER_CLAUDE."),
    ] = "native",
    approvals: Annotated[
        str, typer.Option("--approvals", help="never (full permissions), on-request or untrusted.")
    ] = "never",
    model: Annotated[str | None, typer.Option("--model", help="Model for the agent.")] = None,
    plan: Annotated[
        bool,
        typer.Option("--plan", help="Codex: start in Plan mode (it plans and may ask questions)."),
    ] = False,
    worktree: Annotated[
        str | None,
        typer.Option(
            "--worktree",
            "-w",
            metavar="[BRANCH]",
            help="Work in a git worktree of its own, on BRANCH (default: a new dev-sessions/ID).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the id.")] = False,
    as_json: JsonOpt = False,
) -> int:
    """Start a new agent session and print its id once the agent is ready for input."""
    manager = sessions_api()
    created = manager.create(
        cli=cli,
        path=path,
        description=description,
        mode=mode,
        approvals=approvals,
        model=model,
        plan=plan,
        worktree=worktree,
    )
    session, status = created.session, created.started.status
    for line in created.notes:
        note(f"dev-sessions: {session.id}: {line}")
    if as_json:
        emit_json(
            {
                **session.to_record(),
                "ready": status.state,
                "dialog": status.dialog and status.dialog.to_json(),
            }
        )
        return 0
    print(session.id)
    if status.state == "waiting_for_input" and status.dialog is not None:
        note(
            "\n".join(
                [
                    f"dev-sessions: {session.id}: started, but waiting for input",
                    *dialog_lines(status.dialog),
                    f"  answer with: dev-sessions respond {session.id} ANSWER",
                ]
            )
        )
    elif status.state == "starting":
        note(f"dev-sessions: {session.id}: started, but its input box has not shown yet ({status.detail})")
    elif not quiet:
        tmux = created.started.facts.get("tmux")
        if tmux:
            socket = f"-L {session.tmux_socket} " if session.tmux_socket else ""
            note(f"{session.id}: {session.cli} in {session.path} (attach: tmux {socket}attach -t {tmux})")
    return 0


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
    as_json: JsonOpt = False,
) -> int:
    """Block until the turn started by the last `send` ends, for every id given."""
    results = sessions_api().wait(session_ids, _timeout(timeout), goal=goal)
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
    as_json: JsonOpt = False,
) -> int:
    """Send, wait for the turn to end, and print the reply."""
    text = read_message(session_id, message, file)
    result, messages = sessions_api().ask(session_id, text, _timeout(timeout))
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


def list_(as_json: JsonOpt = False) -> int:
    """List sessions with their live status."""
    rows = sessions_api().list_sessions()
    if as_json:
        emit_json([{**s.to_record(), "live": st.state, "detail": st.detail or None} for s, st in rows])
        return 0
    if not rows:
        note("no sessions")
        return 0
    now = time.time()
    table = [("ID", "CLI", "STATUS", "AGE", "PATH", "DESCRIPTION")]
    for session, found in rows:
        created = parse_iso(session.created_at)
        age = format_age(now - created.timestamp()) if created else "?"
        where = cell(session.path) + (f" [{cell(session.branch)}]" if session.branch else "")
        table.append((session.id, session.cli, found.state, age, where, cell(session.description)))
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5])
    return 0


def logs(
    session_id: IdArg,
    pane: Annotated[
        bool, typer.Option("--pane", help="Print the terminal screen and scrollback instead.")
    ] = False,
    as_json: JsonOpt = False,
) -> int:
    """Print the conversation: prompts, replies, tool calls and turn ends."""
    manager = sessions_api()
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


def kill(
    session_ids: Annotated[
        list[str] | None, typer.Argument(metavar="[ID...]", help="Sessions to kill.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Kill every session.")] = False,
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", metavar="AGE", help="Kill sessions created longer ago (e.g. 2h)."),
    ] = None,
    keep_worktree: Annotated[
        bool, typer.Option("--keep-worktree", help="Keep the sessions' git worktrees, even when clean.")
    ] = False,
    as_json: JsonOpt = False,
) -> int:
    """Stop sessions: their agent, their tmux session, their record (and a clean worktree)."""
    chosen = sum([bool(session_ids), all_, older_than is not None])
    if chosen != 1:
        raise UsageError("kill: give session ids, or --all, or --older-than AGE (one of them)")
    manager = sessions_api()
    keep = keep_worktree
    if all_:
        killed = manager.kill_all(keep_worktree=keep)
    elif older_than is not None:
        killed = manager.kill_older_than(parse_duration(older_than), keep_worktree=keep)
    else:
        killed = manager.kill(session_ids or [], keep_worktree=keep)
    if as_json:
        emit_json([k.id for k in killed])
    elif not killed:
        note("no sessions to kill")
    for done in killed:
        if not as_json:
            print(f"{done.id}: killed")
        if done.note:
            note(f"{done.id}: {done.note}")
    return 0


OPTIONAL_VALUES = {"create": ("--worktree", "-w")}


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


COMMANDS = frozenset(
    {
        "create",
        "send",
        "wait",
        "ask",
        "last-message",
        "status",
        "interrupt",
        "goal",
        "respond",
        "list",
        "logs",
    }
    | {"inspect", "kill"}
)


def register(app: typer.Typer) -> None:
    app.command()(create)
    app.command()(send)
    app.command()(wait)
    app.command()(ask)
    app.command("last-message")(last_message)
    app.command()(status)
    app.command()(interrupt)
    app.command()(goal)
    app.command()(respond)
    app.command("list")(list_)
    app.command()(logs)
    app.command()(inspect)
    app.command()(kill)
