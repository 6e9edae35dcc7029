"""The notice that puts a message into an agent's conversation. Pure: message in, text out (and
whether a conversation's prompts hold it already).

The notice names the sender as the store has it (never as the body claims), gives the message id and
priority, carries the body (cut at 4 KB, saying how to read the rest), and ends with the exact
command to answer. A reply says that no answer is needed unless it asks for one, so that two agents
thanking each other do not loop. Control characters of the body are shown, not sent.
"""

from __future__ import annotations

from collections.abc import Iterable

from dev_sessions.messaging.records import Message
from dev_sessions.terminal import neutralise

BODY_LIMIT = 4096
PASTED_TAG = "<pasted_content"


def _cut(body: str, limit: int) -> tuple[str, int]:
    """The body cut to at most ``limit`` UTF-8 bytes (on a character boundary), and the bytes left out."""
    data = body.encode("utf-8")
    if len(data) <= limit:
        return body, 0
    kept = data[:limit].decode("utf-8", "ignore")
    return kept, len(data) - len(kept.encode("utf-8"))


def head(message: Message, recipient: str) -> str:
    """The notice's first line: one of its own for each message and recipient."""
    where = f" to space {message.space}" if message.space else ""
    about = f", replying to message {message.reply_to}" if message.reply_to else ""
    return (
        f"[dev-sessions] Message {message.id} from {message.sender}{where}{about} "
        f"(priority {message.priority}, for {recipient}):"
    )


def shown(first_line: str, prompts: Iterable[str]) -> bool:
    """Whether one of a conversation's prompts is the notice whose first line this is: a prompt that
    starts with it, or one that Claude wrapped in ``<pasted_content>`` tags (docs/claude-code.md). A
    prompt that merely quotes it further down is not."""
    for prompt in prompts:
        text = prompt.lstrip()
        if text.startswith(PASTED_TAG):
            text = text.partition("\n")[2]
        if text.startswith(first_line):
            return True
    return False


def frame(message: Message, recipient: str, limit: int = BODY_LIMIT) -> str:
    body, left_out = _cut(neutralise(message.body), limit)
    lines = [head(message, recipient), "", body.rstrip("\n")]
    if left_out:
        lines += ["", f"[... {left_out} more bytes: read it all with `dev-sessions msg thread {message.id}`]"]
    lines.append("")
    if message.reply_to:
        lines.append(
            "This is a reply: no answer is needed unless it asks for one. "
            f'To answer: dev-sessions msg reply {message.id} "..."'
        )
    else:
        lines.append(f'To answer: dev-sessions msg reply {message.id} "..."')
    return "\n".join(lines)
