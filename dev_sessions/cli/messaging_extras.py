"""Issue 16's messaging commands: ``msg react|unreact|reactions|pin|unpin|pinned|conversations|prune``,
and ``context`` and ``stats``.

Apart from :mod:`dev_sessions.cli.messaging` so that ``msg send`` and the other quick ``msg`` commands
do not build them: typer makes every registered command into a click command at start-up, about half
a millisecond each (``cli/app.py`` chooses the groups by the first two words of the command line).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from dev_sessions.cli.context import messages_api, settings
from dev_sessions.cli.messaging import AsOpt, JsonOpt, _render, add_msg, msg_app, parse_message_id
from dev_sessions.cli.output import emit_json, note
from dev_sessions.terminal import cell

if TYPE_CHECKING:
    from dev_sessions.messaging.results import Context

ActAsOpt = Annotated[str | None, typer.Option("--as", metavar="NAME", help="Act as this agent.")]
MessageIdArg = Annotated[str, typer.Argument(metavar="MSGID", help="The message.")]
EmojiArg = Annotated[str, typer.Argument(metavar="EMOJI", help="One emoji (👍), or a :short_name:.")]


_MSG: dict[str, Callable[..., int]] = {}


def _msg(name: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Marks a ``msg`` subcommand, added to ``msg`` by :func:`register` only."""

    def mark(function: Callable[..., int]) -> Callable[..., int]:
        _MSG[name] = function
        return function

    return mark


def _first_line(text: str, width: int = 60) -> str:
    line = cell(text.strip().splitlines()[0] if text.strip() else "")
    return line if len(line) <= width else line[: width - 1] + "…"


@_msg("react")
def msg_react(
    message_id: MessageIdArg, emoji: EmojiArg, agent: ActAsOpt = None, as_json: JsonOpt = False
) -> int:
    """React to a message with an emoji."""
    number = parse_message_id(message_id)
    added = messages_api().react(number, emoji, agent)
    me = settings().me(agent)
    if as_json:
        emit_json({"message": number, "emoji": emoji, "agent": me, "reacted": added})
    else:
        print(f"{me} {'reacted' if added else 'had already reacted'} {emoji} to {number}")
    return 0


@_msg("unreact")
def msg_unreact(
    message_id: MessageIdArg, emoji: EmojiArg, agent: ActAsOpt = None, as_json: JsonOpt = False
) -> int:
    """Take back your reaction to a message."""
    number = parse_message_id(message_id)
    removed = messages_api().unreact(number, emoji, agent)
    me = settings().me(agent)
    if as_json:
        emit_json({"message": number, "emoji": emoji, "agent": me, "removed": removed})
    else:
        said = f"took back {emoji} on" if removed else f"had not reacted {emoji} to"
        print(f"{me} {said} {number}")
    return 0


@_msg("reactions")
def msg_reactions(message_id: MessageIdArg, as_json: JsonOpt = False) -> int:
    """The reactions to a message: each emoji, how many, and who."""
    found = messages_api().reactions(parse_message_id(message_id))
    if as_json:
        emit_json([r.to_json() for r in found])
        return 0
    if not found:
        note("no reactions")
    for reaction in found:
        print(f"{cell(reaction.emoji)}  {reaction.count}  {', '.join(reaction.agents)}")
    return 0


@_msg("pin")
def msg_pin(message_id: MessageIdArg, agent: ActAsOpt = None, as_json: JsonOpt = False) -> int:
    """Pin a message in its space or conversation (msg prune keeps it)."""
    number = parse_message_id(message_id)
    changed = messages_api().pin(number, agent)
    if as_json:
        emit_json({"message": number, "pinned": True, "changed": changed})
    else:
        print(f"{number} {'pinned' if changed else 'was pinned already'}")
    return 0


@_msg("unpin")
def msg_unpin(message_id: MessageIdArg, as_json: JsonOpt = False) -> int:
    """Unpin a message."""
    number = parse_message_id(message_id)
    changed = messages_api().unpin(number)
    if as_json:
        emit_json({"message": number, "pinned": False, "changed": changed})
    else:
        print(f"{number} {'unpinned' if changed else 'was not pinned'}")
    return 0


