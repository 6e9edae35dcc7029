"""What dev-sessions types into a running Claude session: prompts (``send``), messages (``deliver``),
answers to dialogs (``respond``) and the interrupt key; each step is checked on the screen.

Text goes into the input box through Claude's external-editor key (see :mod:`.wiring`), never as a
paste, which Claude rewrites (docs/claude-code.md); a text that a paste keeps exactly is pasted, which
is quicker, and sessions started by an older dev-sessions still get a paste. One writer at a time per
session: ``send`` and ``deliver`` hold the session's input lock. Starting Claude, and reading what it
shows, are not done here (:mod:`.backend`, :mod:`.facts`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable

from dev_sessions import files, ids
from dev_sessions.backend import BeforeTyping, Dialog, choose
from dev_sessions.claude import screen as screens
from dev_sessions.claude import transcript as tx
from dev_sessions.claude import wiring
from dev_sessions.claude.facts import INPUT_POLL, SCREEN_POLL, Facts, Live
from dev_sessions.claude.status import exit_detail
from dev_sessions.config import Settings
from dev_sessions.errors import DialogOpen, NoDialog, NotReady, SessionExited
from dev_sessions.lock import FileLock
from dev_sessions.poll import poll_until
from dev_sessions.store import LastSend, Session, now_iso
from dev_sessions.terminal import neutralise
from dev_sessions.watch import line_aligned_size

log = logging.getLogger(__name__)

_PASTE_SHOWS = 5.0
_ENTER_TAKEN = 1.0
_TAKEN_LATE = 10.0
"""After two Enters, how long more a loaded machine may take to show (or record) the prompt taken."""
EMPTY_BOX = "❯"  # the input box's prompt line with nothing typed (a placeholder is not text)
_SETTLE = 3.0
# How long a box that held the text typed again through the editor is given to show it changed.
_SAME_TEXT = 1.0
# How long a question the hooks announce may take to be drawn (seconds on a loaded machine).
_DIALOG_DRAWN = 10.0
# How long an answered question may take to go (from the screen, then from Claude's state).
_ANSWER_TAKEN = 10.0
# How long a key or a paste into a question may take to show before it is taken as lost.
_KEY_LOST = 1.5
# How long a question just drawn is left before a key is pressed in it.
_JUST_DRAWN = 0.5

# What a paste changes (docs/claude-code.md): 2.1.332 wraps one of over 800 characters or with more
# newlines than the pane's rows allow (none on a small pane) in <pasted_content> tags, and so it does
# one mentioning "ultraplan"; every version turns a tab into spaces, a leading "!" into shell mode, a
# path to an image into an image, and applies NFC (2.1.197). A leading "#", "&" or "@" may switch
# modes too. Anything else, on one line, arrives exactly.
_PASTE_LIMIT = 800
_MODE_CHARS = "!#&@"
_IMAGE = re.compile(r"\.(png|jpe?g|gif|webp|bmp|svg|heic|tiff?)\b", re.IGNORECASE)


def paste_is_exact(text: str) -> bool:
    """Whether a bracketed paste delivers ``text`` exactly on every Claude Code version we know."""
    import unicodedata

    first = text.lstrip()[:1]
    return (
        len(text) <= _PASTE_LIMIT
        and "\n" not in text
        and "\t" not in text
        and first not in _MODE_CHARS
        and "ultraplan" not in text.lower()
        and not _IMAGE.search(text)
        and unicodedata.is_normalized("NFC", text)
    )


def _input_lock(settings: Settings, session: Session) -> FileLock:
    """One writer at a time into a session's input box (a send and a message delivery)."""
    return FileLock(settings.home / "locks" / f"{session.id}.lock", timeout=settings.ready_timeout + 10)


# -- prompts and messages --------------------------------------------------------------------------


