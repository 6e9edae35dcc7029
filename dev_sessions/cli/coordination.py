"""Coordination commands: ``project ...``, ``focus ...``, ``lease ...`` and ``webhooks ...``.

Each parses, calls the messages API (:class:`~dev_sessions.messaging.coordination.Coordination`'s
calls), and prints; ``--json`` prints the records' JSON. Paths are seen from this directory (the
container's, translated, in sandbox mode).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Annotated

import typer

from dev_sessions.cli.context import messages_api
from dev_sessions.cli.output import emit_json, note
from dev_sessions.errors import LeaseConflict
from dev_sessions.terminal import cell

if TYPE_CHECKING:
    from dev_sessions.messaging.leases import Lease
    from dev_sessions.messaging.projects import Project

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
AsOpt = Annotated[str | None, typer.Option("--as", metavar="NAME", help="Act as this agent.")]
NameArg = Annotated[str, typer.Argument(metavar="PROJECT", help="The project's name.")]
TagsOpt = Annotated[str | None, typer.Option("--tags", metavar="A,B", help="Tags, comma-separated.")]
PathOpt = Annotated[str | None, typer.Option("--path", metavar="DIR", help="Its directory.")]
RepoOpt = Annotated[str | None, typer.Option("--repository", metavar="URL", help="Its repository's URL.")]
ResourcesArg = Annotated[
    list[str],
    typer.Argument(
        metavar="RESOURCE...", help="Names (deploy), or paths and globs in a git repository (src/**/*.py)."
    ),
]

project_app = typer.Typer(
    help="Projects: what spaces belong to, and what agents focus on.", no_args_is_help=True
)
focus_app = typer.Typer(help="An agent's focus: the project its reads keep to.")
lease_app = typer.Typer(
    help="Leases: advisory claims on names and files, so that agents do not work on the same thing.",
    no_args_is_help=True,
)
webhooks_app = typer.Typer(
    help="Webhooks: messages told to HTTP endpoints (config.json).", no_args_is_help=True
)


def _tags(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [t for t in (part.strip() for part in text.split(",")) if t]


def _path(text: str | None) -> str | None:
    if text is None or text == "":
        return text
    return os.path.abspath(os.path.expanduser(text))


def _project_lines(project: Project) -> list[str]:
    lines = [f"{project.name}  {project.status}"]
    if project.description:
        lines.append(f"  {cell(project.description)}")
    if project.path:
        lines.append(f"  path: {cell(project.path)}")
    if project.repository:
        lines.append(f"  repository: {cell(project.repository)}")
    if project.tags:
        lines.append(f"  tags: {', '.join(project.tags)}")
    lines.append(f"  spaces: {', '.join(project.spaces) or '(none)'}")
    lines.append(f"  created {project.created_at[:19].replace('T', ' ')} by {project.created_by}")
    return lines


# -- project -------------------------------------------------------------------------------------------


@project_app.command("create")
def project_create(
    name: NameArg,
    path: PathOpt = None,
    repository: RepoOpt = None,
    tags: TagsOpt = None,
    description: Annotated[str, typer.Option("--description", "-d", help="What it is.")] = "",
    creator: AsOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Create a project."""
    project = messages_api().create_project(
        name, path=_path(path), repository=repository, tags=_tags(tags), description=description,
        creator=creator,
    )  # fmt: skip
    if as_json:
        emit_json(project.to_json())
    else:
        print(project.name)
    return 0


@project_app.command("list")
def project_list(
    status: Annotated[
        str | None, typer.Option("--status", help="Only these: active, paused or archived.")
    ] = None,
    as_json: JsonOpt = False,
) -> int:
    """Every project, with its status and spaces."""
    projects = messages_api().projects(status)
    if as_json:
        emit_json([p.to_json() for p in projects])
        return 0
    if not projects:
        note("no projects")
    for project in projects:
        spaces = f"  spaces: {', '.join(project.spaces)}" if project.spaces else ""
        tags = f"  tags: {', '.join(project.tags)}" if project.tags else ""
        about = f"  {cell(project.description)}" if project.description else ""
        print(f"{project.name}  {project.status}{spaces}{tags}{about}")
    return 0


@project_app.command("get")
def project_get(name: NameArg, as_json: JsonOpt = False) -> int:
    """One project, whole."""
    project = messages_api().project(name)
    if as_json:
        emit_json(project.to_json())
    else:
        print("\n".join(_project_lines(project)))
    return 0


