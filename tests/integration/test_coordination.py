"""Projects, focus and leases through the command line on real stores (every test on both engines:
``messages_url``), and the lease guard on a real git repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dev_sessions.messaging.store import MessageStore
from tests.conftest import DevSessions, eventually, git_repo, one_line_error

pytestmark = pytest.mark.usefixtures("messages_url")


# -- projects and focus --------------------------------------------------------------------------------


def test_projects_from_create_to_delete(cli: DevSessions, workdir: Path) -> None:
    made = json.loads(
        cli.ok(
            "project", "create", "web", "--path", ".", "--repository", "https://git.example/web.git",
            "--tags", "front,ui,front", "--description", "the site", "--as", "alice", "--json",
        )
    )  # fmt: skip
    assert made["path"] == str(workdir) and made["tags"] == ["front", "ui"] and made["createdBy"] == "alice"
    assert made["status"] == "active" and made["spaces"] == []
    cli.ok("project", "create", "api")
    one_line_error(cli("project", "create", "api"), 2, "project api: already exists")
    one_line_error(cli("project", "create", "no way"), 2, "not a valid project name")
    cli.ok("project", "update", "api", "--status", "paused", "--tags", "x")
    assert [p["name"] for p in json.loads(cli.ok("project", "list", "--json"))] == ["api", "web"]
    paused = json.loads(cli.ok("project", "list", "--status", "paused", "--json"))
    assert [(p["name"], p["tags"]) for p in paused] == [("api", ["x"])]
    one_line_error(cli("project", "list", "--status", "done"), 2, "active, paused, archived")
    cleared = json.loads(cli.ok("project", "update", "api", "--tags", "", "--json"))
    assert cleared["tags"] == [] and cleared["status"] == "paused"
    cli.ok("space", "create", "frontend", "--project", "web")
    one_line_error(
        cli("space", "create", "nowhere", "--project", "ghost"), 1, "project ghost: no such project"
    )
    got = json.loads(cli.ok("project", "get", "web", "--json"))
    assert got["spaces"] == ["frontend"] and got["description"] == "the site"
    assert "spaces: frontend" in cli.ok("project", "get", "web")
    refused = cli("project", "delete", "web")
    one_line_error(
        refused, 1, "project web: spaces belong to it (frontend)", "space update SPACE --no-project"
    )
    assert json.loads(cli.ok("project", "get", "web", "--json"))["name"] == "web", "nothing deleted"
    assert cli.ok("space", "update", "frontend", "--no-project").strip() == "frontend: in no project"
    assert cli.ok("project", "delete", "web").strip() == "web deleted"
    one_line_error(cli("project", "get", "web"), 1, "project web: no such project")
    one_line_error(cli("space", "update", "frontend"), 2, "--project PROJECT or --no-project")


def test_a_focus_keeps_an_agents_reads_to_its_project(cli: DevSessions) -> None:
    for name in ("alice", "bob"):
        cli.ok("agents", "register", name)
    cli.ok("project", "create", "web")
    cli.ok("space", "create", "frontend", "--project", "web")
    cli.ok("space", "create", "ops")
    for space in ("frontend", "ops"):
        cli.ok("space", "join", space, "--as", "alice")
        cli.ok("space", "send", space, f"news in {space}", "--from", "bob")
    cli.ok("msg", "send", "--to", "alice", "just for you", "--from", "bob")

    def bodies(*args: str) -> list[str]:
        return [m["body"] for m in json.loads(cli.ok(*args, "--json"))]

    every = ["news in frontend", "news in ops", "just for you"]
    assert bodies("msg", "read", "--as", "alice") == every
    assert json.loads(cli.ok("focus", "--as", "alice", "--json"))["project"] is None
    one_line_error(cli("focus", "set", "ghost", "--as", "alice"), 1, "project ghost: no such project")
    assert cli.ok("focus", "set", "web", "--as", "alice").strip() == "alice: web"
    assert cli.ok("focus", "--as", "alice").strip() == "alice: web"
    # Her direct messages are hers whatever the project; of the spaces, only the project's.
    assert bodies("msg", "read", "--as", "alice") == ["news in frontend", "just for you"]
    assert bodies("msg", "read", "--as", "alice", "--all-projects") == every
    assert bodies("msg", "feed", "--as", "alice") == ["news in frontend"]
    assert bodies("msg", "feed", "--as", "alice", "--all-projects") == every
    assert [s["name"] for s in json.loads(cli.ok("space", "list", "--as", "alice", "--json"))] == ["frontend"]
    assert "[web]" in cli.ok("space", "list", "--as", "alice")
    assert len(json.loads(cli.ok("space", "list", "--as", "alice", "--all-projects", "--json"))) == 2
    # Another agent's reads are its own.
    assert [s["name"] for s in json.loads(cli.ok("space", "list", "--as", "bob", "--json"))] == [
        "frontend",
        "ops",
    ]
    assert cli.ok("focus", "clear", "--as", "alice").strip() == "focus cleared"
    assert cli.ok("focus", "clear", "--as", "alice").strip() == "no focus was set"
    assert bodies("msg", "read", "--as", "alice") == every


def test_deleting_a_project_ends_the_focus_on_it(cli: DevSessions) -> None:
    cli.ok("project", "create", "short-lived")
    cli.ok("focus", "set", "short-lived", "--as", "alice")
    cli.ok("project", "delete", "short-lived")
    assert json.loads(cli.ok("focus", "--as", "alice", "--json"))["project"] is None


# -- leases ------------------------------------------------------------------------------------------------


def _leases(cli: DevSessions, *args: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = json.loads(cli.ok("lease", "list", "--json", *args))
    return found


def test_leases_are_all_or_nothing_and_a_conflict_names_the_holder(cli: DevSessions, workdir: Path) -> None:
    repo = git_repo(workdir / "repo")
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("x")
    inside = DevSessions(repo)
    got = json.loads(
        inside.ok("lease", "acquire", "src/*.py", "deploy", "--reason", "auth rewrite", "--ttl", "2h",
                  "--as", "alice", "--json")
    )  # fmt: skip
    assert [(g["resource"], g["kind"], g["mode"], g["holder"]) for g in got] == [
        ("src/*.py", "path", "exclusive", "alice"),
        ("deploy", "name", "exclusive", "alice"),
    ]
    assert got[0]["repo"] == str(repo.resolve()) and got[1]["repo"] is None and got[0]["ttl"] == 7200
    # One free resource and one held: neither is taken.
    refused = inside("lease", "acquire", "README.md", "src/app.py", "--as", "bob")
    one_line_error(
        refused, 1, "src/*.py in", "held exclusively by alice until", ": auth rewrite; nothing was acquired"
    )
    assert [lease["holder"] for lease in _leases(cli)] == ["alice", "alice"]
    as_json = inside("lease", "acquire", "src/app.py", "--as", "bob", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["conflicts"] == [
        {
            "resource": f"src/*.py in {repo.resolve()}",
            "holder": "alice",
            "mode": "exclusively",
            "reason": "auth rewrite",
            "expiresAt": got[0]["expiresAt"],
        }
    ]
    # Seen from a subdirectory, the same file; a glob that cannot name the same file is free.
    one_line_error(DevSessions(repo / "src")("lease", "acquire", "app.py", "--as", "bob"), 1, "alice")
    inside.ok("lease", "acquire", "src/*.md", "--as", "bob")
    one_line_error(
        cli("lease", "acquire", "deploy", "--shared", "--as", "bob"), 1, "deploy is held exclusively"
    )
    # Acquiring again what one holds renews it (and may change its mode).
    inside.ok("lease", "acquire", "src/*.py", "--shared", "--as", "alice")
    assert {(x["resource"], x["mode"]) for x in _leases(cli, "--mine", "--as", "alice")} == {
        ("src/*.py", "shared"),
        ("deploy", "exclusive"),
    }


def test_shared_leases_stand_together_and_an_exclusive_one_waits_for_them(cli: DevSessions) -> None:
    cli.ok("lease", "acquire", "staging", "--shared", "--as", "alice")
    cli.ok("lease", "acquire", "staging", "--shared", "--as", "bob")
    one_line_error(cli("lease", "acquire", "staging", "--as", "carol"), 1, "held shared by alice", "bob")
    released = json.loads(cli.ok("lease", "release", "staging", "--as", "alice", "--json"))
    assert [r["holder"] for r in released] == ["alice"]
    cli.ok("lease", "release", "--all", "--as", "bob")
    cli.ok("lease", "acquire", "staging", "--as", "carol")
    assert cli.ok("lease", "release", "nothing-held", "--as", "carol").strip() == ""
    one_line_error(cli("lease", "release", "--as", "carol"), 2, "name the resources")


def test_check_renew_and_a_lease_that_lapses(cli: DevSessions, workdir: Path) -> None:
    repo = git_repo(workdir / "repo")
    (repo / "docs").mkdir()
    inside = DevSessions(repo)
    inside.ok("lease", "acquire", "docs", "--ttl", "1h", "--as", "alice", "--reason", "rewriting")
    checked = inside("lease", "check", "docs/a.md", "src/b.py", "--as", "bob")
    assert checked.returncode == 1
    assert checked.stdout.splitlines()[0].startswith("docs/a.md: exclusive lease of alice (docs/**) until ")
    assert checked.stdout.splitlines()[1] == "src/b.py: free"
    assert "docs/** in" in checked.stderr and checked.stderr.count("\n") == 1
    mine = json.loads(inside.ok("lease", "check", "docs/a.md", "--as", "alice", "--json"))
    assert mine[0]["blocked"] is False and [x["holder"] for x in mine[0]["leases"]] == ["alice"]
    before = _leases(cli)[0]["expiresAt"]
    renewed = json.loads(cli.ok("lease", "renew", "--ttl", "3h", "--as", "alice", "--json"))
    assert [r["resource"] for r in renewed] == ["docs/**"] and renewed[0]["expiresAt"] > before
    one_line_error(cli("lease", "renew", "deploy", "--as", "alice"), 1, "deploy: alice holds no lease on it")
    one_line_error(cli("lease", "acquire", "x", "--ttl", "8d"), 2, "at most a week")
    one_line_error(cli("lease", "acquire", "x", "--ttl", "0"), 2, "more than 0 s")
    one_line_error(cli("lease", "acquire", "src/a.py"), 2, "not inside a git repository")
    # A lease lapses by itself: free again when its time is up, nobody releasing it.
    assert cli.ok("lease", "acquire", "the-printer", "--ttl", "2s", "--as", "alice").startswith("acquired")
    eventually(lambda: cli("lease", "check", "the-printer", "--as", "bob").returncode == 0, timeout=20)
    assert "the-printer" not in cli.ok("lease", "list")
    cli.ok("lease", "acquire", "the-printer", "--as", "bob")


def test_two_agents_racing_for_one_file_get_it_once(cli: DevSessions, workdir: Path) -> None:
    repo = git_repo(workdir / "repo")
    racers = [
        subprocess.Popen(
            [*_dev_sessions(), "lease", "acquire", "hot.txt", "--as", f"agent{n}"],
            cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for n in range(6)
    ]  # fmt: skip
    codes = [racer.wait(60) for racer in racers]
    assert sorted(codes) == [0, 1, 1, 1, 1, 1]
    assert len(_leases(cli)) == 1


def _dev_sessions() -> list[str]:
    return [sys.executable, "-m", "dev_sessions"]


def test_many_leases_stay_exact(message_store: MessageStore, cli: DevSessions, workdir: Path) -> None:
    """Leases of many agents over many directories: the index finds exactly the overlapping ones."""
    from dev_sessions.messaging.leases import Target

    repo = git_repo(workdir / "repo")
    key = str(repo.resolve())
    for n in range(200):
        message_store.acquire(
            [Target("path", key, f"pkg{n}/mod{n % 7}/*.py")], holder=f"a{n}", exclusive=False, ttl_s=600,
            reason="", machine=None,
        )  # fmt: skip
    message_store.acquire(
        [Target("path", key, "**/mod3/test_*.py")],
        holder="wide",
        exclusive=False,
        ttl_s=600,
        reason="",
        machine=None,
    )
    found = json.loads(DevSessions(repo)("lease", "check", "pkg10/mod3/test_x.py", "--json").stdout)
    assert sorted(x["holder"] for x in found[0]["leases"]) == ["a10", "wide"]
    found = json.loads(DevSessions(repo)("lease", "check", "pkg10/mod3/x.md", "--json").stdout)
    assert found[0]["leases"] == [] and found[0]["blocked"] is False


# -- the guard -------------------------------------------------------------------------------------------


def _commit(repo: Path, agent: str, *files: str) -> subprocess.CompletedProcess[str]:
    for name in files:
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{name} by {agent} {os.urandom(4).hex()}\n")
        subprocess.run(["git", "add", name], cwd=repo, check=True)
    env = {**os.environ, "DEV_SESSIONS_AGENT": agent}
    return subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-qm", f"{agent} commits"],
        cwd=repo, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_the_guard_refuses_a_commit_of_a_file_another_agent_holds(cli: DevSessions, workdir: Path) -> None:
    repo = git_repo(workdir / "repo")
    inside = DevSessions(repo)
    out = inside.ok("lease", "install-guard")
    assert out.strip() == f"{repo / '.git' / 'hooks' / 'pre-commit'}: the lease guard is installed"
    inside.ok("lease", "acquire", "src/**", "--as", "alice", "--reason", "moving modules")
    refused = _commit(repo, "bob", "README.md", "src/core/a.py")
    assert refused.returncode == 1
    lines = refused.stderr.splitlines()
    assert lines[0].startswith("dev-sessions: commit refused: src/core/a.py is leased exclusively by alice ")
    assert lines[0].endswith(": moving modules") and "README.md" not in refused.stderr
    assert "ask alice" in lines[1] and "--no-verify" in lines[1]
    # The holder commits (what bob staged too: a.py is hers to commit).
    assert _commit(repo, "alice", "src/core/b.py").returncode == 0
    inside.ok("lease", "release", "src/**", "--as", "alice")
    allowed = _commit(repo, "bob", "src/core/a.py")
    assert allowed.returncode == 0, allowed.stderr
    log = subprocess.run(["git", "log", "--format=%s"], cwd=repo, capture_output=True, text=True, check=True)
    assert log.stdout.splitlines()[0] == "bob commits"


def test_the_guard_keeps_a_hook_that_was_there_and_gives_it_back(cli: DevSessions, workdir: Path) -> None:
    repo = git_repo(workdir / "repo")
    hooks = repo / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    own = "#!/bin/sh\necho the user hook ran >&2\n"
    (hooks / "pre-commit").write_text(own)
    (hooks / "pre-commit").chmod(0o755)
    inside = DevSessions(repo)
    assert "kept as pre-commit.before-dev-sessions" in inside.ok("lease", "install-guard", str(repo))
    assert "brought up to date" in inside.ok("lease", "install-guard")
    inside.ok("lease", "acquire", "./locked.txt", "--as", "alice")  # a file to be
    refused = _commit(repo, "bob", "locked.txt")
    assert refused.returncode == 1 and "the user hook ran" in refused.stderr and "alice" in refused.stderr
    # The user's hook refusing still refuses, before the leases are looked at.
    (hooks / "pre-commit.before-dev-sessions").write_text("#!/bin/sh\necho no >&2\nexit 3\n")
    stopped = _commit(repo, "alice", "locked.txt")  # the holder: the leases would let it through
    assert stopped.returncode == 1 and stopped.stderr == "no\n"
    (hooks / "pre-commit.before-dev-sessions").write_text(own)
    assert "the hook it kept is back" in inside.ok("lease", "uninstall-guard")
    assert (hooks / "pre-commit").read_text() == own and not (
        hooks / "pre-commit.before-dev-sessions"
    ).exists()
    assert _commit(repo, "bob", "locked.txt").returncode == 0, "no guard any more"
    # A hook that is not ours is never removed; two that are not ours are never shuffled.
    one_line_error(inside("lease", "uninstall-guard"), 2, "not the lease guard")
    (hooks / "pre-commit.before-dev-sessions").write_text(own)
    one_line_error(inside("lease", "install-guard"), 2, "is taken too; nothing changed")
    assert (hooks / "pre-commit").read_text() == own
    (hooks / "pre-commit").unlink()
    assert "nothing to do" in inside.ok("lease", "uninstall-guard")


def test_the_guard_lets_no_value_reach_a_shell(
    cli: DevSessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state directory and a repository whose names are shell code: the hook runs them as names."""
    weird = tmp_path / 'it\'s $(touch pwned-home) `touch pwned2` "q"'
    weird.mkdir()
    monkeypatch.setenv("DEV_SESSIONS_HOME", str(weird / "state"))
    repo = git_repo(tmp_path / "repo ' $(touch pwned-repo)")
    inside = DevSessions(repo)
    inside.ok("lease", "install-guard")
    (repo / "a;b $(touch pwned-file).txt").write_text("x")
    inside.ok("lease", "acquire", "a;b $(touch pwned-file).txt", "--as", "alice")
    # Committed from a shell that knows no DEV_SESSIONS_HOME: the hook's own (quoted) one is used.
    monkeypatch.delenv("DEV_SESSIONS_HOME")
    refused = _commit(repo, "bob", "a;b $(touch pwned-file).txt")
    assert refused.returncode == 1 and "leased exclusively by alice" in refused.stderr
    assert not list(tmp_path.rglob("pwned*")) and not list(Path.cwd().glob("pwned*"))