def send(facts: Facts, session: Session, text: str) -> LastSend:
    """Deliver a prompt once the input box shows (a turn may run: Claude queues it); what ``wait``
    needs to find its turn."""
    with _input_lock(facts.settings, session):
        live = _ready_for_input(facts, session)
        path = facts.transcript(session)
        queued = live.screen.state == "busy"
        ahead = 0
        if queued:
            with contextlib.suppress(FileNotFoundError):
                ahead = tx.queue_depth(path.read_bytes())
        events = facts.events_since(session, 0)[1] if session.delivery else 0
        mark = LastSend(
            offset=line_aligned_size(path), queued=queued, ahead=ahead, at=now_iso(), events=events
        )
        submit(facts, session, text, before=live.screen.prompt, idle_at=None if queued else mark["offset"])
    return mark


def deliver(facts: Facts, session: Session, text: str, check: BeforeTyping | None = None) -> bool:
    """Paste a message into the input box, but only while Claude is idle (urgent or not: a prompt
    typed during a turn would be folded into it at Claude's own pace). ``check`` is asked once it is
    idle, under the input lock (see :data:`~dev_sessions.backend.BeforeTyping`).

    A box that holds text (a notice typed by a deliverer killed before its Enter, or anything else) is
    emptied first (:func:`submit`): it is never sent with the notice."""
    with _input_lock(facts.settings, session):
        live = facts.live(session)
        status = facts.status(session, live)
        if status.state == "exited":
            raise SessionExited(session_id=session.id, detail=status.detail)
        if status.state != "idle" or live.screen.state != "ready":
            return False
        verdict = check() if check is not None else "type"
        if verdict != "type":
            return verdict == "there"
        idle_at = line_aligned_size(facts.transcript(session))
        submit(facts, session, text, before=live.screen.prompt, idle_at=idle_at)
        return True


def submit(facts: Facts, session: Session, text: str, before: str | None, idle_at: int | None = None) -> None:
    """Put the text into the input box, see it land, press Enter once, and see the box take it.

    The text goes in through Claude's external-editor key (:mod:`.wiring`): Claude takes it as typed
    text, exactly (a paste would be rewritten). A text that a paste delivers exactly on every version
    (:func:`paste_is_exact`) is pasted instead, which is quicker. Enter goes on its own once the text
    shows, and is pressed a second time only when the screen still shows our text sitting in the
    input box: never when anything else, such as a dialog, has come up. Never a third time: on a
    loaded machine Claude may take seconds to draw the box emptied, so it is then given
    ``_TAKEN_LATE`` more, and for a session that was idle (``idle_at``: its transcript's size before),
    its transcript recording the prompt also says it was taken.
    """
    tmux, name = facts.tmux(session), ids.tmux_name(session.id)
    clean = neutralise(text)
    editor = session.delivery == "editor" and not paste_is_exact(clean)
    held = before not in (None, EMPTY_BOX)
    if held and not editor:
        # The box holds text (a prompt Claude put back after an interrupt, at times well after it; a
        # notice typed by a deliverer killed before its Enter): a paste goes in at the cursor and would
        # be sent with it. (The editor key replaces the box; and a Ctrl-C before it, a moment after
        # another send's, is the second Ctrl-C that exits Claude.)
        log.info("%s: the input box holds text; clearing it first", session.id)
        tmux.send_keys(name, ["C-c"])
        if _poll_screen(facts, session, lambda sc: sc.prompt == EMPTY_BOX, _ENTER_TAKEN) is None:
            raise NotReady(
                session_id=session.id,
                waited=_ENTER_TAKEN,
                screen_hint="text in the input box that will not clear",
            )
        before = EMPTY_BOX
    if editor:
        _through_editor(facts, session, clean)
    else:
        tmux.paste(name, clean.encode("utf-8"), enter=False)
    # The editor's text replaces what the box held; when that was the same text (a notice typed again
    # after a deliverer was killed before its Enter) the box shows no change. Our editor has taken the
    # spool by now, and Claude reads the editor's file before any key typed after it.
    same = editor and held and _shows_start_of(before, clean)
    pasted = _poll_screen(
        facts,
        session,
        lambda sc: sc.prompt is not None and sc.prompt != before,
        _SAME_TEXT if same else _PASTE_SHOWS,
        through_other_screens=editor,
    )
    if pasted is None and same:
        log.info("%s: the input box held this text already; the editor's copy replaced it", session.id)
        pasted = facts.live(session).screen
    if pasted is None or pasted.prompt is None:
        raise NotReady(
            session_id=session.id, waited=_PASTE_SHOWS, screen_hint="the text never showed in the box"
        )
    for attempt in range(2):
        tmux.send_keys(name, ["Enter"])
        taken = _poll_screen(facts, session, lambda sc: sc.prompt != pasted.prompt, _ENTER_TAKEN)
        if taken is not None:
            return
        log.info("%s: Enter not taken (attempt %d)", session.id, attempt + 1)
    path = facts.transcript(session)

    def taken_late() -> bool:
        if idle_at is not None and line_aligned_size(path) > idle_at:
            return True
        return _poll_screen(facts, session, lambda sc: sc.prompt != pasted.prompt, 0) is not None

    if poll_until(taken_late, _TAKEN_LATE, INPUT_POLL):
        log.info("%s: Enter taken late", session.id)
        return
    raise NotReady(
        session_id=session.id,
        waited=2 * _ENTER_TAKEN + _TAKEN_LATE,
        screen_hint="the prompt is still in the input box",
    )


