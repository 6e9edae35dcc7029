"""What the TUI shows, as pure functions of the library's values: table cells, conversation lines,
dialogs and messages as Rich ``Text``.

Everything an agent or a message wrote is other agents' text: it is shown as text, never as markup
(``Text``, not a markup string) and with every control character as its picture
(:mod:`dev_sessions.terminal`), so that a reply cannot restyle or drive the terminal. Times go through
a :class:`Clock`, so that the tests can fix "now" and the time zone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo

from rich.text import Text

from dev_sessions.backend import Dialog, LogItem, Status
from dev_sessions.durations import format_age
from dev_sessions.messaging.records import Message, Space
from dev_sessions.store import Session, parse_iso
from dev_sessions.terminal import cell, for_terminal
from dev_sessions.usage import Usage, compact

STATE_STYLES = {
    "idle": "green",
    "working": "bold yellow",
    "waiting_for_input": "bold magenta",
    "starting": "cyan",
    "exited": "dim red",
    "error": "bold red",
    "unreachable": "dim red",
}
ROLE_STYLES = {
    "user": "bold cyan",
    "assistant": "bold green",
    "tool": "yellow",
    "result": "dim",
    "turn": "dim",
}
SESSION_COLUMNS = ("ID", "CLI", "HOST", "STATUS", "AGE", "ACTIVE", "TOKENS", "DESCRIPTION", "PATH")
"""The long columns last, so that a narrow terminal cuts a path, not the status or the tokens."""
MESSAGE_COLUMNS = ("ID", "TIME", "FROM", "IN", "BODY")
PRIORITY_STYLES = {"low": "dim", "normal": "", "high": "bold yellow", "urgent": "bold red"}


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Clock:
    """Now, and the zone times are shown in (None: the machine's local time)."""

    now: Callable[[], datetime] = field(default=_utc_now)
    zone: tzinfo | None = None

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone)

    def age(self, stamp: str | None) -> str:
        """How long ago an ISO time was, as ``format_age`` writes it (``?`` for none)."""
        moment = parse_iso(stamp) if stamp else None
        if moment is None:
            return "?"
        return format_age((self.now() - moment).total_seconds())

    def time(self, stamp: str | None) -> str:
        """An ISO time as HH:MM:SS in the shown zone, with the date when it is not today's."""
        moment = parse_iso(stamp) if stamp else None
        if moment is None:
            return ""
        local = self.local(moment)
        if local.date() == self.local(self.now()).date():
            return local.strftime("%H:%M:%S")
        return local.strftime("%Y-%m-%d %H:%M")


PATH_WIDTH = 40
DESCRIPTION_WIDTH = 32


def clip(text: str, width: int, *, keep_end: bool = False) -> str:
    """At most ``width`` characters, an ellipsis where text was cut (a path keeps its end)."""
    if len(text) <= width:
        return text
    return "…" + text[-(width - 1) :] if keep_end else text[: width - 1] + "…"


def tokens(count: int) -> str:
    """A token count, as every face writes it (``usage.compact``: 950, 12.3k, 1.2M)."""
    return compact(count)


def state(status: Status) -> Text:
    return Text(status.state, style=STATE_STYLES.get(status.state, ""))


def session_row(session: Session, status: Status, used: Usage | str | None, clock: Clock) -> tuple[Text, ...]:
    """One line of the sessions table (``SESSION_COLUMNS``); ``used`` is the session's usage, or why
    it is not known."""
    where = clip(cell(session.path), PATH_WIDTH, keep_end=True)
    if session.branch:
        where += f" [{clip(cell(session.branch), PATH_WIDTH // 2, keep_end=True)}]"
    if isinstance(used, Usage):
        spent = Text(tokens(used.tokens), justify="right")
    else:
        spent = Text("?", style="dim", justify="right")
    return (
        Text(session.id, style="bold"),
        Text(session.cli),
        Text(cell(session.host or "local"), style="" if session.host else "dim"),
        state(status),
        Text(clock.age(session.created_at), justify="right"),
        Text(clock.age(session.last_used or session.created_at), justify="right"),
        spent,
        Text(clip(cell(session.description), DESCRIPTION_WIDTH)),
        Text(where),
    )


