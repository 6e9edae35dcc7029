"""A private systemd user manager (``systemd --user``) for one test, reached with ``systemctl --user``.

It is not the user's own manager: it runs with the test's ``HOME`` and ``XDG_RUNTIME_DIR`` (where its
control socket lives), so ``systemctl --user`` in the test reaches it and nothing else. It runs in a
cgroup of its own (made under the test's cgroup in the ``name=systemd`` and the unified hierarchy):
a manager started where it is the only thing in its cgroup adopts nothing else. Left in the test's
own cgroup, a manager started at the root of the hierarchy moves every process there, the machine's
init included, into its ``init.scope``.

``systemd --user`` refuses to start on a machine that was not booted with systemd (no
``/run/systemd/system``), which is the case in containers; there it runs in a private mount
namespace in which that directory exists, which needs root and ``unshare``.

What it needs, and what ``start`` reports (with the reason) when it cannot run: systemd and
systemctl, a cgroup hierarchy the test may write to, and, where the machine was not booted with
systemd, root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import SLOW

LAUNCH = """
set -e
for dir in $DS_TEST_CGROUPS; do echo $$ > "$dir/cgroup.procs"; done
if [ ! -d /run/systemd/system ]; then
  # Not booted with systemd: pretend it was, in this mount namespace only.
  mount -t tmpfs -o mode=755 ds-test-systemd /run/systemd
  mkdir /run/systemd/system
fi
exec "$DS_TEST_SYSTEMD" --user
"""


class CannotRun(Exception):
    """A private user manager cannot run on this machine; the message says why."""


def _hierarchies() -> list[Path]:
    """This process's cgroup directories in the hierarchies systemd tracks processes in."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        number, controllers, path = line.split(":", 2)
        if number == "0" and controllers == "":
            own["cgroup2"] = path
        elif "name=systemd" in controllers.split(","):
            own["name=systemd"] = path
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        root, mount_point = fields[3], fields[4]
        after = fields[fields.index("-") + 1 :]
        kind, options = after[0], after[2].split(",")
        key = "cgroup2" if kind == "cgroup2" else "name=systemd" if "name=systemd" in options else None
        if key is None or key not in own or not own[key].startswith(root):
            continue
        found.append(Path(mount_point) / own[key][len(root) :].lstrip("/"))
        del own[key]
    return found


@dataclass
class UserManager:
    home: Path
    runtime: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    cgroups: list[Path] = field(default_factory=list)

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
        env.update(HOME=str(self.home), XDG_RUNTIME_DIR=str(self.runtime))
        return env

    def systemctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["systemctl", "--user", *args], capture_output=True, text=True, env=self.environ(),
            timeout=30 * SLOW, check=False,
        )  # fmt: skip

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        shown = self.systemctl("show", unit, f"--property={','.join(properties)}").stdout
        return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)

    def start(self) -> None:
        binary = shutil.which("systemd") or next(
            (p for p in ("/lib/systemd/systemd", "/usr/lib/systemd/systemd") if os.access(p, os.X_OK)), None
        )
        if binary is None or shutil.which("systemctl") is None:
            raise CannotRun("systemd and systemctl are not installed (Debian's systemd package has both)")
        argv = ["sh", "-c", LAUNCH]
        if not Path("/run/systemd/system").is_dir():
            if os.geteuid() != 0 or shutil.which("unshare") is None:
                raise CannotRun(
                    "this machine was not booted with systemd, and pretending it was (in a private "
                    "mount namespace) needs root and unshare"
                )
            argv = ["unshare", "--mount", "--propagation", "private", *argv]
        name = f"dev-sessions-test-{uuid.uuid4().hex[:12]}"
        hierarchies = _hierarchies()
        if not hierarchies:
            raise CannotRun("no cgroup hierarchy that systemd could use is mounted")
        for parent in hierarchies:
            try:
                (parent / name).mkdir()
            except OSError as err:
                self.stop()
                raise CannotRun(f"cannot make a cgroup for it under {parent}: {err.strerror}") from err
            self.cgroups.append(parent / name)
        env = {
            **self.environ(),
            "DS_TEST_CGROUPS": " ".join(map(str, self.cgroups)),
            "DS_TEST_SYSTEMD": binary,
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, cwd=self.home,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 30 * SLOW
        while True:
            # Not is-system-running: outside the manager's namespace that says "offline" regardless.
            state = self.systemctl("show", "--property=SystemState", "--value").stdout.strip()
            if state in ("running", "degraded"):
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                said = self.log.read_text(errors="replace").strip().splitlines()[-3:]
                self.stop()
                raise CannotRun(
                    f"systemd --user did not come up ({state or 'no answer'}): {' / '.join(said)}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the manager (it stops its units), then anything left in its cgroups, then the cgroups."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20 * SLOW)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for top in self.cgroups:
            for directory in sorted((d for d in [top, *top.rglob("*")] if d.is_dir()), reverse=True):
                procs = directory / "cgroup.procs"
                with contextlib.suppress(FileNotFoundError):
                    for pid in procs.read_text().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)
                deadline = time.monotonic() + 10
                while True:
                    try:
                        directory.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
        self.cgroups.clear()