@project_app.command("update")
def project_update(
    name: NameArg,
    path: PathOpt = None,
    repository: RepoOpt = None,
    tags: TagsOpt = None,
    description: Annotated[str | None, typer.Option("--description", "-d", help="What it is.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="active, paused or archived.")] = None,
    as_json: JsonOpt = False,
) -> int:
    """Change what is given of a project (--tags '' clears its tags)."""
    project = messages_api().update_project(
        name, path=_path(path), repository=repository, tags=_tags(tags), description=description,
        status=status,
    )  # fmt: skip
    if as_json:
        emit_json(project.to_json())
    else:
        print("\n".join(_project_lines(project)))
    return 0


@project_app.command("delete")
def project_delete(name: NameArg, as_json: JsonOpt = False) -> int:
    """Delete a project (refused while spaces belong to it)."""
    project = messages_api().delete_project(name)
    if as_json:
        emit_json({"deleted": project.name})
    else:
        print(f"{project.name} deleted")
    return 0


# -- focus ---------------------------------------------------------------------------------------------


@focus_app.callback(invoke_without_command=True)
def focus_show(ctx: typer.Context, agent: AsOpt = None, as_json: JsonOpt = False) -> int:
    """Your focus: the project your reads (msg read, msg feed, space list) keep to."""
    if ctx.invoked_subcommand is not None:
        return 0
    focus = messages_api().focus(agent)
    if as_json:
        emit_json(focus.to_json())
    elif focus.project is None:
        print(f"{focus.agent}: no focus (reads cover every project)")
    else:
        print(f"{focus.agent}: {focus.project}")
    return 0


@focus_app.command("set")
def focus_set(
    project: Annotated[str, typer.Argument(metavar="PROJECT", help="The project.")],
    agent: AsOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Keep your reads to one project's spaces (and, for msg read, your direct messages)."""
    focus = messages_api().set_focus(project, agent)
    if as_json:
        emit_json(focus.to_json())
    else:
        print(f"{focus.agent}: {focus.project}")
    return 0


@focus_app.command("clear")
def focus_clear(agent: AsOpt = None, as_json: JsonOpt = False) -> int:
    """Let your reads cover every project again."""
    cleared = messages_api().clear_focus(agent)
    if as_json:
        emit_json({"cleared": cleared})
    else:
        print("focus cleared" if cleared else "no focus was set")
    return 0


# -- lease ---------------------------------------------------------------------------------------------


def _until(lease: Lease) -> str:
    from dev_sessions.durations import format_age
    from dev_sessions.store import parse_iso

    moment = parse_iso(lease.expires_at)
    left = f" (in {format_age(moment.timestamp() - time.time())})" if moment is not None else ""
    return f"{lease.expires_at}{left}"


def _lease_line(lease: Lease, verb: str = "") -> str:
    where = f"  in {cell(lease.repo)}" if lease.repo else ""
    why = f"  {cell(lease.reason)}" if lease.reason else ""
    return f"{verb}{cell(lease.pattern)}  {lease.mode}  {lease.holder}  until {_until(lease)}{where}{why}"


def _leases(leases: list[Lease], as_json: bool, verb: str, empty: str) -> None:
    if as_json:
        emit_json([lease.to_json() for lease in leases])
        return
    if not leases:
        note(empty)
    for lease in leases:
        print(_lease_line(lease, verb))


@lease_app.command("acquire")
def lease_acquire(
    resources: ResourcesArg,
    exclusive: Annotated[
        bool, typer.Option("--exclusive/--shared", help="Alone (default), or alongside other shared holders.")
    ] = True,
    ttl: Annotated[
        str, typer.Option("--ttl", metavar="AGE", help="How long it lasts (30m, 2h; at most 7d).")
    ] = "30m",
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why, for the others.")] = "",
    holder: AsOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Lease resources: all of them, or none (exit 1 naming who holds what)."""
    try:
        leases = messages_api().lease_acquire(
            resources, exclusive=exclusive, ttl=ttl, reason=reason, directory=os.getcwd(), holder=holder
        )
    except LeaseConflict as err:
        if as_json:
            emit_json({"acquired": [], "conflicts": list(err.conflicts)})
        raise
    _leases(leases, as_json, "acquired ", "nothing acquired")
    return 0


@lease_app.command("renew")
def lease_renew(
    resources: Annotated[
        list[str] | None, typer.Argument(metavar="[RESOURCE...]", help="Which (default: all of yours).")
    ] = None,
    ttl: Annotated[
        str | None,
        typer.Option("--ttl", metavar="AGE", help="For this long from now (default: its own TTL)."),
    ] = None,
    holder: AsOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Extend your leases."""
    leases = messages_api().lease_renew(resources or None, ttl=ttl, directory=os.getcwd(), holder=holder)
    _leases(leases, as_json, "renewed ", "no leases to renew")
    return 0


@lease_app.command("release")
def lease_release(
    resources: Annotated[
        list[str] | None, typer.Argument(metavar="[RESOURCE...]", help="Which (as they were acquired).")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every lease of yours.")] = False,
    holder: AsOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Release leases."""
    leases = messages_api().lease_release(
        resources or None, every=every, directory=os.getcwd(), holder=holder
    )
    _leases(leases, as_json, "released ", "nothing to release (no such lease of yours)")
    return 0


@lease_app.command("list")
def lease_list(
    mine: Annotated[bool, typer.Option("--mine", help="Only your leases.")] = False,
    holder: AsOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """The live leases."""
    _leases(messages_api().leases(mine, holder), as_json, "", "no leases")
    return 0


@lease_app.command("check")
def lease_check(
    paths: Annotated[list[str], typer.Argument(metavar="PATH...", help="Paths (or names) to look at.")],
    holder: AsOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Who holds each path; exit 1 when another agent holds one exclusively."""
    checks = messages_api().lease_check(paths, directory=os.getcwd(), holder=holder)
    if as_json:
        emit_json([check.to_json() for check in checks])
    else:
        for check in checks:
            if not check.leases:
                print(f"{cell(check.resource)}: free")
            for lease in check.leases:
                why = f": {cell(lease.reason)}" if lease.reason else ""
                print(
                    f"{cell(check.resource)}: {lease.mode} lease of {lease.holder} "
                    f"({cell(lease.pattern)}) until {_until(lease)}{why}"
                )
    from dev_sessions.messaging.coordination_store import conflict_of

    blocking = [conflict_of(lease) for check in checks for lease in check.blockers]
    if blocking:
        raise LeaseConflict(conflicts=blocking, what="held by another agent")
    return 0


@lease_app.command("install-guard")
def lease_install_guard(
    repo: Annotated[
        str | None, typer.Argument(metavar="[REPO]", help="The repository (default: here).")
    ] = None,
) -> int:
    """Add a pre-commit hook refusing commits of files another agent leases exclusively."""
    print(messages_api().install_lease_guard(_path(repo) or os.getcwd()))
    return 0


@lease_app.command("uninstall-guard")
def lease_uninstall_guard(
    repo: Annotated[
        str | None, typer.Argument(metavar="[REPO]", help="The repository (default: here).")
    ] = None,
) -> int:
    """Remove the lease guard's hook (and put back the hook it kept)."""
    print(messages_api().uninstall_lease_guard(_path(repo) or os.getcwd()))
    return 0


# -- webhooks ------------------------------------------------------------------------------------------


@webhooks_app.command("status")
def webhooks_status(as_json: JsonOpt = False) -> int:
    """Each webhook of config.json: its events, the last message it was told of, its last attempts."""
    found = messages_api().webhooks()
    if as_json:
        emit_json(found.to_json())
        return 0
    if found.problem:
        note(f"dev-sessions: {found.problem}")
    if not found.hooks:
        note("no webhooks (add a webhooks section to $DEV_SESSIONS_HOME/config.json)")
    for hook in found.hooks:
        agents = f"  agents: {', '.join(hook.agents)}" if hook.agents is not None else ""
        signed = "signed" if hook.signed else "unsigned"
        last = f"  last message: {hook.cursor}" if hook.cursor else ""
        print(f"{cell(hook.url)}  {','.join(hook.events)}  {signed}{agents}{last}")
        for attempt in hook.attempts[-5:]:
            what = "test" if attempt.test else f"message {attempt.message}"
            result = str(attempt.status) if attempt.status is not None else cell(attempt.error or "")
            when = attempt.at[:19].replace("T", " ")
            print(f"  {when}  {what}  #{attempt.attempt}  {attempt.outcome}  {result}")
    if found.hooks and not found.deliverer:
        note("(the deliverer is not running; the next message an endpoint wants starts it)")
    return 0


@webhooks_app.command("test")
def webhooks_test(
    url: Annotated[str, typer.Argument(metavar="URL", help="A webhook's URL as config.json has it.")],
    as_json: JsonOpt = False,
) -> int:
    """Send a test event to a configured webhook now; exit 1 unless it answers 2xx."""
    attempt = messages_api().webhook_test(url)
    if as_json:
        emit_json(attempt.to_json())
    else:
        print(f"{url}: taken ({attempt.status}) in {attempt.ms} ms")
    return 0


COMMANDS = frozenset({"project", "focus", "lease", "webhooks"})


def register(app: typer.Typer) -> None:
    app.add_typer(project_app, name="project")
    app.add_typer(focus_app, name="focus")
    app.add_typer(lease_app, name="lease")
    app.add_typer(webhooks_app, name="webhooks")