def usage_line(used: Usage | str | None) -> str:
    """The usage of one session, in full: tokens of each kind, turns and time worked."""
    if used is None:
        return ""
    if isinstance(used, str):
        return f"usage unknown: {cell(used)}"
    return (
        f"tokens: {tokens(used.input)} in, {tokens(used.output)} out, "
        f"{tokens(used.cache_read)} cache read, {tokens(used.cache_write)} cache write · "
        f"{used.turns} turn{'s' if used.turns != 1 else ''} · worked {format_age(used.seconds)}"
    )


def session_header(session: Session, status: Status, used: Usage | str | None) -> Text:
    """The conversation view's first lines: who the session is, what it does now, what it spent."""
    text = Text()
    text.append(session.id, style="bold")
    text.append(f"  {session.cli}")
    if session.host:
        text.append(f" on {cell(session.host)}")
    text.append("  ")
    text.append_text(state(status))
    if status.detail:
        text.append(f" ({cell(status.detail)})", style="dim")
    if session.description:
        text.append(f"  {cell(session.description)}", style="italic")
    text.append("\n")
    text.append(cell(session.path) + (f" [{cell(session.branch)}]" if session.branch else ""), style="dim")
    line = usage_line(used)
    if line:
        text.append("\n" + line, style="dim")
    return text


def log_item(item: LogItem, clock: Clock) -> Text:
    """One entry of a conversation: a turn end as a quiet line, anything else as a labelled block."""
    when = clock.time(item.timestamp)
    if item.role == "turn":
        return Text(f"── {for_terminal(item.text)} {('· ' + when) if when else ''}", style="dim")
    text = Text()
    text.append(f"{item.role}", style=ROLE_STYLES.get(item.role, "bold"))
    if when:
        text.append(f"  {when}", style="dim")
    text.append("\n")
    body = for_terminal(item.text)
    text.append(body, style="dim" if item.role in ("tool", "result") else "")
    return text


def dialog(found: Dialog) -> Text:
    """A question the session waits on, with its numbered options."""
    text = Text()
    text.append("Waiting for an answer: ", style="bold magenta")
    text.append(for_terminal(found.question), style="bold")
    for line in found.context:
        text.append("\n  " + for_terminal(line), style="dim")
    for option in found.options:
        text.append(f"\n  {option.number}. ", style="bold")
        text.append(cell(option.label))
        if option.description:
            text.append(f" - {cell(option.description)}", style="dim")
    text.append("\n  press a to answer", style="dim")
    return text


def message_row(message: Message, clock: Clock) -> tuple[Text, ...]:
    """One line of a message list (``MESSAGE_COLUMNS``): the body's first line only."""
    first = message.body.strip().split("\n", 1)[0]
    unread = message.receipt is not None and message.receipt.read_at is None
    return (
        Text(str(message.id), justify="right"),
        Text(clock.time(message.created_at)),
        Text(cell(message.sender), style="bold" if unread else ""),
        Text(f"#{cell(message.space)}" if message.space else "direct", style="dim"),
        Text(cell(first), style=PRIORITY_STYLES.get(message.priority, "")),
    )


def thread(messages: list[Message], clock: Clock) -> Text:
    """A whole thread, oldest first, with full bodies."""
    text = Text()
    for n, message in enumerate(messages):
        if n:
            text.append("\n\n")
        text.append(f"#{message.id} ", style="dim")
        text.append(cell(message.sender), style="bold")
        if message.space:
            text.append(f" in #{cell(message.space)}", style="dim")
        if message.reply_to is not None:
            text.append(f" (reply to #{message.reply_to})", style="dim")
        if message.priority != "normal":
            text.append(f" {message.priority}", style=PRIORITY_STYLES.get(message.priority, ""))
        text.append(f"  {clock.time(message.created_at)}\n", style="dim")
        text.append(for_terminal(message.body))
        if message.reactions:
            said = "  ".join(
                f"{cell(e)} {len(a)} ({', '.join(cell(n) for n in a)})" for e, a in message.reactions
            )
            text.append(f"\n{said}", style="dim")
    return text


def space_label(space: Space) -> Text:
    text = Text(f"#{cell(space.name)}")
    text.append(f"  {space.members} member{'s' if space.members != 1 else ''}", style="dim")
    return text