def _shows_start_of(prompt: str | None, text: str) -> bool:
    """Whether the input box's first line (``❯`` and what it shows) is the start of ``text``."""
    if prompt is None:
        return False
    shown = prompt.lstrip("❯").replace("\xa0", " ").strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return bool(shown) and first.startswith(shown)


def _through_editor(facts: Facts, session: Session, text: str) -> None:
    """Leave the text in the spool, press the editor key, and see our editor take the spool."""
    spool = wiring.spool_path(facts.settings.home, session.id)
    files.write_atomic(spool, text.encode("utf-8"))
    facts.tmux(session).send_keys(ids.tmux_name(session.id), ["C-g"])
    if not poll_until(lambda: not spool.exists(), _PASTE_SHOWS, INPUT_POLL):
        spool.unlink(missing_ok=True)
        raise NotReady(
            session_id=session.id,
            waited=_PASTE_SHOWS,
            screen_hint="Claude did not run its external editor (ctrl+g) to take the text",
        )


def _poll_screen(
    facts: Facts,
    session: Session,
    done: Callable[[screens.Screen], bool],
    timeout: float,
    *,
    through_other_screens: bool = False,
) -> screens.Screen | None:
    """The first screen for which ``done`` holds, or that is not the input box any more (unless
    ``through_other_screens``: the editor key shows another screen a moment before the box)."""

    def landed() -> screens.Screen | None:
        live = facts.live(session)
        if live.pane is None or live.pane.dead:
            raise SessionExited(session_id=session.id, detail=exit_detail(live.pane))
        if done(live.screen) or (live.screen.prompt is None and not through_other_screens):
            return live.screen
        return None

    return poll_until(landed, timeout, INPUT_POLL)


def _ready_for_input(facts: Facts, session: Session) -> Live:
    seen = screens.Screen("starting")

    def ready() -> Live | None:
        nonlocal seen
        live = facts.live(session)
        seen = live.screen
        if live.pane is None or live.pane.dead:
            raise SessionExited(session_id=session.id, detail=exit_detail(live.pane))
        if live.screen.state == "dialog" and live.screen.dialog is not None:
            dialog = live.screen.dialog
            raise DialogOpen(
                session_id=session.id, question=dialog.question, options=[str(o) for o in dialog.options]
            )
        return live if live.screen.state in ("ready", "busy") else None

    timeout = facts.settings.ready_timeout
    live = poll_until(ready, timeout, SCREEN_POLL)
    if live is None:
        raise NotReady(session_id=session.id, waited=timeout, screen_hint=seen.hint)
    return live


