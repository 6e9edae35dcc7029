"""The dashboard's HTML, rendered on the server: pure functions from the library's records to text.

Every value that came from anyone (ids, descriptions, paths, prompts, replies, message bodies, dialog
options, names) goes through :func:`esc` (``html.escape``, quotes too) and nowhere else: no template
engine, no markup in data. Times are ``<time datetime=...>`` elements that the page's script shows
as "3 min ago" on the browser's clock, so that an idle page needs nothing from the server.
No I/O here.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from urllib.parse import quote, urlencode

from dev_sessions.backend import Dialog, LogItem, Status
from dev_sessions.messaging.records import AgentInfo, Message, Space
from dev_sessions.store import Session
from dev_sessions.usage import SessionUsage, compact

ROLES = {"user": "prompt", "assistant": "reply", "tool": "tool call", "result": "tool result", "turn": "turn"}


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def page(title: str, body: str, *, csrf: str = "", stream: str = "", nav: str = "") -> str:
    """A whole page. ``stream``: the event stream the page's script follows; ``csrf``: the token its
    forms and requests carry."""
    links = "".join(
        f'<a href="{href}"{" aria-current=page" if nav == name else ""}>{label}</a>'
        for name, href, label in (("sessions", "/", "Sessions"), ("messages", "/messages", "Messages"))
    )
    meta = f'<meta name="csrf" content="{esc(csrf)}">' if csrf else ""
    stream_attr = f' data-stream="{esc(stream)}"' if stream else ""
    logout = (
        '<form method="post" action="/logout" class="act logout">'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}"><button>Log out</button></form>'
        if csrf
        else ""
    )
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta}<title>{esc(title)} · dev-sessions</title>"
        '<link rel="stylesheet" href="/static/dashboard.css">'
        '<script src="/static/dashboard.js" defer></script></head>'
        f"<body{stream_attr}><header><strong class=brand>dev-sessions</strong><nav>{links}</nav>"
        f'<span id="live" class="live" title="live updates">●</span>{logout}</header>'
        '<div id="flash" role="status" aria-live="polite"></div>'
        f'<main id="main">{body}</main></body></html>\n'
    )


def login_needed(reason: str) -> str:
    return page(
        "Log in",
        "<section class=card><h1>Log in</h1>"
        f"<p>{esc(reason)}</p>"
        "<p>Open the login URL that <code>dev-sessions dashboard</code> printed. Each URL works once, "
        "for a few minutes; run <code>dev-sessions dashboard</code> again for a new one (it says where "
        "the running dashboard is).</p></section>",
    )


def error_page(title: str, message: str, *, csrf: str = "") -> str:
    return page(title, f"<section class=card><h1>{esc(title)}</h1><p>{esc(message)}</p></section>", csrf=csrf)


def when(iso: str | None, empty: str = "—") -> str:
    if not iso:
        return empty
    return f'<time datetime="{esc(iso)}">{esc(iso)}</time>'


def number(n: int) -> str:
    """A token count, as every face writes it (``usage.compact``: 950, 12.3k, 1.2M)."""
    return compact(n)


def tokens_cell(usage: SessionUsage | str | None) -> str:
    if usage is None:
        return '<span class=muted title="not counted yet">…</span>'
    if isinstance(usage, str):
        return f'<span class=muted title="{esc(usage)}">?</span>'
    if usage.error is not None:
        return f'<span class=muted title="{esc(usage.error)}">?</span>'
    u = usage.usage
    detail = (
        f"input {u.input}, output {u.output}, cache read {u.cache_read}, cache write {u.cache_write}; "
        f"{u.turns} turn(s), {u.seconds:.0f} s worked"
    )
    cost = f" · {usage.cost:.2f}" if usage.cost is not None else ""
    return f'<span title="{esc(detail)}">{number(u.tokens)}{cost}</span>'


def state_badge(status: Status) -> str:
    title = status.detail or (status.dialog.question if status.dialog else "")
    hint = f' title="{esc(title)}"' if title else ""
    return f'<span class="state state-{esc(status.state)}"{hint}>{esc(status.state.replace("_", " "))}</span>'


def where(session: Session) -> str:
    path = esc(session.worktree or session.path)
    branch = (
        f' <span class=branch title="worktree branch">⎇ {esc(session.branch)}</span>'
        if session.branch
        else ""
    )
    return f"<code>{path}</code>{branch}"


def session_rows(rows: Sequence[tuple[Session, Status]], usage: dict[str, SessionUsage | str]) -> str:
    if not rows:
        return (
            "<tr class=empty><td colspan=9>No sessions. Start one with "
            "<code>dev-sessions create</code>.</td></tr>"
        )
    out = []
    for session, status in rows:
        sid = esc(session.id)
        description = esc(session.description) or "<span class=muted>—</span>"
        out.append(
            f'<tr id="row-{sid}" data-state="{esc(status.state)}">'
            f'<td data-label="id"><a href="/s/{quote(session.id)}">{sid}</a></td>'
            f'<td data-label="cli">{esc(session.cli)}</td>'
            f'<td data-label="host">{esc(session.host or "local")}</td>'
            f'<td data-label="status">{state_badge(status)}</td>'
            f'<td data-label="description" class=desc>{description}</td>'
            f'<td data-label="path" class=path>{where(session)}</td>'
            f'<td data-label="age">{when(session.created_at)}</td>'
            f'<td data-label="last activity">{when(session.last_used)}</td>'
            f'<td data-label="tokens" class=num>{tokens_cell(usage.get(session.id))}</td>'
            "</tr>"
        )
    return "".join(out)


def overview(rows_html: str, total: str) -> str:
    return (
        '<section><h1>Sessions <small id="total" class=muted>'
        f"{total}</small></h1>"
        '<div class="table-wrap"><table class="sessions"><thead><tr>'
        "<th>id</th><th>cli</th><th>host</th><th>status</th><th>description</th><th>path</th>"
        "<th>age</th><th>last activity</th><th class=num>tokens</th></tr></thead>"
        f'<tbody id="sessions">{rows_html}</tbody></table></div></section>'
    )


def log_item(index: int, item: LogItem) -> str:
    role = item.role if item.role in ROLES else "other"
    label = ROLES.get(item.role, item.role)
    text = esc(item.text)
    return (
        f'<article class="item role-{role}" data-index="{index}">'
        f"<div class=meta><span class=role>{esc(label)}</span> {when(item.timestamp, '')}</div>"
        f"<div class=text>{text or '<span class=muted>(empty)</span>'}</div></article>"
    )


def log_items(items: Iterable[LogItem], start: int = 0) -> str:
    return "".join(log_item(start + n, item) for n, item in enumerate(items))


def hidden_csrf(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(csrf)}">'


def dialog_box(sid: str, dialog: Dialog, csrf: str) -> str:
    action = f"/s/{quote(sid)}/respond"
    context = "".join(f"<p class=muted>{esc(line)}</p>" for line in dialog.context if line.strip())
    buttons = "".join(
        f'<button name="answer" value="{option.number}" class="option">'
        f"<b>{option.number}. {esc(option.label)}</b>"
        + (f"<small>{esc(option.description)}</small>" if option.description else "")
        + "</button>"
        for option in dialog.options
        if dialog.text_option is None or option.number != dialog.text_option.number
    )
    free = ""
    if dialog.text_option is not None:
        free = (
            f'<form method="post" action="{action}" class="act free-answer">{hidden_csrf(csrf)}'
            f'<input name="answer" required placeholder="{esc(dialog.text_option.label)}" '
            'aria-label="your own answer"><button>Answer</button></form>'
        )
    return (
        f'<div class="dialog"><h2>{esc(dialog.question)}</h2>{context}'
        f'<form method="post" action="{action}" class="act options">{hidden_csrf(csrf)}{buttons}</form>'
        f"{free}</div>"
    )


def status_panel(session: Session | None, status: Status | None, csrf: str) -> str:
    if session is None or status is None:
        return '<p class="state state-exited">This session is gone (killed, or removed from the list).</p>'
    parts = [f"<p>{state_badge(status)}"]
    if status.detail and status.dialog is None:
        parts.append(f" <span class=muted>{esc(status.detail)}</span>")
    parts.append("</p>")
    if status.dialog is not None:
        parts.append(dialog_box(session.id, status.dialog, csrf))
    return "".join(parts)


def conversation(
    session: Session, status: Status, items: Sequence[LogItem], csrf: str, usage: SessionUsage | str | None
) -> str:
    sid = session.id
    base = f"/s/{quote(sid)}"
    description = f"<p class=desc>{esc(session.description)}</p>" if session.description else ""
    return (
        f'<section class="conversation" data-session="{esc(sid)}">'
        f"<h1>{esc(sid)} <small class=muted>{esc(session.cli)} · {esc(session.host or 'local')} · "
        f'tokens <span id="tokens">{tokens_cell(usage)}</span></small></h1>'
        f"{description}<p class=path>{where(session)}</p>"
        f'<div id="status" class="status">{status_panel(session, status, csrf)}</div>'
        f'<div id="log" class="log">{log_items(items)}</div>'
        f'<form method="post" action="{base}/send" class="act send" id="send">{hidden_csrf(csrf)}'
        '<label for="text" class=sr>Prompt</label>'
        '<textarea id="text" name="text" rows="3" required placeholder="Send a prompt… (Ctrl+Enter)">'
        "</textarea><button>Send</button></form>"
        '<div class="controls">'
        f'<form method="post" action="{base}/interrupt" class="act">{hidden_csrf(csrf)}'
        '<button class="secondary">Interrupt</button></form>'
        f'<details class="kill"><summary>Kill…</summary><form method="post" action="{base}/kill" class="act">'
        f'{hidden_csrf(csrf)}<input type="hidden" name="confirm" value="{esc(sid)}">'
        f"<p>This stops {esc(sid)} and forgets it (a clean worktree is removed).</p>"
        f'<button class="danger">Kill {esc(sid)}</button></form></details></div></section>'
    )


def _message(message: Message, identity: str) -> str:
    target = f" → <b>{esc(message.space)}</b>" if message.space else ""
    unread = ""
    if message.receipt is not None and message.receipt.read_at is None:
        unread = " <span class=unread>unread</span>"
    priority = (
        f' <span class="priority priority-{esc(message.priority)}">{esc(message.priority)}</span>'
        if message.priority != "normal"
        else ""
    )
    link = "/messages?" + urlencode({"as": identity, "thread": message.thread})
    reactions = "".join(
        f'<span class=reaction title="{esc(", ".join(agents))}">{esc(emoji)} {len(agents)}</span>'
        for emoji, agents in message.reactions
    )
    return (
        f'<article class="msg" id="m{message.id}"><div class=meta><span>#{message.id}</span> '
        f"<b>{esc(message.sender)}</b>{target}{priority}{unread} {when(message.created_at, '')}"
        f' <a href="{esc(link)}">thread</a></div><div class=text>{esc(message.body)}</div>'
        + (f"<div class=reactions>{reactions}</div>" if reactions else "")
        + "</article>"
    )


def messages_page(
    *,
    identity: str,
    identities: Sequence[str],
    agents: Sequence[AgentInfo],
    spaces: Sequence[Space],
    heading: str,
    messages: Sequence[Message],
    query: str,
    csrf: str,
    reply_to: int | None = None,
    to: str = "",
    error: str = "",
) -> str:
    options = "".join(
        f'<option value="{esc(name)}"{" selected" if name == identity else ""}>{esc(name)}</option>'
        for name in identities
    )
    names = sorted({a.name for a in agents} | {s.name for s in spaces} | {"parent"})
    datalist = "".join(f'<option value="{esc(n)}">' for n in names)
    space_links = (
        "".join(
            f'<li><a href="{esc("/messages?" + urlencode({"as": identity, "space": s.name}))}">'
            f"{esc(s.name)}</a> <small class=muted>{s.members} member(s)</small></li>"
            for s in spaces
        )
        or "<li class=muted>none</li>"
    )
    agent_links = "".join(
        f'<li><a href="{esc("/messages?" + urlencode({"as": a.name}))}">{esc(a.name)}</a> '
        f"<small class=muted>{esc(a.kind)} · {esc(a.status)}</small></li>"
        for a in agents
    )
    listing = "".join(_message(m, identity) for m in messages) or "<p class=muted>No messages.</p>"
    problem = f'<p class="error">{esc(error)}</p>' if error else ""
    reply = f'<input type="hidden" name="reply_to" value="{reply_to}">' if reply_to is not None else ""
    to_field = (
        f'<input type="hidden" name="to" value="{esc(to)}"><p class=muted>Reply in this thread as '
        f"<b>{esc(identity)}</b>.</p>"
        if reply_to is not None
        else f'<label>To <input name="to" list="names" required value="{esc(to)}"></label>'
    )
    return (
        '<section class="messages"><form method="get" action="/messages" class="pick">'
        f'<label>As <select name="as" class="autosubmit">{options}</select></label>'
        f'<label>Search <input type="search" name="q" value="{esc(query)}" placeholder="full text"></label>'
        '<button class="secondary">Go</button></form>'
        '<div class="columns"><aside><h2>Spaces</h2>'
        f"<ul>{space_links}</ul><h2>Agents</h2><ul>{agent_links}</ul></aside>"
        f'<div class="stream"><h1>{esc(heading)}</h1>{problem}<div id="messages">{listing}</div>'
        f'<form method="post" action="/messages/send" class="act compose">{hidden_csrf(csrf)}'
        f'<input type="hidden" name="as" value="{esc(identity)}">{reply}{to_field}'
        f'<datalist id="names">{datalist}</datalist>'
        '<textarea name="body" rows="3" required placeholder="Message…"></textarea>'
        '<label>Priority <select name="priority"><option>low</option><option selected>normal</option>'
        "<option>high</option><option>urgent</option></select></label>"
        f"<button>Send as {esc(identity)}</button></form></div></div></section>"
    )
