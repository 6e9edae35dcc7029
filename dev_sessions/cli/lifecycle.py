"""Session commands that start, list and stop sessions: create, list, kill."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from dev_sessions.cli.context import sessions_api
from dev_sessions.cli.output import dialog_lines, emit_json, note
from dev_sessions.cli.sessions import JsonOpt
from dev_sessions.durations import format_age, parse_duration
from dev_sessions.errors import EXIT_ERROR, EXIT_OK, DevSessionsError, UsageError
from dev_sessions.store import parse_iso
from dev_sessions.terminal import cell
from dev_sessions.usage import Usage, compact


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
    host: Annotated[
        str | None,
        typer.Option("--host", "-H", metavar="TARGET", help="On this ssh host, through its dev-sessions."),
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
        host=host,
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
            where = f"ssh -t {session.host} " if session.host else ""
            attach = f"{where}tmux {socket}attach -t {tmux}"
            note(f"{session.id}: {session.cli} in {session.path} (attach: {attach})")
    return 0


def list_(as_json: JsonOpt = False) -> int:
    """List sessions with their live status."""
    manager = sessions_api()
    rows = manager.list_sessions()
    if as_json:
        used = {u.id: u.to_json() for u in manager.usage().sessions} if rows else {}
        emit_json(
            [
                {**s.to_record(), "live": st.state, "detail": st.detail or None, "usage": used.get(s.id)}
                for s, st in rows
            ]
        )
        return 0
    if not rows:
        note("no sessions")
        return 0
    # Tokens of this machine's sessions only: a remote one's would cost an ssh call per host more.
    try:
        tallied = {u.id: u for u in manager.usage(remote=False).sessions}
    except DevSessionsError as err:  # a bad price table, say: the list all the same, without tokens
        note(f"dev-sessions: tokens not shown: {err}")
        tallied = {}
    now = time.time()
    hosts = any(session.host for session, _ in rows)  # a HOST column only when there is a remote one
    table = [("ID", "CLI", *(("HOST",) if hosts else ()), "STATUS", "AGE", "TOKENS", "PATH", "DESCRIPTION")]
    for session, found in rows:
        created = parse_iso(session.created_at)
        age = format_age(now - created.timestamp()) if created else "?"
        where = cell(session.path) + (f" [{cell(session.branch)}]" if session.branch else "")
        host = (cell(session.host or "local"),) if hosts else ()
        mine = tallied.get(session.id)
        tokens = "-" if mine is None or mine.error else compact(mine.usage.tokens)
        table.append(
            (session.id, session.cli, *host, found.state, age, tokens, where, cell(session.description))
        )
    columns = len(table[0]) - 1
    widths = [max(len(row[i]) for row in table) for i in range(columns)]
    for row in table:
        print("  ".join(text.ljust(widths[i]) for i, text in enumerate(row[:columns])) + "  " + row[columns])
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
    forget: Annotated[
        bool, typer.Option("--forget", help="Drop a session whose host does not answer from the list anyway.")
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
        killed = manager.kill(session_ids or [], keep_worktree=keep, forget=forget)
    if as_json:
        emit_json([k.to_json() for k in killed])
    elif not killed:
        note("no sessions to kill")
    for done in killed:
        if done.error:  # --all, --older-than: the others were killed all the same
            note(f"dev-sessions: {done.id}: not killed: {done.error}")
            continue
        if not as_json:
            print(f"{done.id}: killed")
        if done.note:
            note(f"{done.id}: {done.note}")
    return max((k.exit_code or EXIT_ERROR for k in killed if k.error), default=EXIT_OK)


def usage(
    session_ids: Annotated[
        list[str] | None, typer.Argument(metavar="[ID...]", help="These sessions (default: all).")
    ] = None,
    as_json: JsonOpt = False,
) -> int:
    """Tokens, turns and time worked per session and in total (a cost from $DEV_SESSIONS_HOME/prices.json)."""
    found = sessions_api().usage(session_ids or [])
    if as_json:
        emit_json(found.to_json())
        return 0
    priced = found.priced
    head = ("ID", "CLI", "INPUT", "OUTPUT", "CACHE-READ", "CACHE-WRITE", "TURNS", "TIME")
    table: list[tuple[str, ...]] = [(*head, "COST") if priced else head]

    def money(value: float | None) -> str:
        return "?" if value is None else f"{value:.2f}"

    def cells(used: Usage, cost: float | None) -> tuple[str, ...]:
        counts = (used.input, used.output, used.cache_read, used.cache_write, used.turns)
        row = (*(f"{n:,}" for n in counts), f"{used.seconds:,.1f}s")
        return (*row, money(cost)) if priced else row

    for row in found.sessions:
        if row.error:
            note(f"dev-sessions: {row.id}: {row.error}")
        table.append((row.id, row.cli, *cells(row.usage, row.cost)))
    table.append(("TOTAL", "", *cells(found.total, found.cost)))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for line in table:
        print(
            "  ".join(
                t.ljust(w) if i < 2 else t.rjust(w) for i, (t, w) in enumerate(zip(line, widths, strict=True))
            )
        )
    return EXIT_ERROR if any(r.error for r in found.sessions) else EXIT_OK


COMMANDS = frozenset({"create", "list", "kill", "usage"})


def register(app: typer.Typer) -> None:
    app.command()(create)
    app.command("list")(list_)
    app.command()(kill)
    app.command()(usage)