# -- dialogs and interrupts ------------------------------------------------------------------------


def same_prompt(a: Dialog, b: Dialog) -> bool:
    """The same prompt drawn again (selected otherwise, text typed in its field, a tip line added or
    gone), not another (whose command, in its context, differs)."""
    if a.question != b.question or len(a.options) != len(b.options):
        return False
    shown, now = set(a.context), set(b.context)
    return shown <= now or now <= shown


def _waiting_since(facts: Facts, session: Session, live: Live) -> object:
    """Since when Claude's state file says it waits (``statusUpdatedAt``, ms; None: not waiting, or no
    state file)."""
    state = facts.claude_state(session, live.pane.pid) if live.pane else None
    if state is None or state.get("status") != "waiting":
        return None
    return state.get("statusUpdatedAt")


def respond(facts: Facts, session: Session, answer: str) -> str:
    """Answer the dialog the session shows; the option chosen, as ``N. label`` (or the text typed)."""
    live = facts.live(session)
    status = facts.status(session, live)
    if status.dialog is not None and live.screen.state in ("ready", "busy"):
        # The hooks and Claude's state file announce a question a moment before the screen draws it
        # (seconds on a loaded machine): a key pressed now would go into the input box, and the
        # question would stay unanswered. Keys go only to a dialog on the screen.
        def drawn_now() -> Live | None:
            now = facts.live(session)
            return now if now.screen.state not in ("ready", "busy") else None

        drawn = poll_until(drawn_now, _DIALOG_DRAWN, SCREEN_POLL)
        if drawn is None:
            raise NotReady(
                session_id=session.id, waited=_DIALOG_DRAWN,
                screen_hint="the question Claude announced is not drawn yet; nothing was pressed",
            )  # fmt: skip
        time.sleep(_JUST_DRAWN)  # just drawn: see below
        live = facts.live(session)
        status = facts.status(session, live)
    dialog = status.dialog
    if dialog is None:
        raise NoDialog(session_id=session.id, status=status.state)
    # A question just drawn takes no key for a moment: 2.1.332 loses a digit or a paste pressed at once
    # (a warm respond right after the wait that saw the question comes within ~10 ms). Claude's state
    # file says since when it waits.
    first = live.screen.dialog
    waiting_since = _waiting_since(facts, session, live)
    if isinstance(waiting_since, int | float):
        time.sleep(max(0.0, min(_JUST_DRAWN, waiting_since / 1000 + _JUST_DRAWN - time.time())))
    option, typed = choose(session.id, dialog, answer)
    name = ids.tmux_name(session.id)
    tmux = facts.tmux(session)

    def press() -> None:
        if option.keys:  # an unnumbered list (the arrows, then Enter) or a dialog of key hints
            tmux.send_keys(name, list(option.keys))
        else:
            tmux.send_keys(name, [str(option.number)], literal=True)

    def unanswered(after: Live) -> Dialog | None:
        """The very prompt answered, still on the screen with Claude still waiting on it; not another
        that looks alike (parallel tool calls each ask "Do you want to proceed?"): its command differs,
        and Claude's state file says it waits again, since another time."""
        now = after.screen.dialog
        if now is None or first is None or not same_prompt(first, now):
            return None
        return now if _waiting_since(facts, session, after) == waiting_since else None

    press()
    if typed is not None:
        # The digit opens the text field; the text goes in as a paste and Enter follows on its
        # own once the text shows (see submit for why). A paste that lands as the question is first
        # drawn is lost (2.1.332: its field takes no text for a moment): the field still shows its
        # placeholder, and the text is pasted again. Enter is never pressed on a field without it:
        # it would send an empty answer.
        clean = neutralise(typed)
        tmux.paste(name, clean.encode(), enter=False)
        probe = next((line.strip() for line in clean.splitlines() if line.strip()), "")[:40]

        def shows() -> bool:
            snap = tmux.snapshot(name)
            return snap is None or probe in snap[1].replace("\xa0", " ")

        def empty(now: Dialog) -> bool:
            shown = [*now.options, *([now.text_option] if now.text_option is not None else [])]
            return any(o.number == option.number and o.label == option.label for o in shown)

        if probe and poll_until(shows, _KEY_LOST, INPUT_POLL) is None:
            now = unanswered(facts.live(session))
            if now is not None and empty(now):
                if now.selected not in (None, option.number):
                    press()  # the digit was lost too: the field is not open
                log.info("%s: the answer's text did not land; pasting it again", session.id)
                tmux.paste(name, clean.encode(), enter=False)
            if poll_until(shows, _PASTE_SHOWS, INPUT_POLL) is None:
                raise NotReady(
                    session_id=session.id, waited=_KEY_LOST + _PASTE_SHOWS,
                    screen_hint="the answer's text does not show in its field; nothing was submitted",
                )  # fmt: skip
        tmux.send_keys(name, ["Enter"])

    # Return once the answer is taken: the question gone from the screen and from what status says
    # (Claude's own state lags the screen a little), so that a wait right after this one (a warm one
    # starts within ~10 ms) does not see the answered question again. The question, not the whole
    # dialog: pressing an option redraws the same dialog with it selected, or with a text field.
    def taken() -> bool:
        after = facts.live(session)
        if first is not None and after.screen.dialog is not None:
            # The same prompt, or the next (of several questions, or another tool call's).
            return unanswered(after) is None
        if _waiting_since(facts, session, after) is not None:
            return False
        now = facts.status(session, after).dialog
        return now is None or now.question != dialog.question

    # A digit pressed as the question is drawn (or drawn again: 2.1.332 redraws a permission prompt
    # once it knows whether to show its auto-mode tip) can be lost: the same question stays, with
    # Claude still waiting. Pressed again then, twice at most. Should the first have been taken only
    # late, the next lands in the input box, where the next send replaces it (the editor's text).
    if typed is None and not option.keys:
        for _ in range(2):
            if poll_until(taken, _KEY_LOST, SCREEN_POLL) is not None or not unanswered(facts.live(session)):
                break
            log.info("%s: the answer's key was not taken; pressing it again", session.id)
            press()
    if poll_until(taken, _ANSWER_TAKEN, SCREEN_POLL) is None:
        log.info("%s: answered; the question still shows after %.0f s", session.id, _ANSWER_TAKEN)
    return f"{option.number}. {typed if typed is not None else option.label}"


def interrupt(facts: Facts, session: Session) -> bool:
    """Escape stops a running turn (or a dialog); False when there was nothing to stop."""
    live = facts.live(session)
    status = facts.status(session, live)
    if status.state == "exited":
        raise SessionExited(session_id=session.id, detail=status.detail)
    if status.state not in ("working", "waiting_for_input"):
        return False
    name = ids.tmux_name(session.id)
    facts.tmux(session).send_keys(name, ["Escape"])
    after = live

    def stopped() -> bool:
        nonlocal after
        after = facts.live(session)
        return facts.status(session, after).state != "working"

    poll_until(stopped, _SETTLE, SCREEN_POLL)
    # Stopped before any reply, Claude puts the prompt (and any queued ones) back into its input box,
    # where the next send would be appended to it: clear it. One Ctrl-C clears a non-empty box.
    restored = after.screen.prompt
    if after.screen.state == "ready" and restored not in (None, EMPTY_BOX, live.screen.prompt):
        facts.tmux(session).send_keys(name, ["C-c"])
        _poll_screen(facts, session, lambda sc: sc.prompt == EMPTY_BOX, _ENTER_TAKEN)
    return True
