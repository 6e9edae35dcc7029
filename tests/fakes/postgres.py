"""A real, throw-away PostgreSQL server for the tests: ``initdb`` into a temp dir, ``postgres`` on a
private Unix socket there (no TCP port), stopped and removed at the end.

The binaries are the system's (Debian's ``postgresql``: ``/usr/lib/postgresql/<version>/bin``, which
``scripts/test`` installs when missing; the system service is neither started nor needed), or
``DEV_SESSIONS_TEST_PG_BIN`` names their directory. PostgreSQL refuses to run as root: run as root, the
server runs as the ``postgres`` user (else ``nobody``) through ``setpriv``, in a directory it owns; the
tests connect over the socket as the server's own superuser ``dstest``, trusted (nothing else can
reach the socket's directory's server but local users, and it lives only for the run).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

SUPERUSER = "dstest"


def binaries() -> Path | None:
    """The directory of ``initdb`` and ``postgres``, newest version first; None when not installed."""
    explicit = os.environ.get("DEV_SESSIONS_TEST_PG_BIN")
    if explicit:
        return Path(explicit) if (Path(explicit) / "postgres").exists() else None
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        reverse=True,
    )
    if versions:
        return versions[0].parent
    found = shutil.which("postgres")
    return Path(found).parent if found and shutil.which("initdb") else None


class Postgres:
    """One running server; :meth:`database` makes a fresh database on it and returns its URL."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        # Short: a Unix socket's path must stay under 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="ds-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        self._user: tuple[int, int] | None = None
        if os.geteuid() == 0:
            account = _unprivileged()
            self._user = (account.pw_uid, account.pw_gid)
            os.chown(self.root, *self._user)
        self.root.chmod(0o700)

    def _argv(self, *argv: str) -> list[str]:
        if self._user is None:
            return list(argv)
        uid, gid = self._user
        return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *argv]

    def start(self) -> None:
        subprocess.run(
            self._argv(
                str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions",
            ),
            check=True, capture_output=True, cwd=self.root, env=_clean_env(),
        )  # fmt: skip
        self.resume()

    def resume(self) -> None:
        """Run the server on its data directory (again, after :meth:`halt`), and wait until it answers."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self._argv(
                    str(self.bindir / "postgres"), "-D", str(self.data), "-k", str(self.root),
                    "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
                    "-c", "full_page_writes=off", "-c", "shared_buffers=16MB", "-c", "max_connections=60",
                ),
                stdout=log, stderr=subprocess.STDOUT, cwd=self.root, env=_clean_env(),
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.url("postgres"), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.root}"

    def database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop(self, url: str) -> None:
        """Remove a database made by :meth:`database`, closing whatever still uses it."""
        import psycopg

        name = urlsplit(url).path.lstrip("/")  # not the last "/": the socket's directory follows
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def halt(self) -> None:
        """Stop the server and keep its data: a server going down (:meth:`resume` brings it back)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # a "fast" shutdown (SIGTERM waits for clients)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)


def _unprivileged() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root, with neither a postgres nor a nobody user to run postgres as")


def _clean_env() -> dict[str, str]:
    # The server needs no environment of ours (and no PG* variable should steer it).
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}


@contextlib.contextmanager
def running_postgres(bindir: Path) -> Iterator[Postgres]:
    server = Postgres(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