@_msg("pinned")
def msg_pinned(
    space: Annotated[
        str | None, typer.Option("--space", "-s", metavar="SPACE", help="The pins of this space.")
    ] = None,
    peer: Annotated[
        str | None,
        typer.Option("--with", metavar="NAME", help="The pins of your direct conversation with NAME."),
    ] = None,
    reader: AsOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Pinned messages: of a space, of a direct conversation, or (neither) all of yours."""
    pins = messages_api().pinned(space, peer, reader)
    if as_json:
        emit_json([p.to_json() for p in pins])
        return 0
    if not pins:
        note("nothing pinned")
    for pin in pins:
        _render([pin.message], False)
        print(f"    (pinned by {pin.pinned_by} {pin.pinned_at[:19].replace('T', ' ')})")
    return 0


@_msg("conversations")
def msg_conversations(reader: AsOpt = None, as_json: JsonOpt = False) -> int:
    """The conversations you are in (spaces and direct ones), the latest first."""
    found = messages_api().conversations(reader)
    if as_json:
        emit_json([c.to_json() for c in found])
        return 0
    if not found:
        note("no conversations")
    for conversation in found:
        last = conversation.last
        name = conversation.name
        where = f"{name} (space)" if conversation.kind == "space" else f"with {name}"
        unread = f", {conversation.unread} unread" if conversation.unread else ""
        people = ", ".join(conversation.participants)
        print(f"{cell(where)}  {conversation.messages} message(s){unread}  [{cell(people)}]")
        stamp = last.created_at[:19].replace("T", " ")
        print(f"    last: {last.id}  {stamp}  from {last.sender}: {_first_line(last.body)}")
    return 0


@_msg("prune")
def msg_prune(
    older_than: Annotated[
        str,
        typer.Option("--older-than", metavar="AGE", help="Delete messages older than this (30d, 12h)."),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would go.")] = False,
    as_json: JsonOpt = False,
) -> int:
    """Delete old messages (pinned ones stay); replies that stay keep their thread."""
    done = messages_api().prune(older_than, dry_run)
    if as_json:
        emit_json(done.to_json())
        return 0
    verb = "would prune" if done.dry_run else "pruned"
    extra = f", kept {done.kept_pinned} pinned" if done.kept_pinned else ""
    if done.detached:
        extra += f", {done.detached} repl{'y' if done.detached == 1 else 'ies'} kept without its parent"
    print(f"{verb} {done.pruned} message(s) from before {done.before}{extra}")
    return 0


# -- context and stats -------------------------------------------------------------------------------


def context(agent: ActAsOpt = None, as_json: JsonOpt = False) -> int:
    """Who you are and what waits for you: run it first when you start work."""
    found = messages_api().context(agent)
    if as_json:
        emit_json(found.to_json())
        return 0
    for line in _context_lines(found):
        print(line)
    return 0


def _context_lines(found: Context) -> list[str]:
    if found.kind == "session":
        what = f"a {found.cli} session" if found.cli else "a session"
        about = f": {cell(found.description)}" if found.description else ""
        lines = [f"you are {found.name}, {what} on {found.machine}{about}", f"parent: {found.parent}"]
    else:
        held = f", held by session {found.holder}" if found.holder else ""
        lines = [f"you are {found.name}, an outside agent on {found.machine}{held}"]
    latest = found.latest_unread
    if latest is not None:
        lines.append(
            f"unread: {found.unread} (latest: {latest.id} from {latest.sender}: {_first_line(latest.body)}; "
            "`dev-sessions msg read --unread`)"
        )
    else:
        lines.append("unread: 0")
    if found.mentions:
        lines.append(f"mentions: {len(found.mentions)} lately")
        for message in found.mentions:
            where = f" in {message.space}" if message.space else ""
            state = f" ({message.receipt.state})" if message.receipt is not None else ""
            lines.append(f"  {message.id} from {message.sender}{where}{state}: {_first_line(message.body)}")
    lines.append(f"spaces: {', '.join(found.spaces) if found.spaces else 'none'}")
    if found.sessions:
        lines.append(f"your sessions: {', '.join(found.sessions)}")
    if found.focus:
        lines.append(f"focus: {cell(found.focus)}")
    if found.leases:
        lines.append(f"leases: {len(found.leases)}")
    return lines


def stats(as_json: JsonOpt = False) -> int:
    """How much there is: sessions, agents, messages, unread, spaces, pins, projects, live leases; where
    messages live."""
    found = messages_api().stats()
    data = found.to_json()
    if as_json:
        emit_json(data)
        return 0
    width = max(len(key) for key in data)
    for key, value in data.items():
        print(f"{key.ljust(width)}  {value}")
    return 0


COMMANDS = frozenset({"context", "stats"} | {f"msg {name}" for name in _MSG})


def register(app: typer.Typer) -> None:
    for name, function in _MSG.items():
        if not any(c.name == name for c in msg_app.registered_commands):
            msg_app.command(name)(function)
    add_msg(app)
    app.command("context")(context)
    app.command("stats")(stats)
