"""Messaging commands: ``msg ...``, ``space ...`` and ``agents ...`` (issue 16's ``msg`` commands, and
``context`` and ``stats``, are :mod:`dev_sessions.cli.messaging_extras`')."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, cast

import typer

from dev_sessions.cli.context import messages_api, settings
from dev_sessions.cli.output import emit_json, note, read_message
from dev_sessions.errors import UsageError
from dev_sessions.terminal import cell

if TYPE_CHECKING:
    from dev_sessions.api import JsonObject
    from dev_sessions.messaging.records import Message


def parse_message_id(text: str) -> int:
    # Imported here: the messaging library (and sqlite3) is not loaded for other commands.
    from dev_sessions.messaging.messenger import parse_message_id as parse

    return parse(text)


def priority_choice(value: str) -> str:
    from dev_sessions.messaging.messenger import priority_choice as choose

    return choose(value)


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
AsOpt = Annotated[str | None, typer.Option("--as", metavar="NAME", help="Read as this agent.")]
FromOpt = Annotated[str | None, typer.Option("--from", metavar="NAME", help="Send as this agent.")]
TakeoverOpt = Annotated[
    bool,
    typer.Option("--takeover", help="Take the name over from another live session that holds it."),
]
FileOpt = Annotated[
    str | None,
    typer.Option("--file", "-f", metavar="FILE", help="Read the message from FILE ('-' for stdin)."),
]
PriorityOpt = Annotated[
    str,
    typer.Option(
        "--priority", "-P", help="low, normal, high or urgent (urgent steers into a busy Codex turn)."
    ),
]
MessageArg = Annotated[str | None, typer.Argument(metavar="[MESSAGE]", help="The text.")]
SinceOpt = Annotated[
    str | None, typer.Option("--since", metavar="AGE|TIME", help="Only since then (30m, 2h, ISO).")
]
LimitOpt = Annotated[int | None, typer.Option("--limit", "-n", help="At most this many (the newest).")]
AllProjectsOpt = Annotated[
    bool, typer.Option("--all-projects", help="Every project's, whatever your focus (`dev-sessions focus`).")
]

msg_app = typer.Typer(help="Direct messages and threads between agents.", no_args_is_help=True)
space_app = typer.Typer(help="Spaces: named groups of agents to broadcast to.", no_args_is_help=True)
agents_app = typer.Typer(help="Agents: every session, and the outside agents that message them.")


def _render(messages: list[Message], as_json: bool, *, empty: str = "no messages") -> None:
    if as_json:
        emit_json([m.to_json() for m in messages])
        return
    if not messages:
        note(empty)
        return
    for message in messages:
        stamp = message.created_at[:19].replace("T", " ")
        where = f" in {message.space}" if message.space else ""
        about = f" re {message.reply_to}" if message.reply_to else ""
        state = f" ({message.receipt.state})" if message.receipt is not None else ""
        priority = f" [{message.priority}]" if message.priority != "normal" else ""
        print(f"{message.id}  {stamp}  from {message.sender}{where}{about}{priority}{state}")
        for line in message.body.splitlines() or [""]:
            print(f"    {line}")
        if message.reactions:
            print(f"  reactions: {reactions_line(message)}")


def reactions_line(message: Message) -> str:
    """``👍 2 (alice, bob) · 🎉 1 (carol)``: each emoji, how many and who."""
    return " · ".join(
        f"{cell(emoji)} {len(agents)} ({', '.join(agents)})" for emoji, agents in message.reactions
    )


def _metadata(text: str | None) -> JsonObject | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as err:
        raise UsageError(f"--metadata is not JSON: {err}") from None
    if not isinstance(value, dict):
        raise UsageError("--metadata must be a JSON object")
    return cast("JsonObject", value)


def _sent(message: Message, as_json: bool) -> None:
    if as_json:
        emit_json(message.to_json())
    else:
        print(message.id)
    receipt = message.receipt  # set for a message to a session on another host
    if receipt is not None and receipt.state == "failed":
        later = "; retrying in the background" if receipt.retry_at_ms else ""
        note(f"message {message.id} to {receipt.recipient}: not delivered: {receipt.reason}{later}")


# -- msg ---------------------------------------------------------------------------------------------


@msg_app.command("send")
def msg_send(
    to: Annotated[
        str, typer.Option("--to", metavar="NAME", help="A session, an agent, a space, or 'parent'.")
    ],
    message: MessageArg = None,
    file: FileOpt = None,
    priority: PriorityOpt = "normal",
    reply_to: Annotated[
        str | None, typer.Option("--reply-to", metavar="MSGID", help="Answer this message.")
    ] = None,
    metadata: Annotated[
        str | None, typer.Option("--metadata", metavar="JSON", help="A JSON object to attach.")
    ] = None,
    sender: FromOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Send a message; prints its id. A live session gets it in its conversation."""
    text = read_message("msg send", message, file)
    sent = messages_api().send(
        to,
        text,
        sender=sender,
        priority=priority_choice(priority),
        reply_to=parse_message_id(reply_to) if reply_to else None,
        metadata=_metadata(metadata),
    )
    _sent(sent, as_json)
    return 0


