"""The Codex bridge's operations on threads: what each command asks of the app-server.

Each handler takes a request's parameters (``{"thread": ThreadSpec as JSON, "session": id, ...}``, or
for ``create`` the new thread's settings) and returns the answer's JSON. It looks through the
``Connection`` and leaves to ``turns.py`` what the looks mean: which turn a wait follows, when it ends
and how, what a status or a reply is. A refusal is a ``DevSessionsError``, which the bridge turns
into an error answer. The bridge's own operations (``ping``, ``shutdown``, ``exit``) are in
``bridge.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from dev_sessions.backend import choose
from dev_sessions.codex import model, turns
from dev_sessions.codex.connection import (
    REPLAY_GRACE,
    SANDBOX_FOR,
    Connection,
    ThreadSpec,
    Watch,
    thread_config,
)
from dev_sessions.codex.protocol import JsonObject
from dev_sessions.errors import AppServerError, AppServerUnavailable, DialogOpen, NoDialog, UsageError

log = logging.getLogger(__name__)

Handler = Callable[[JsonObject], Awaitable[JsonObject]]


class ThreadOps:
    """The operations on threads, by the names the commands send (``handlers``)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.archived: set[str] = set()  # threads killed through this bridge: their followers stop

    def handlers(self) -> dict[str, Handler]:
        return {
            "create": self.op_create,
            "send": self.op_send,
            "wait": self.op_wait,
            "status": self.op_status,
            "messages": self.op_messages,
            "log": self.op_log,
            "interrupt": self.op_interrupt,
            "respond": self.op_respond,
            "goal": self.op_goal,
            "archive": self.op_archive,
            "usage": self.op_usage,
            "follow": self.op_follow,
        }

    # -- starting and sending ---------------------------------------------------------------------------

    async def op_create(self, p: JsonObject) -> JsonObject:
        approvals = str(p.get("approvals") or "never")
        params: JsonObject = {
            "cwd": p["cwd"],
            "approvalPolicy": approvals,
            "sandbox": SANDBOX_FOR.get(approvals),
        }
        if p.get("model"):
            params["model"] = p["model"]
        config = thread_config(p.get("session"))
        if config:
            params["config"] = config
        result = await self.conn.call("thread/start", params)
        thread = result.get("thread") or {}
        watch = self.conn.watch(str(thread["id"]))
        watch.subscribed = True
        watch.status = thread.get("status") or {"type": "idle"}
        if p.get("collaboration"):
            # thread/start takes no mode: it is a thread setting, kept in the rollout from the first turn.
            model_name = result.get("model") or p.get("model")
            await self.set_collaboration(str(thread["id"]), str(p["collaboration"]), model_name)
        if p.get("name"):
            await self.conn.call("thread/name/set", {"threadId": thread["id"], "name": str(p["name"])})
        return {"threadId": thread["id"], "model": result.get("model"), "rollout": thread.get("path")}

    async def set_collaboration(self, thread_id: str, mode: str, model_name: str | None) -> None:
        """Put the thread in a collaboration mode for the turns that start from now on."""
        if not model_name:
            # The mode's settings must name a model: keep the one the thread has.
            read = await self.conn.call("thread/read", {"threadId": thread_id})
            model_name = (read.get("thread") or {}).get("model")
        if not model_name:
            raise UsageError(f"{thread_id}: cannot set the collaboration mode: the thread names no model")
        await self.conn.call(
            "thread/settings/update",
            {"threadId": thread_id, "collaborationMode": model.collaboration_mode(mode, str(model_name))},
        )

    async def op_send(self, p: JsonObject) -> JsonObject:
        spec = ThreadSpec.from_json(p["thread"])
        watch = await self.conn.subscribe(spec)
        client_id = str(p.get("clientId") or uuid.uuid4())
        text_input = [{"type": "text", "text": p["text"]}]
        state, detail = watch.state
        if state == "waiting_for_input":
            # Text sent now would be queued behind a turn that cannot move until someone answers.
            dialog = await self.conn.waiting_dialog(watch)
            raise DialogOpen(
                session_id=str(p.get("session") or spec.id),
                question=dialog.question if dialog else detail,
                options=[str(o) for o in dialog.options] if dialog else [],
            )
        active = await self.conn.active_turn(watch) if state != "idle" else None
        collaboration = p.get("collaboration")
        if collaboration and p.get("steer"):
            raise UsageError(f"{p.get('session', spec.id)}: a steered prompt keeps the running turn's mode")
        if collaboration:
            await self.set_collaboration(spec.id, str(collaboration), spec.model)
        mode = turns.send_mode(active, steer=bool(p.get("steer")))
        if mode == "steered":
            if active is None:
                raise UsageError(
                    f"{p.get('session', spec.id)}: no running turn to steer; send without --steer"
                )
            result = await self.conn.call(
                "turn/steer",
                {
                    "threadId": spec.id,
                    "expectedTurnId": active,
                    "input": text_input,
                    "clientUserMessageId": client_id,
                },
            )
            return {"mode": mode, "turnId": result.get("turnId") or active, "clientId": client_id}
        if mode == "queued":
            await self.conn.call(
                "thread/queue/add",
                {"threadId": spec.id, "clientUserMessageId": client_id, "input": text_input},
            )
            return {"mode": mode, "turnId": None, "clientId": client_id}
        result = await self.conn.call(
            "turn/start", {"threadId": spec.id, "input": text_input, "clientUserMessageId": client_id}
        )
        turn = result.get("turn") or {}
        return {"mode": mode, "turnId": turn.get("id"), "clientId": client_id}

    # -- waiting ----------------------------------------------------------------------------------------

    async def op_wait(self, p: JsonObject) -> JsonObject:
        spec = ThreadSpec.from_json(p["thread"])
        timeout = p.get("timeout")
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        target = turns.Target.from_json(p)
        goal = bool(p.get("goal"))
        announced = False
        while True:
            watch = self.conn.watch(spec.id)
            seen = watch.version
            try:
                watch = await self.conn.subscribe(spec)
                if goal:
                    found = await self.goal_outcome(watch)
                else:
                    found = await self.turn_outcome(watch, target)
            except AppServerUnavailable:
                found = None  # it died under us: the next round restarts it and looks again
                await asyncio.sleep(0.2)
            if found is not None:
                return found
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return turns.timed_out()
            if not announced:
                # Once, as the wait starts to block: tests wait for it before they act.
                what = "the goal" if goal else "the turn"
                log.info("%s: waiting for %s to end", p.get("session") or spec.id, what)
                announced = True
            await watch.changed_since(seen, remaining if remaining is not None else 30.0)

    async def turn_outcome(self, watch: Watch, target: turns.Target) -> JsonObject | None:
        """One look for the turn ``target`` names: its outcome, or None while it runs."""
        turn_id = target.turn_id
        if target.follows_running:
            # Nothing sent through us: follow whatever turn runs now.
            turn_id = await self.conn.active_turn(watch) if watch.state[0] != "idle" else None
            if turn_id is None:
                return turns.idle()
        turn = await self.conn.find_turn(watch, turn_id, target.client_id)
        decided = turns.turn_outcome(watch, turn, target)
        if isinstance(decided, turns.AskDialog):
            return decided.outcome(await self.conn.waiting_dialog(watch))
        if isinstance(decided, turns.CheckQueue):
            if await self.conn.queued(watch, decided.client_id):
                return None
            # Between leaving the queue and showing as a turn, a prompt is in neither: look once more.
            await watch.changed_since(watch.version, REPLAY_GRACE)
            again = await self.conn.find_turn(watch, turn_id, target.client_id)
            if again is None and not await self.conn.queued(watch, decided.client_id):
                return turns.left_queue()
            return None
        return decided

    async def goal_outcome(self, watch: Watch) -> JsonObject | None:
        result = await self.conn.call("thread/goal/get", {"threadId": watch.id})
        decided = turns.goal_outcome(watch, result.get("goal"))
        if isinstance(decided, turns.AskDialog):
            return decided.outcome(await self.conn.waiting_dialog(watch))
        return decided

    # -- looking ----------------------------------------------------------------------------------------

    async def op_status(self, p: JsonObject) -> JsonObject:
        spec = ThreadSpec.from_json(p["thread"])
        client = await self.conn.connection(start=False)
        if client is None:
            return turns.at_rest()
        try:
            result = await client.call("thread/read", {"threadId": spec.id})
        except AppServerError as err:
            return turns.unknown_thread(err.detail)
        watch = self.conn.watch(spec.id)
        watch.status = (result.get("thread") or {}).get("status") or {}
        answer = turns.status(watch)
        if answer["state"] == "waiting_for_input":
            watch = await self.conn.subscribe(spec, start=False)
            answer["dialog"] = turns.dialog_json(await self.conn.waiting_dialog(watch))
        return answer

    async def op_messages(self, p: JsonObject) -> JsonObject:
        spec = ThreadSpec.from_json(p["thread"])
        count = int(p.get("count") or 1)
        found: list[str] = []
        async for page in self.conn.turn_pages(spec.id):
            found = model.agent_messages(reversed(page)) + found
            if len(found) >= count:
                break
        return {"messages": found[-count:]}

    async def op_log(self, p: JsonObject) -> JsonObject:
        spec = ThreadSpec.from_json(p["thread"])
        listed: list[JsonObject] = []
        async for page in self.conn.turn_pages(spec.id, newest_first=False, full=True, page=50):
            listed += page
        return {"items": [item.__dict__ for item in model.log_items(listed)]}

    async def op_follow(self, p: JsonObject) -> JsonObject:
        """The thread's events after ``after`` (a sequence number this op gave), waiting up to
        ``timeout`` seconds for one. Without ``after``: where the stream stands now (``seq``, and the
        thread's state and tokens, for a follower's first line) and the backlog ``start`` asks for
        (``_backlog``). ``gone``: the thread was archived (``kill``); ``missed``: events were dropped
        before the follower asked (it fell behind)."""
        spec = ThreadSpec.from_json(p["thread"])
        if spec.id in self.archived:
            return {"seq": 0, "events": [], "gone": True}
        watch = await self.conn.subscribe(spec)
        after = p.get("after")
        if after is None:
            answer: JsonObject = {"seq": watch.seq, "state": watch.state[0], "tokens": watch.tokens}
            answer["events"] = await self._backlog(watch, str(p.get("start") or "now"))
            return answer
        after = int(after)
        await watch.fed_since(after, min(float(p.get("timeout") or 5.0), 60.0))
        oldest = watch.feed[0][0] if watch.feed else watch.seq + 1
        return {
            "seq": watch.seq,
            "events": watch.events_after(after),
            "gone": spec.id in self.archived,
            "missed": oldest > after + 1 and watch.seq > after,
        }

    async def _backlog(self, watch: Watch, start: str) -> list[JsonObject]:
        """The events before the stream's point now: the whole conversation (``all``), the last turn's
        (``turn``) or none (``now``).

        The last turn this bridge saw start is its own record, taken at the stream's point (a command
        running now is in it). Else the thread's turns are read, which takes a moment in which more
        events may be recorded: each event of an item or a turn carries a key
        (``model.follow_events``), and the follower leaves out those it has had in the backlog. Codex
        lists an item only once it is done: what this bridge saw of a running turn and the listing
        lacks (a command running) is added."""
        if start not in ("all", "turn"):
            return []
        fed = watch.last_turn()
        if start == "turn" and fed is not None:
            return fed
        listed: list[JsonObject] = []
        async for page in self.conn.turn_pages(watch.id, newest_first=False, full=True, page=50):
            listed += page
        events = model.log_events(listed)
        if start == "turn":
            prompts = [n for n, event in enumerate(events) if event.get("kind") == "prompt"]
            events = events[prompts[-1] :] if prompts else []
        if fed and listed and model.turn_outcome(listed[-1]) is None:
            keys = {key for event in events if (key := event.get("key"))}
            if fed[0].get("key") in keys:  # the running turn is the one this bridge saw start
                talk = ("tool", "result", "reply", "dialog")
                events += [e for e in fed if e.get("kind") in talk and e.get("key") not in keys]
        return events

    async def op_usage(self, p: JsonObject) -> JsonObject:
        """The thread's token totals (the last ``thread/tokenUsage/updated`` this bridge received;
        None when it has received none) and its finished turns with their durations. Never starts the
        app-server."""
        spec = ThreadSpec.from_json(p["thread"])
        watch = self.conn.watch(spec.id)
        finished, millis = 0, 0
        if await self.conn.connection(start=False) is not None:
            try:
                async for page in self.conn.turn_pages(spec.id, page=100):
                    done = [t for t in page if t.get("status") in ("completed", "interrupted", "failed")]
                    finished += len(done)
                    millis += sum(t["durationMs"] for t in done if isinstance(t.get("durationMs"), int))
            except AppServerError as err:  # a thread this app-server has not loaded
                log.info("usage of %s: %s", spec.id, err.detail)
        return {"tokens": watch.tokens, "turns": finished, "seconds": millis / 1000}

    # -- acting on a turn -------------------------------------------------------------------------------

    async def op_interrupt(self, p: JsonObject) -> JsonObject:
        spec = ThreadSpec.from_json(p["thread"])
        client = await self.conn.connection(start=False)
        if client is None:
            return {"interrupted": False}
        watch = await self.conn.subscribe(spec, start=False)
        turn_id = await self.conn.active_turn(watch)
        if turn_id is None:
            return {"interrupted": False}
        await self.conn.call("turn/interrupt", {"threadId": spec.id, "turnId": turn_id})
        deadline = time.monotonic() + 5.0
        while turn_id not in watch.finished and time.monotonic() < deadline:
            await watch.changed_since(watch.version, deadline - time.monotonic())
        return {"interrupted": True, "turnId": turn_id}

    async def op_respond(self, p: JsonObject) -> JsonObject:
        spec = ThreadSpec.from_json(p["thread"])
        watch = await self.conn.subscribe(spec)
        session = str(p.get("session") or spec.id)
        dialog = await self.conn.waiting_dialog(watch)
        request = watch.pending()
        if dialog is None or request is None:
            raise NoDialog(session_id=session, status=watch.state[0])
        option, typed = choose(session, dialog, str(p["answer"]))
        client = await self.conn.connection(start=True)
        assert client is not None
        reply = watch.answer(request, option, typed)
        if reply.more:
            return {"chosen": f"{option.number}. {typed or option.label}", "more": True}
        if reply.result is not None:
            await client.reply(request.id, reply.result)
        else:
            await client.reply_error(request.id, -32000, str(reply.error))
        watch.resolved(request)
        return {"chosen": f"{option.number}. {typed if typed is not None else option.label}"}

    async def op_goal(self, p: JsonObject) -> JsonObject:
        spec = ThreadSpec.from_json(p["thread"])
        await self.conn.subscribe(spec)
        action = p.get("action") or "get"
        if action == "get":
            return {"goal": (await self.conn.call("thread/goal/get", {"threadId": spec.id})).get("goal")}
        if action == "clear":
            await self.conn.call("thread/goal/clear", {"threadId": spec.id})
            return {"goal": None}
        params: JsonObject = {"threadId": spec.id}
        if p.get("objective"):
            params["objective"] = p["objective"]
        if p.get("budget") is not None:
            params["tokenBudget"] = int(p["budget"])
        params["status"] = {"set": "active", "resume": "active", "pause": "paused"}.get(str(action), "active")
        return {"goal": (await self.conn.call("thread/goal/set", params)).get("goal")}

    async def op_archive(self, p: JsonObject) -> JsonObject:
        spec = ThreadSpec.from_json(p["thread"])
        try:
            await self.conn.call("thread/archive", {"threadId": spec.id})
        except AppServerError as err:
            # Already archived or never persisted: nothing left to tidy.
            log.info("archive %s: %s", spec.id, err.detail)
        self.archived.add(spec.id)
        watch = self.conn.watches.pop(spec.id, None)
        if watch is not None:
            watch.record([{"kind": "status", "state": "exited", "timestamp": model.stamp_now()}])
        return {}
