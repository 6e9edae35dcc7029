"""Projects and focus, the pure part: the records and what a project's fields may hold.

A project groups spaces (``space create --project``) and names what a team works on: a directory, a
repository URL, tags, a description and a status. An agent's focus is one project: while it is set,
the agent's reads (``msg read``, ``msg feed``, ``space list``) keep to that project's spaces (and, for
``msg read``, the direct messages to it, which are its own whatever the project). The queries are the
store's (:mod:`dev_sessions.messaging.coordination_store`); no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass

from dev_sessions.api import check_name
from dev_sessions.errors import UsageError

STATUSES = ("active", "paused", "archived")
MAX_TEXT = 4096


@dataclass(frozen=True)
class Project:
    name: str
    path: str | None
    repository: str | None
    tags: list[str]
    description: str
    status: str
    created_at: str
    created_by: str
    updated_at: str
    spaces: list[str]
    """The spaces that belong to it."""

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "path": self.path,
            "repository": self.repository,
            "tags": list(self.tags),
            "description": self.description,
            "status": self.status,
            "createdAt": self.created_at,
            "createdBy": self.created_by,
            "updatedAt": self.updated_at,
            "spaces": list(self.spaces),
        }


@dataclass(frozen=True)
class Focus:
    agent: str
    project: str | None
    """None: no focus (every project)."""
    set_at: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"agent": self.agent, "project": self.project, "setAt": self.set_at}


def parse_tags(text: str | list[str] | None) -> list[str] | None:
    """``a,b`` (or a list) as tags, each a name; None stays None (not given), ``""`` is no tags."""
    if text is None:
        return None
    raw = text.split(",") if isinstance(text, str) else list(text)
    tags: list[str] = []
    for raw_tag in raw:
        tag = raw_tag.strip()
        if not tag:
            continue
        check_name(tag, "tag")
        if tag not in tags:
            tags.append(tag)
    return tags


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise UsageError(f"--status {status!r}: choose one of {', '.join(STATUSES)}")
    return status


def check_text(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if len(value) > MAX_TEXT:
        raise UsageError(f"--{what}: at most {MAX_TEXT} characters")
    if "\x00" in value or any(0xD800 <= ord(c) < 0xE000 for c in value):
        raise UsageError(f"--{what}: a NUL character, or bytes that are not UTF-8")
    return value
