"""What a Claude session is started with so that dev-sessions can talk to it without its screen.

* **Hooks** (``--settings $DEV_SESSIONS_HOME/claude/hooks.json``): Claude reports into the session's
  events file (``events/<id>.jsonl``, named by ``DEV_SESSIONS_EVENTS`` in its environment); see
  :mod:`dev_sessions.claude.events`.
* **An editor** (``VISUAL``): Claude's external-editor key (``C-g``) runs ``$VISUAL <file>`` and puts
  the file's content into the input box as typed text. Our editor copies the session's spool file
  (``spool/<id>``, written just before the key is pressed) into that file and removes the spool. This
  is how ``send`` delivers text exactly: a paste would be rewritten (Claude 2.1.332 wraps a paste of
  more than 3 lines or 800 characters in ``<pasted_content>`` tags, every version turns a pasted tab
  into spaces and a leading ``!`` into a shell command). With no spool waiting (a person pressed
  ``C-g``, or a tool such as ``git commit`` asked for an editor) it runs the editor the user had
  (``DEV_SESSIONS_EDITOR``, from their ``VISUAL``/``EDITOR``), or ``vi``.

The editor is a small POSIX shell script written into the state directory (Claude runs ``$VISUAL``
split on spaces, so its path must have none; else it goes to a private directory in ``/tmp``). Its name
is neutral on purpose: Claude passes extra arguments to editors it recognises by name (``code``,
``vi``...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from dev_sessions import files
from dev_sessions.claude import events

SPOOL_VAR = "DEV_SESSIONS_SPOOL"
USER_EDITOR_VAR = "DEV_SESSIONS_EDITOR"
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._+-]+")

EDITOR_SCRIPT = """\
#!/bin/sh
# dev-sessions' editor for Claude Code's external-editor key (C-g): hand over the text that
# `dev-sessions send` left in the session's spool file, exactly; otherwise run the user's own editor.
for file; do :; done
if [ -n "$DEV_SESSIONS_SPOOL" ] && [ -f "$DEV_SESSIONS_SPOOL" ]; then
  cat -- "$DEV_SESSIONS_SPOOL" > "$file" && rm -f -- "$DEV_SESSIONS_SPOOL"
  exit $?
fi
exec ${DEV_SESSIONS_EDITOR:-vi} "$@"
"""


def events_path(home: Path, session_id: str) -> Path:
    return home / "events" / f"{session_id}.jsonl"


def spool_path(home: Path, session_id: str) -> Path:
    return home / "spool" / session_id


def hooks_file(home: Path) -> Path:
    """The ``--settings`` file with our hooks (the same for every session: the command is constant)."""
    path = home / "claude" / "hooks.json"
    content = (json.dumps(events.settings(), indent=2) + "\n").encode()
    if files.read_bytes(path) != content:
        files.write_atomic(path, content)
    return path


def editor(home: Path) -> Path:
    """Our editor script, written (0700) where its path has no space, and kept up to date."""
    directory = home / "bin"
    if not _PLAIN_PATH.fullmatch(str(directory)):
        from dev_sessions.codex.link import socket_dir

        directory = socket_dir()
    path = directory / "ds-editor"
    content = EDITOR_SCRIPT.encode()
    if files.read_bytes(path) != content:
        files.write_atomic(path, content, mode=0o700)
    return path


def agent_environment(home: Path, session_id: str, caller: Mapping[str, str]) -> dict[str, str]:
    """What the agent's environment gets for the hooks and the editor; the events file starts empty."""
    events_file = events_path(home, session_id)
    files.write_atomic(events_file, b"")
    spool = spool_path(home, session_id)
    files.private_dir(spool.parent)
    spool.unlink(missing_ok=True)
    ours = str(editor(home))
    # Created from inside a session, the caller's VISUAL is ours already: keep the user's behind it.
    user = caller.get(USER_EDITOR_VAR) if caller.get("VISUAL") == ours else None
    user = user or (caller.get("VISUAL") if caller.get("VISUAL") != ours else None) or caller.get("EDITOR")
    return {
        events.EVENTS_VAR: str(events_file),
        SPOOL_VAR: str(spool),
        USER_EDITOR_VAR: user or "",
        "VISUAL": ours,
    }


def forget(home: Path, session_id: str) -> None:
    """Remove a killed session's events and spool files."""
    events_path(home, session_id).unlink(missing_ok=True)
    spool_path(home, session_id).unlink(missing_ok=True)
