"""A real sshd for the remote-host tests, and the "remote host" behind it: a second world on this machine.

``start_sshd(root)`` runs OpenSSH's own server (``/usr/sbin/sshd -D -e``) on 127.0.0.1 and a free port,
as the current user, with everything it needs made under ``root`` by ``ssh-keygen``: a throwaway host
key, a client key (the only one it accepts: public keys only, no PAM, no password), its pid file and
its ``authorized_keys``. The remote login gets its own world through ``SetEnv``: ``HOME``,
``DEV_SESSIONS_HOME``, a tmux socket, ``XDG_RUNTIME_DIR`` and a ``PATH`` on which ``dev-sessions`` is
this checkout run by the tests' Python (a wrapper that starts in the remote home and records its pid,
so that whatever a test leaves running there is stopped).

The client side is an ssh config file (``client_config``, for ``DEV_SESSIONS_SSH_CONFIG``) with three
hosts: ``remote-box`` (this sshd), ``unreachable-box`` (a port held closed: refused at once) and
``silent-box`` (a port that accepts and never answers, as a host behind a dead network would). Its
keys, known hosts and identities are all under ``root``; no agent is asked.

Nothing here reads or writes the real ``~``: sshd is given ``PermitUserEnvironment no`` (it would read
``~/.ssh/environment``) and ``PermitUserRC no`` (``~/.ssh/rc``), an absolute ``AuthorizedKeysFile``, and
the environment through ``SetEnv``, which it applies over the user's own (``HOME`` included: the
login shell reads the remote world's ``.bashrc``, if any); ssh is given ``-F`` (so neither
``~/.ssh/config`` nor ``/etc/ssh/ssh_config`` is read, and ``~/.ssh`` is never made), and every file it
would take from ``~/.ssh`` by default. The only thing outside ``root``: as root, sshd needs its empty
privilege-separation directory ``/run/sshd``, which the system service would make; it is made if
missing (0755, as the package's unit makes it).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")
ROOT = Path(__file__).resolve().parents[2]

ALIAS = "remote-box"
UNREACHABLE = "unreachable-box"
SILENT = "silent-box"


def missing_tools() -> str | None:
    """What is missing to run an sshd here, or None."""
    if not SSHD.is_file():
        return f"{SSHD} is not installed (scripts/test installs openssh-server)"
    for tool in ("ssh", "ssh-keygen"):
        if not any((Path(d) / tool).is_file() for d in os.get_exec_path()):
            return f"{tool} is not installed (OpenSSH's client)"
    return None


@dataclass
class RemoteWorld:
    """What the remote login sees: its own home, state directory, tmux socket and PATH."""

    root: Path
    home: Path
    state: Path
    tmux_socket: str
    bin: Path
    pids: Path
    extra: dict[str, str] = field(default_factory=dict)
    """More of the remote login's environment (an agent's binary and its fake model, for instance)."""

    @property
    def environ(self) -> dict[str, str]:
        return {
            **self.extra,
            "HOME": str(self.home),
            "DEV_SESSIONS_HOME": str(self.state),
            "DEV_SESSIONS_TMUX_SOCKET": self.tmux_socket,
            "XDG_RUNTIME_DIR": str(self.root / "run"),
            "PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "LANG": "C.UTF-8",
        }

    def started(self) -> list[int]:
        """The pids of the remote ``dev-sessions`` commands run so far, oldest first."""
        text = self.pids.read_text() if self.pids.exists() else ""
        return [int(line) for line in text.split()]

    def running(self) -> list[int]:
        """The pids of the Python processes that run now in this world (its dev-sessions commands,
        its call server and the calls it serves; not tmux, not the agents)."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and _is_ours(int(entry), self.state) and _is_python(int(entry)):
                found.append(int(entry))
        return sorted(found)


@dataclass
class Sshd:
    """A running sshd and the client config that reaches it."""

    port: int
    client_config: Path
    log: Path
    remote: RemoteWorld
    process: subprocess.Popen[bytes]
    started_in: float
    """Seconds from nothing to listening (keys, config, sshd's start)."""
    _holders: list[socket.socket] = field(default_factory=list)

    def said(self) -> str:
        return self.log.read_text(errors="replace")

    def logins(self) -> int:
        """How many times a client has logged in (each new connection, not each command over one)."""
        return self.said().count("Accepted publickey for ")

    def stop(self) -> None:
        """Stop sshd, the silent port, and any remote command a test left running."""
        for holder in self._holders:
            with contextlib.suppress(OSError):  # wakes the silent port's accept(); refused when not listening
                holder.shutdown(socket.SHUT_RDWR)
            holder.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for pid in self.remote.started():
            # Ours (the wrapper records its own pid, which python then takes over): a command blocked
            # on a connection the test killed does not end with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if _is_ours(pid, self.remote.state):
                    os.kill(pid, signal.SIGTERM)
        for pid in self.remote.running():  # what those started: the call server and its calls
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)


def _is_ours(pid: int, state: Path) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"DEV_SESSIONS_HOME={state}".encode() in environ.split(b"\0")


def _is_python(pid: int) -> bool:
    try:
        return os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(sys.executable)
    except OSError:
        return False


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True, stdin=subprocess.DEVNULL, capture_output=True,
    )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _closed_port() -> tuple[socket.socket, int]:
    """A port bound and never listened on: a connection to it is refused, and nobody else takes it."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    port: int = holder.getsockname()[1]
    return holder, port


def _silent_port() -> tuple[socket.socket, int]:
    """A port that accepts connections (the kernel completes them) and never says a word."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(64)
    port: int = holder.getsockname()[1]
    return holder, port


