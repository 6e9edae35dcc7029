"""What the dashboard's hub sends a conversation's stream, look after look (no server, no I/O)."""

from __future__ import annotations

from typing import Any

from dev_sessions.backend import LogItem
from dev_sessions.config import Settings
from dev_sessions.dashboard.hub import Conversation, Hub, Look, Stream

T = "2026-01-01T00:00:00Z"


def look(items: list[LogItem]) -> Look:
    return Look(rows=[], usage={}, conversations={"s": Conversation(items=items)}, messages_stamp=())


def sent_items(stream: Stream) -> list[dict[str, Any]]:
    found = []
    while not stream.queue.empty():
        item = stream.queue.get_nowait()
        assert item is not None
        if item[0] == "items":
            found.append(item[1])
    return found


def test_new_items_are_sent_after_what_the_page_has() -> None:
    hub, stream = Hub(Settings.from_env()), Stream("conversation", "csrf", session_id="s")
    hub._send(stream, look([LogItem(T, "user", "hi")]))
    hub._send(stream, look([LogItem(T, "user", "hi"), LogItem(T, "assistant", "hello")]))
    first, second = sent_items(stream)
    assert (first["from"], first["count"]) == (0, 1)
    assert (second["from"], second["count"]) == (1, 2)
    assert "hello" in second["html"] and "hi<" not in second["html"]


def test_a_log_that_changed_in_place_is_sent_again_from_the_first_change() -> None:
    # Codex's log while a turn runs: an in-progress turn, which becomes the prompt, the reply and
    # the turn's end. Counting items alone left the page with the in-progress line and no reply.
    hub, stream = Hub(Settings.from_env()), Stream("conversation", "csrf", session_id="s")
    hub._send(stream, look([LogItem(T, "user", "one"), LogItem("", "turn", "turn inProgress after 0.0 s")]))
    done = [
        LogItem(T, "user", "one"),
        LogItem(T, "user", "two"),
        LogItem(T, "assistant", "two"),
        LogItem(T, "turn", "turn completed after 0.2 s"),
    ]
    hub._send(stream, look(done))
    hub._send(stream, look(done))  # nothing new: nothing sent
    _, changed = sent_items(stream)
    assert (changed["from"], changed["count"]) == (1, 4)
    assert "inProgress" not in changed["html"] and "turn completed" in changed["html"]


def test_a_new_conversation_is_sent_from_the_start() -> None:
    hub, stream = Hub(Settings.from_env()), Stream("conversation", "csrf", session_id="s")
    hub._send(stream, look([LogItem(T, "user", "old"), LogItem(T, "assistant", "old")]))
    hub._send(stream, look([LogItem(T, "user", "new")]))  # /clear
    _, fresh = sent_items(stream)
    assert (fresh["from"], fresh["count"]) == (0, 1) and "new" in fresh["html"]


class TurnEndsBetweenReads:
    """A Codex thread whose turn ends right after the hub's early read of its log."""

    def __init__(self) -> None:
        from dev_sessions.store import Session

        self.session = Session(id="s", internal_id="thread", cli="codex", path="/")
        self.ended = False

    def logs(self, sid: str) -> list[LogItem]:
        if not self.ended:
            return [LogItem(T, "user", "hi"), LogItem("", "turn", "turn inProgress after 0.0 s")]
        return [
            LogItem(T, "user", "hi"),
            LogItem(T, "assistant", "hello"),
            LogItem("", "turn", "turn completed"),
        ]

    def list_sessions(self) -> list[Any]:
        from dev_sessions.backend import Status

        self.ended = True  # the turn ended between the early read and the list
        return [(self.session, Status("idle", source="app-server"))]

    def usage(self) -> Any:
        from dev_sessions.usage import Usage, UsageReport

        return UsageReport(sessions=(), total=Usage())


def test_a_codex_log_is_read_after_its_status() -> None:
    fake = TurnEndsBetweenReads()
    hub = Hub(Settings.from_env(), sessions=lambda: fake)  # type: ignore[arg-type,return-value]
    before = Look(
        rows=[], usage={}, conversations={"s": Conversation(session=fake.session)}, messages_stamp=()
    )
    early = hub._logs({"s"}, before)
    assert early["s"].items[-1].text.startswith("turn inProgress")
    found = hub._look({"s"}, before, early)
    assert found.rows[0][1].state == "idle"
    assert found.conversations["s"].items[-1].text == "turn completed"