@msg_app.command("read")
def msg_read(
    reader: AsOpt = None,
    unread: Annotated[bool, typer.Option("--unread", help="Only unread messages.")] = False,
    mark_read: Annotated[bool, typer.Option("--mark-read", help="Mark what is shown as read.")] = False,
    sender: Annotated[
        str | None, typer.Option("--from", metavar="NAME", help="Only from this agent.")
    ] = None,
    since: SinceOpt = None,
    limit: LimitOpt = None,
    all_projects: AllProjectsOpt = False,
    as_json: JsonOpt = False,
) -> int:
    """Messages to you (or to --as NAME), oldest first; with a focus, the direct ones and its project's."""
    found = messages_api().read(
        reader, unread=unread, mark_read=mark_read, sender=sender, since=since, limit=limit,
        all_projects=all_projects,
    )  # fmt: skip
    _render(found, as_json)
    return 0


@msg_app.command("reply")
def msg_reply(
    message_id: Annotated[str, typer.Argument(metavar="MSGID", help="The message to answer.")],
    message: MessageArg = None,
    file: FileOpt = None,
    priority: PriorityOpt = "normal",
    sender: FromOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Answer a message (to its sender); marks it read. Prints the reply's id."""
    text = read_message("msg reply", message, file)
    sent = messages_api().reply(
        parse_message_id(message_id), text, sender=sender, priority=priority_choice(priority)
    )
    _sent(sent, as_json)
    return 0


@msg_app.command("thread")
def msg_thread(
    message_id: Annotated[str, typer.Argument(metavar="MSGID", help="Any message of the thread.")],
    as_json: JsonOpt = False,
) -> int:
    """The whole thread a message belongs to, in order, with full bodies."""
    _render(messages_api().thread(parse_message_id(message_id)), as_json)
    return 0


@msg_app.command("mark-read")
def msg_mark_read(
    message_ids: Annotated[
        list[str] | None, typer.Argument(metavar="[MSGID...]", help="Messages to mark.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every message to you.")] = False,
    reader: AsOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Mark messages to you as read."""
    if bool(message_ids) == all_:
        raise UsageError("mark-read: give message ids or --all (one of them)")
    ids = None if all_ else [parse_message_id(m) for m in message_ids or []]
    changed = messages_api().mark_read(ids, reader)
    if as_json:
        emit_json({"marked": changed})
    else:
        print(f"{changed} marked read")
    return 0


@msg_app.command("status")
def msg_status(
    message_id: Annotated[str, typer.Argument(metavar="MSGID", help="The message.")],
    as_json: JsonOpt = False,
) -> int:
    """Per recipient: queued, delivered, read or failed, with times and reasons."""
    message, receipts = messages_api().status(parse_message_id(message_id))
    if as_json:
        emit_json({**message.to_json(), "recipients": [r.to_json() for r in receipts]})
        return 0
    print(f"{message.id} from {message.sender}" + (f" in {message.space}" if message.space else ""))
    if not receipts:
        print("  (no recipients)")
    here = settings().machine
    for receipt in receipts:
        when = receipt.read_at or receipt.delivered_at or receipt.failed_at or ""
        where = f" into its {receipt.via}" if receipt.state == "delivered" and receipt.via != "host" else ""
        why = f": {receipt.reason}" if receipt.state == "failed" and receipt.reason else ""
        if receipt.via == "host" and receipt.state != "failed" and receipt.reason:
            why = f" ({receipt.reason})"  # where on its host, and as which message there
        retry = " (retrying)" if receipt.state == "failed" and receipt.retry_at_ms else ""
        elsewhere = receipt.machine and receipt.machine != here  # a session of another machine
        who = f"{receipt.recipient}@{receipt.machine}" if elsewhere else receipt.recipient
        print(f"  {who}: {receipt.state}{where}{why}{retry} {when}".rstrip())
    return 0


@msg_app.command("migrate")
def msg_migrate(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="URL",
            help="The shared store: postgresql://... (keep its password in ~/.pgpass), or - to read the URL "
            "from stdin.",
        ),
    ],
    as_json: JsonOpt = False,
) -> int:
    """Copy this machine's messages (messages.db) into a shared store; run again, nothing doubles."""
    import sys

    from dev_sessions.messaging.migrate import migrate
    from dev_sessions.messaging.store import MessageStore, open_store

    found = settings()
    if found.sandbox:
        raise UsageError("msg migrate: run it on the host, where messages.db is")
    url = sys.stdin.readline().strip() if to == "-" else to
    if not url.startswith(("postgresql://", "postgres://")):
        raise UsageError("msg migrate --to: a postgresql://... URL")
    path = found.home / "messages.db"
    if not path.exists():
        raise UsageError(f"{path}: no messages here to copy")
    source = MessageStore(path)
    target = open_store(url)
    try:
        report = migrate(source, target, found.machine_name())
    finally:
        target.close()
        source.close()
    if as_json:
        emit_json(report.to_json())
    else:
        print(report.line())
    return 0


@msg_app.command("wait")
def msg_wait(
    reader: AsOpt = None,
    timeout: Annotated[
        str | None,
        typer.Option("--timeout", "-t", metavar="SECONDS", help="Give up after this long (exit 124)."),
    ] = None,
    peek: Annotated[bool, typer.Option("--peek", help="Do not mark what arrives as read.")] = False,
    as_json: JsonOpt = False,
) -> int:
    """Block until a message for you arrives (or is already unread), print it and mark it read."""
    from dev_sessions.durations import parse_duration

    seconds = None if timeout is None else parse_duration(timeout)
    _render(messages_api().wait(reader, seconds, mark_read=not peek), as_json)
    return 0


@msg_app.command("search")
def msg_search(
    query: Annotated[
        str, typer.Argument(help='Full-text query (SQLite FTS5 syntax: words, "phrases", OR, *).')
    ],
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many.")] = 50,
    as_json: JsonOpt = False,
) -> int:
    """Find messages by their text, best matches first."""
    _render(messages_api().search(query, limit), as_json, empty="nothing matches")
    return 0


@msg_app.command("feed")
def msg_feed(
    since: SinceOpt = None,
    limit: LimitOpt = None,
    reader: AsOpt = None,
    all_projects: AllProjectsOpt = False,
    as_json: JsonOpt = False,
) -> int:
    """Every message in the store, oldest first (with a focus, only its project's spaces)."""
    _render(messages_api().feed(since, limit, reader=reader, all_projects=all_projects), as_json)
    return 0


# -- space -------------------------------------------------------------------------------------------


@space_app.command("create")
def space_create(
    name: Annotated[str, typer.Argument(help="Name of the space.")],
    parent: Annotated[
        str | None, typer.Option("--parent", help="Nest it in this space (3 levels at most).")
    ] = None,
    description: Annotated[str, typer.Option("--description", "-d", help="What it is for.")] = "",
    project: Annotated[
        str | None, typer.Option("--project", metavar="PROJECT", help="The project it belongs to.")
    ] = None,
    as_json: JsonOpt = False,
) -> int:
    """Create a space."""
    space = messages_api().create_space(name, parent, description, project=project)
    if as_json:
        emit_json(space.__dict__)
    else:
        print(space.name)
    return 0


@space_app.command("update")
def space_update(
    name: Annotated[str, typer.Argument(help="The space.")],
    project: Annotated[
        str | None, typer.Option("--project", metavar="PROJECT", help="Put it in this project.")
    ] = None,
    no_project: Annotated[bool, typer.Option("--no-project", help="Take it out of its project.")] = False,
    as_json: JsonOpt = False,
) -> int:
    """Put a space in a project, or take it out."""
    space = messages_api().update_space(name, project=project, no_project=no_project)
    if as_json:
        emit_json(space.__dict__)
    else:
        print(f"{space.name}: {f'in project {space.project}' if space.project else 'in no project'}")
    return 0


@space_app.command("list")
def space_list(agent: AsOpt = None, all_projects: AllProjectsOpt = False, as_json: JsonOpt = False) -> int:
    """All spaces, with their parent and number of members (with a focus, its project's)."""
    spaces = messages_api().spaces(agent, all_projects=all_projects)
    if as_json:
        emit_json([s.__dict__ for s in spaces])
        return 0
    if not spaces:
        note("no spaces")
    for space in spaces:
        parent = f" (in {space.parent})" if space.parent else ""
        parent += f" [{space.project}]" if space.project else ""
        description = f"  {cell(space.description)}" if space.description else ""
        print(f"{space.name}{parent}  {space.members} member(s){description}")
    return 0


@space_app.command("join")
def space_join(name: Annotated[str, typer.Argument(help="The space.")], agent: AsOpt = None) -> int:
    """Join a space (yourself, or --as NAME)."""
    joined = messages_api().join(name, agent)
    print(f"{settings().me(agent)} {'joined' if joined else 'is already in'} {name}")
    return 0


@space_app.command("leave")
def space_leave(name: Annotated[str, typer.Argument(help="The space.")], agent: AsOpt = None) -> int:
    """Leave a space."""
    left = messages_api().leave(name, agent)
    print(f"{settings().me(agent)} {'left' if left else 'was not in'} {name}")
    return 0


@space_app.command("members")
def space_members(name: Annotated[str, typer.Argument(help="The space.")], as_json: JsonOpt = False) -> int:
    """Who is in a space."""
    members = messages_api().members(name)
    if as_json:
        emit_json([{"agent": agent, "joinedAt": joined} for agent, joined in members])
        return 0
    if not members:
        note(f"{name}: no members")
    for agent, _ in members:
        print(agent)
    return 0


@space_app.command("send")
def space_send(
    name: Annotated[str, typer.Argument(help="The space.")],
    message: MessageArg = None,
    file: FileOpt = None,
    priority: PriorityOpt = "normal",
    sender: FromOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Send a message to every member of a space; prints its id."""
    text = read_message(f"space send {name}", message, file)
    _sent(messages_api().space_send(name, text, sender=sender, priority=priority_choice(priority)), as_json)
    return 0


@space_app.command("read")
def space_read(
    name: Annotated[str, typer.Argument(help="The space.")],
    reader: AsOpt = None,
    since: SinceOpt = None,
    limit: LimitOpt = None,
    unread: Annotated[bool, typer.Option("--unread", help="Only what you have not read.")] = False,
    as_json: JsonOpt = False,
) -> int:
    """Messages sent to a space, oldest first."""
    _render(messages_api().space_read(name, reader, since=since, limit=limit, unread=unread), as_json)
    return 0


# -- agents ------------------------------------------------------------------------------------------


@agents_app.callback(invoke_without_command=True)
def agents(
    ctx: typer.Context,
    online: Annotated[
        bool, typer.Option("--online", help="Only live sessions and agents seen lately.")
    ] = False,
    as_json: JsonOpt = False,
) -> int:
    """Every session with its live status, and every outside agent with when it was last seen."""
    if ctx.invoked_subcommand is not None:
        return 0
    rows = messages_api().agents(online)
    if as_json:
        emit_json([row.to_json() for row in rows])
        return 0
    for row in rows:
        seen = f"  last seen {row.last_seen[:19].replace('T', ' ')}" if row.last_seen else ""
        where = f"  on {cell(row.machine)}" if row.machine else ""
        presence = f" ({row.presence})" if row.presence and row.presence != row.status else ""
        print(f"{row.name}  {row.kind}  {cell(row.status)}{presence}{where}{seen}")
    return 0


@agents_app.command("register")
def agents_register(
    name: Annotated[str, typer.Argument(help="The outside agent's name.")],
    takeover: TakeoverOpt = False,
    as_json: JsonOpt = False,
) -> int:
    """Register an outside agent, so that messages can be sent to it."""
    agent = messages_api().register(name, takeover, settings().holder)
    if as_json:
        emit_json(
            {
                "name": agent.name,
                "registeredAt": agent.registered_at,
                "lastSeen": agent.last_seen,
                "machine": agent.machine,
                "session": agent.session,
                "tookOverFrom": agent.took_over_from,
            }
        )
    else:
        print(agent.name)
    if agent.took_over_from:
        note(f"{agent.name}: taken over from session {agent.took_over_from}")
    return 0


@agents_app.command("heartbeat")
def agents_heartbeat(
    agent: AsOpt = None,
    status: Annotated[str | None, typer.Option("--status", help="A short status text.")] = None,
    takeover: TakeoverOpt = False,
) -> int:
    """Say that you are alive (and what you are doing)."""
    print(messages_api().heartbeat(agent, status, takeover=takeover, session=settings().holder))
    return 0


COMMANDS = frozenset({"space", "agents"} | {f"msg {c.name}" for c in msg_app.registered_commands})
"""What this group serves: ``msg`` by subcommand (``msg send``), so that issue 16's ``msg`` commands
(:mod:`dev_sessions.cli.messaging_extras`) are not built for these (see ``cli/app.py``)."""


def register(app: typer.Typer) -> None:
    add_msg(app)
    app.add_typer(space_app, name="space")
    app.add_typer(agents_app, name="agents")


def add_msg(app: typer.Typer) -> None:
    """The ``msg`` group, once (this group and the extras' may both want it)."""
    if not any(group.typer_instance is msg_app for group in app.registered_groups):
        app.add_typer(msg_app, name="msg")
