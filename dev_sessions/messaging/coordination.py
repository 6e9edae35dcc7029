"""Coordination between agents, as calls of the messages API: projects, focus, leases, webhooks.

:class:`Coordination` is part of :class:`~dev_sessions.messaging.messenger.Messenger` (its base
class): its ``@call`` methods are calls of the ``messages`` API like the messenger's own, served by the
gateway, offered as MCP tools, and the command line's ``project``, ``focus``, ``lease`` and ``webhooks``
groups (:mod:`dev_sessions.cli.coordination`). What the commands mean is said in
:mod:`~dev_sessions.messaging.projects`, :mod:`~dev_sessions.messaging.leases`,
:mod:`~dev_sessions.messaging.guard` and :mod:`~dev_sessions.messaging.webhooks`; the queries are the
store's (:mod:`~dev_sessions.messaging.coordination_store`). Who acts is ``--as``/``--from`` as
everywhere (``settings.me``); a path is seen from ``directory`` (the caller's working directory, a
container's translated to the host's in sandbox mode).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from dev_sessions.api import call, check_name
from dev_sessions.errors import ProjectNotFound, UsageError

if TYPE_CHECKING:
    from dev_sessions.config import Settings
    from dev_sessions.messaging.leases import Lease, LeaseCheck, Target
    from dev_sessions.messaging.projects import Focus, Project
    from dev_sessions.messaging.records import Space
    from dev_sessions.messaging.store import MessageStore
    from dev_sessions.messaging.webhooks import WebhookAttempt, WebhooksReport

# The parts each call needs are imported by the call: `msg send` loads the messenger, not these.
MAX_REASON = 200
DEFAULT_TTL = "30m"


def _reason(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > MAX_REASON:
        raise UsageError(f"--reason: at most {MAX_REASON} characters")
    if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) < 0xE000 for c in text):
        raise UsageError("--reason: control characters, or bytes that are not UTF-8")
    return text


def _url(value: str | None, what: str) -> str | None:
    from dev_sessions.messaging.projects import check_text

    if value is None or value == "":
        return value or None
    check_text(value, what)
    if any(ord(c) < 33 for c in value):
        raise UsageError(f"--{what}: no spaces or control characters")
    return value


class Coordination:
    """Projects, focus, leases and webhooks (mixed into ``Messenger``, whose store and identity it uses)."""

    settings: Settings

    if TYPE_CHECKING:

        @property
        def store(self) -> MessageStore: ...

        @property
        def machine(self) -> str: ...

        def me(self, explicit: str | None = None) -> str: ...

    # -- projects ----------------------------------------------------------------------------------------

    @call(
        identity="creator",
        about="Create a project (a directory, a repository URL, tags) that spaces may belong to.",
    )
    def create_project(
        self,
        name: str,
        *,
        path: str | None = None,
        repository: str | None = None,
        tags: list[str] | None = None,
        description: str = "",
        creator: str | None = None,
    ) -> Project:
        from dev_sessions.messaging.projects import check_text, parse_tags

        check_name(name, "project name")
        return self.store.create_project(
            name,
            path=check_text(path, "path") or None,
            repository=_url(repository, "repository"),
            tags=parse_tags(tags) or [],
            description=check_text(description, "description") or "",
            by=self.me(creator),
        )

    @call(tool="list_projects", about="Every project (only those with `status`: active, paused or archived).")
    def projects(self, status: str | None = None) -> list[Project]:
        from dev_sessions.messaging.projects import check_status

        return self.store.projects(None if status is None else check_status(status))

    @call(tool="get_project", about="One project: its directory, repository, tags, status and spaces.")
    def project(self, name: str) -> Project:
        found = self.store.project(name)
        if found is None:
            raise ProjectNotFound(name=name)
        return found

    @call(about="Change a project's path, repository, tags, description or status (only what is given).")
    def update_project(
        self,
        name: str,
        *,
        path: str | None = None,
        repository: str | None = None,
        tags: list[str] | None = None,
        description: str | None = None,
        status: str | None = None,
    ) -> Project:
        from dev_sessions.messaging.projects import check_status, check_text, parse_tags

        changes: dict[str, object] = {}
        if path is not None:
            changes["path"] = check_text(path, "path") or None
        if repository is not None:
            changes["repository"] = _url(repository, "repository")
        if tags is not None:
            changes["tags"] = parse_tags(tags) or []
        if description is not None:
            changes["description"] = check_text(description, "description")
        if status is not None:
            changes["status"] = check_status(status)
        return self.store.update_project(name, changes)

    @call(about="Delete a project (refused while spaces belong to it); returns it as it was.")
    def delete_project(self, name: str) -> Project:
        found = self.project(name)
        self.store.delete_project(name)
        return found

    @call(about="Put a space in a project (project), or take it out of its project (no_project=true).")
    def update_space(self, space: str, *, project: str | None = None, no_project: bool = False) -> Space:
        if (project is None) == (not no_project):
            raise UsageError("space update: give --project PROJECT or --no-project (one of them)")
        self.store.set_space_project(space, None if no_project else project)
        found = self.store.space(space)
        assert found is not None
        return found

    # -- focus -------------------------------------------------------------------------------------------

    @call(
        identity="agent", tool="get_focus", about="Your focus: the project your reads keep to (null: none)."
    )
    def focus(self, agent: str | None = None) -> Focus:
        return self.store.focus_of(self.me(agent))

    @call(identity="agent", about="Keep your reads (read_messages, feed, spaces) to one project's spaces.")
    def set_focus(self, project: str, agent: str | None = None) -> Focus:
        return self.store.set_focus(self.me(agent), project)

    @call(identity="agent", about="Clear your focus: your reads cover every project again.")
    def clear_focus(self, agent: str | None = None) -> bool:
        return self.store.clear_focus(self.me(agent))

    def focused_on(self, reader: str, all_projects: bool) -> str | None:
        """The project ``reader``'s reads keep to (None: everything)."""
        return None if all_projects else self.store.focus_of(reader).project

    # -- leases ------------------------------------------------------------------------------------------

    def _targets(self, resources: list[str], directory: str | None) -> list[Target]:
        from dev_sessions.messaging.leases import resolve

        if not resources:
            raise UsageError("name at least one resource: a name, or a path or glob inside a git repository")
        where = directory if directory is not None else os.getcwd()
        targets: list[Target] = []
        for resource in resources:
            target = resolve(resource, where)
            if target not in targets:
                targets.append(target)
        return targets

    @call(
        identity="holder",
        paths=("directory",),
        about="Lease names or path globs in a git repo for a while: all or none (conflicts name holders).",
    )
    def lease_acquire(
        self,
        resources: list[str],
        *,
        exclusive: bool = True,
        ttl: str = DEFAULT_TTL,
        reason: str = "",
        directory: str | None = None,
        holder: str | None = None,
    ) -> list[Lease]:
        from dev_sessions.messaging.leases import parse_ttl

        me = self.me(holder)
        seconds = parse_ttl(ttl)
        targets = self._targets(resources, directory)
        machine = self.machine if self.store.shared else None
        return self.store.acquire(
            targets, holder=me, exclusive=exclusive, ttl_s=seconds, reason=_reason(reason), machine=machine
        )

    @call(
        identity="holder",
        paths=("directory",),
        about="Extend your leases (those named, else all) by their TTL, or by `ttl`.",
    )
    def lease_renew(
        self,
        resources: list[str] | None = None,
        *,
        ttl: str | None = None,
        directory: str | None = None,
        holder: str | None = None,
    ) -> list[Lease]:
        from dev_sessions.messaging.leases import parse_ttl

        seconds = None if ttl is None else parse_ttl(ttl)
        targets = self._targets(resources, directory) if resources else None
        return self.store.renew(self.me(holder), targets, seconds)

    @call(
        identity="holder",
        paths=("directory",),
        about="Release your leases on the resources named (or every one of yours with every=true).",
    )
    def lease_release(
        self,
        resources: list[str] | None = None,
        *,
        every: bool = False,
        directory: str | None = None,
        holder: str | None = None,
    ) -> list[Lease]:
        if bool(resources) == every:
            raise UsageError("lease release: name the resources, or release every one (--all), not both")
        targets = None if every else self._targets(resources or [], directory)
        return self.store.release(self.me(holder), targets)

    @call(identity="holder", tool="list_leases", about="The live leases (only yours with mine=true).")
    def leases(self, mine: bool = False, holder: str | None = None) -> list[Lease]:
        return self.store.leases(self.me(holder) if mine else None)

    @call(
        identity="holder",
        paths=("directory",),
        about="Who holds each path (or name): blocked when another agent leases it exclusively.",
    )
    def lease_check(
        self, resources: list[str], *, directory: str | None = None, holder: str | None = None
    ) -> list[LeaseCheck]:
        from dev_sessions.messaging.leases import GLOB_CHARS, PATH_KIND, resolve

        me = self.me(holder)
        where = directory if directory is not None else os.getcwd()
        checks = []
        for resource in resources or []:
            target = resolve(resource, where)
            literal = target.kind == PATH_KIND and not any(c in GLOB_CHARS for c in target.pattern)
            checks.append(self.store.check(resource, target, me, literal))
        if not checks:
            raise UsageError("lease check: name at least one path")
        return checks

    @call(paths=("repo",), about="Add a git pre-commit hook refusing commits of files another agent leases.")
    def install_lease_guard(self, repo: str | None = None) -> str:
        from dev_sessions.messaging.guard import install

        return install(Path(repo if repo is not None else os.getcwd()), self.settings.home)

    @call(paths=("repo",), about="Remove the lease guard's pre-commit hook (putting back one it kept).")
    def uninstall_lease_guard(self, repo: str | None = None) -> str:
        from dev_sessions.messaging.guard import uninstall

        return uninstall(Path(repo if repo is not None else os.getcwd()))

    # -- webhooks ----------------------------------------------------------------------------------------

    @call(
        tool="webhooks_status", about="The webhooks of config.json: their events, progress and last attempts."
    )
    def webhooks(self) -> WebhooksReport:
        from dev_sessions.messaging.webhooks import report

        return report(self.settings)

    @call(about="Send a test event to a configured webhook (by its URL) now; returns the attempt.")
    def webhook_test(self, url: str) -> WebhookAttempt:
        from dev_sessions.messaging.webhooks import try_endpoint

        return try_endpoint(self.settings, url)