def _remote_world(root: Path) -> RemoteWorld:
    world = RemoteWorld(
        root=root,
        home=root / "home",
        state=root / "state",
        tmux_socket=f"ds-remote-{os.urandom(4).hex()}",
        bin=root / "bin",
        pids=root / "pids",
    )
    for directory in (world.home, world.bin):
        directory.mkdir(parents=True)
    (root / "run").mkdir(mode=0o700)
    wrapper = world.bin / "dev-sessions"
    wrapper.write_text(
        "#!/bin/sh\n"
        "# The remote host's dev-sessions: this checkout, run by the tests' Python, from the remote home.\n"
        f"echo $$ >> {shlex.quote(str(world.pids))}\n"
        'cd "$HOME" || exit 1\n'
        f'exec {shlex.quote(sys.executable)} -m dev_sessions "$@"\n'
    )
    wrapper.chmod(0o755)
    return world


def _sshd_config(root: Path, port: int, user: str, world: RemoteWorld, forwarding: bool) -> str:
    setenv = " ".join(f"{key}={value}" for key, value in world.environ.items())
    return "\n".join(
        [
            "ListenAddress 127.0.0.1",
            f"Port {port}",
            f"HostKey {root / 'host_ed25519'}",
            f"PidFile {root / 'sshd.pid'}",
            f"AuthorizedKeysFile {root / 'authorized_keys'}",
            f"AllowUsers {user}",
            "AuthenticationMethods publickey",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "HostbasedAuthentication no",
            "IgnoreRhosts yes",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            # /tmp is open to all: the checks of the key file's directories would refuse it.
            "StrictModes no",
            "PermitUserEnvironment no",
            "PermitUserRC no",
            "PermitTTY no",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "X11Forwarding no",
            # Unix-socket forwarding from the client (the warm path to the call server); sshd also
            # refuses that one when TCP forwarding is off, so both say "local" (never "remote").
            f"AllowTcpForwarding {'local' if forwarding else 'no'}",
            "AllowAgentForwarding no",
            f"AllowStreamLocalForwarding {'local' if forwarding else 'no'}",
            "PermitTunnel no",
            "LogLevel INFO",
            f"SetEnv {setenv}",
            "",
        ]
    )


def _client_config(root: Path, user: str, ports: dict[str, int]) -> str:
    blocks = []
    for alias, port in ports.items():
        blocks.append(
            "\n".join(
                [
                    f"Host {alias}",
                    "  HostName 127.0.0.1",
                    f"  Port {port}",
                    f"  User {user}",
                    f"  IdentityFile {root / 'client_ed25519'}",
                    "  IdentitiesOnly yes",
                    "  IdentityAgent none",
                    "  PasswordAuthentication no",
                    "  KbdInteractiveAuthentication no",
                    f"  UserKnownHostsFile {root / 'known_hosts'}",
                    "  GlobalKnownHostsFile /dev/null",
                    "  StrictHostKeyChecking accept-new",
                    "  UpdateHostKeys no",
                    # Quiet about adding the host key on the first login: stderr is the remote's.
                    "  LogLevel ERROR",
                    "",
                ]
            )
        )
    return "\n".join(blocks)


def start_sshd(
    root: Path,
    timeout: float = 10.0,
    extra: Callable[[Path], Mapping[str, str]] | None = None,
    forwarding: bool = True,
) -> Sshd:
    """sshd on 127.0.0.1 and a free port, the remote world and a client config, all under ``root``.
    ``extra`` gives more of the remote login's environment, from the remote home; ``forwarding``
    False refuses the client's Unix-socket forwards, as a locked-down host does."""
    began = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    user = pwd.getpwuid(os.getuid()).pw_name
    _keygen(root / "host_ed25519", "dev-sessions test host")
    _keygen(root / "client_ed25519", "dev-sessions test client")
    (root / "authorized_keys").write_bytes((root / "client_ed25519.pub").read_bytes())
    world = _remote_world(root / "remote")
    if extra is not None:
        world.extra.update(extra(world.home))
    if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    closed, closed_port = _closed_port()
    silent, silent_port = _silent_port()
    log = root / "sshd.log"
    for _attempt in range(5):
        port = _free_port()
        config = root / "sshd_config"
        config.write_text(_sshd_config(root, port, user, world, forwarding))
        with log.open("wb") as err:
            process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True,
            )  # fmt: skip
        listening = f"Server listening on 127.0.0.1 port {port}."
        deadline = time.monotonic() + timeout
        while listening not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if listening in log.read_text(errors="replace"):
            break
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if "Address already in use" not in log.read_text(errors="replace"):
            raise AssertionError(f"sshd did not start: {log.read_text(errors='replace')}")
    else:
        raise AssertionError(f"sshd found no free port: {log.read_text(errors='replace')}")
    client = root / "ssh_config"
    client.write_text(
        _client_config(root, user, {ALIAS: port, UNREACHABLE: closed_port, SILENT: silent_port})
    )
    sshd = Sshd(port, client, log, world, process, time.monotonic() - began, [closed, silent])
    _drain_silent(silent)
    return sshd


def _drain_silent(holder: socket.socket) -> None:
    # Accept and hold what comes (the kernel would complete a connection anyway; holding them keeps
    # the backlog from filling), never answering; the thread ends when the socket is closed.
    def run() -> None:
        held = []
        with contextlib.suppress(OSError):
            while True:
                held.append(holder.accept()[0])
        for conn in held:
            conn.close()

    threading.Thread(target=run, daemon=True, name="silent-box").start()
