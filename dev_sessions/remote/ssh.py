"""The ssh transport: run a remote host's own ``dev-sessions`` with the arguments given.

What it owns:

* The ``ssh`` command line. One shared connection per host (a ControlMaster, kept
  ``DEV_SESSIONS_SSH_PERSIST`` seconds after its last command), its socket in
  ``$DEV_SESSIONS_HOME/ssh/`` (0700, never through a link); ``BatchMode`` (a password prompt would
  hang), ``ConnectTimeout``, keep-alives, ``-F DEV_SESSIONS_SSH_CONFIG``; the host ends ssh's options
  (``TARGET --``), and a target ssh could read as an option is refused before ssh runs.
* The remote command: ``dev-sessions ARGS...`` (``DEV_SESSIONS_REMOTE_BIN``), every argument quoted
  for the remote login shell, which must be a POSIX one (sh, bash, zsh). Bodies (messages, files)
  go on stdin as bytes, byte-exact, never in an argument.
* A command read as it runs (``stream``): its stdout a line at a time as it comes, for a streamed
  call (``follow``). Each such ssh is stopped when its reader stops reading, and when this process
  exits (a follow read by a thread that is not waited for: the progress line).
* What an exit means. 255 is ssh's own (no connection, no login, a connection lost):
  :class:`HostUnreachable`, as is no answer within a caller's timeout. 127 or 126 is the remote
  shell not finding or not running the binary: :class:`RemoteMissing`. Any other code is the remote
  command's own: :class:`RemoteResult` holds it with the output, and ``check()`` makes a failure
  :class:`RemoteFailed` (the remote's one line, its exit code kept).

What it must not do: know what a command means (the caller routes and renders), read the environment
(``Settings`` has every knob), log an argument past the command's name (they can hold text), or retry
a command after a lost connection (it may have run on the host already). Standard library only, and
imported only where a remote host is used.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dev_sessions.config import Settings
from dev_sessions.errors import (
    DevSessionsError,
    HostUnreachable,
    RemoteFailed,
    RemoteIncompatible,
    RemoteMissing,
    ToolMissing,
    UsageError,
)
from dev_sessions.files import owned_private_dir, private_dir

logger = logging.getLogger(__name__)

EXIT_SSH = 255
"""ssh's own failure: no connection, no login, or the connection lost."""
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126

OLDEST_REMOTE = (0, 1, 0)
"""The oldest remote dev-sessions this one drives; a remote of another major version is refused too."""

KEEPALIVE = ("ServerAliveInterval=15", "ServerAliveCountMax=3")
"""A host that stops answering mid-command (a dead network) fails after 45 s instead of hanging."""

MAX_PARALLEL = 64

# A Unix socket path holds 107 bytes, and ssh binds a new master's socket under its name plus a
# 17-byte suffix before renaming it: a longer ControlPath fails every command, so a state directory
# that deep goes without a shared connection. %C is a 40-hex hash of the local host, remote host,
# port and user: one master per destination, however it was named.
_SOCKET_PATH_MAX = 107 - 17
_CONTROL_NAME = "cm-%C"
_CONTROL_NAME_LEN = len("cm-") + 40
# ssh splits an -o value at spaces and expands % in it: such a directory is not given to it.
_PLAIN_PATH = re.compile(r"[\w./+@,:=~-]+")
_UNSAFE_TARGET = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_VERSION = re.compile(r"dev-sessions (\d+)\.(\d+)\.(\d+)(?:\S*)")
_PREFIX = "dev-sessions: "
_MAX_LINE = 500


def check_target(target: str) -> str:
    """``target`` if ssh can only read it as a destination (an alias, ``host``, ``user@host``)."""
    if not target or target.startswith("-") or _UNSAFE_TARGET.search(target):
        raise UsageError(
            f"host {target!r}: not a host for ssh (an alias from your ssh config, host or user@host; "
            "no spaces or control characters, not starting with -)"
        )
    return target


def remote_command(binary: str, args: Sequence[str]) -> str:
    """The command line the remote shell runs: ``binary`` and ``args``, each one word, taken literally.

    A ``binary`` starting with ``~/`` is under the remote user's home (the tilde is left unquoted for
    the remote shell to expand).
    """
    for arg in (binary, *args):
        if "\0" in arg:
            raise UsageError("an argument for a remote host holds a NUL character; send it as a body")
    if binary.startswith("~/") and len(binary) > 2:
        head = "~/" + shlex.quote(binary[2:])
    else:
        head = shlex.quote(binary)
    return " ".join([head, *(shlex.quote(arg) for arg in args)])


def compatible(version: str) -> bool:
    """Whether this dev-sessions drives a remote one of ``version`` (``X.Y.Z``)."""
    match = _VERSION.fullmatch(f"dev-sessions {version}")
    if match is None:
        return False
    found = tuple(int(part) for part in match.groups())
    return found[0] == OLDEST_REMOTE[0] and found >= OLDEST_REMOTE


def _seconds(value: float) -> int:
    # ssh takes whole seconds; a fraction rounds up, so that a short timeout never becomes 0 ("none").
    return max(1, int(-(-value // 1)))


def _last_line(stderr: bytes) -> str:
    """The line that says what went wrong: the last ``dev-sessions: ...`` one, else the last one."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith(_PREFIX)]
    line = (ours or lines or [""])[-1].removeprefix(_PREFIX)
    return line[:_MAX_LINE]


@dataclass(frozen=True)
class RemoteResult:
    """What a command on a remote host did: its exit code and its output, byte for byte."""

    host: str
    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def text(self) -> str:
        """stdout as text (an undecodable byte as U+FFFD)."""
        return self.stdout.decode("utf-8", "replace")

    def error_line(self) -> str:
        """The remote's one line about what went wrong (without its ``dev-sessions:``)."""
        return _last_line(self.stderr) or f"exit {self.exit_code}, nothing on stderr"

    def check(self) -> RemoteResult:
        """This result if the command succeeded; else :class:`RemoteFailed` with its line and code."""
        if self.exit_code != 0:
            raise RemoteFailed(host=self.host, message=self.error_line(), exit_code=self.exit_code)
        return self


class Ssh:
    """One remote host, reached with ``ssh TARGET``: runs its ``dev-sessions`` with given arguments."""

    def __init__(self, settings: Settings, target: str) -> None:
        self.settings = settings
        self.target = check_target(target)

    @property
    def control_dir(self) -> Path:
        """Where the shared connections' sockets are (one per host)."""
        return self.settings.home / "ssh"

    def control_path(self) -> str | None:
        """ssh's ControlPath for this host, or None when the state directory cannot hold one."""
        directory = str(self.control_dir)
        if not _PLAIN_PATH.fullmatch(directory):
            return None
        if len(os.fsencode(directory)) + 1 + _CONTROL_NAME_LEN > _SOCKET_PATH_MAX:
            return None
        return f"{directory}/{_CONTROL_NAME}"

    def options(self) -> list[str]:
        """ssh's options, before the target."""
        settings = self.settings
        options = ["-T", "-o", "BatchMode=yes"]
        options += ["-o", f"ConnectTimeout={_seconds(settings.ssh_connect_timeout)}"]
        for keepalive in KEEPALIVE:
            options += ["-o", keepalive]
        control = self.control_path()
        if control is None:
            options += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        else:
            # ControlPersist=0 would mean "for ever": 0 here means no master left behind.
            persist = f"{_seconds(settings.ssh_persist)}s" if settings.ssh_persist > 0 else "no"
            options += ["-o", "ControlMaster=auto", "-o", f"ControlPersist={persist}"]
            options += ["-o", f"ControlPath={control}"]
        if settings.ssh_config is not None:
            options += ["-F", str(settings.ssh_config)]
        return options

    def command_line(self, args: Sequence[str]) -> list[str]:
        """The whole ssh command that runs the remote ``dev-sessions ARGS...``."""
        command = remote_command(self.settings.remote_bin, args)
        return ["ssh", *self.options(), self.target, "--", command]

    def run(
        self, args: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = None
    ) -> RemoteResult:
        """Run the remote ``dev-sessions ARGS...``, ``stdin`` as its standard input, and return what it
        did (a non-zero exit included; ``check()`` raises it).

        Raises :class:`HostUnreachable` when ssh fails or nothing answers within ``timeout`` seconds
        (ssh is then stopped), :class:`RemoteMissing` when the host has no such binary.
        """
        argv = self.command_line(args)
        self._prepare()
        started = time.monotonic()
        stdout, stderr, code = self._spawn(argv, stdin, timeout)
        logger.debug(
            "ssh %s: %s (%d arguments) exit %d in %.2f s",
            self.target, args[0] if args else "", len(args), code, time.monotonic() - started,
        )  # fmt: skip
        if code == EXIT_SSH:
            detail = (
                _last_line(stderr).removeprefix("ssh: ")
                or "ssh exited with 255 and said nothing: no connection, or one lost"
            )
            raise HostUnreachable(host=self.target, detail=detail)
        if code in (EXIT_NOT_FOUND, EXIT_NOT_EXECUTABLE):
            what = "not found on its PATH" if code == EXIT_NOT_FOUND else "found but not executable"
            raise RemoteMissing(host=self.target, binary=self.settings.remote_bin, detail=what)
        return RemoteResult(self.target, code, stdout, stderr)

    def stream(self, args: Sequence[str], *, stdin: bytes) -> Iterator[bytes]:
        """Run the remote ``dev-sessions ARGS...`` with ``stdin``, and yield its stdout a line at a
        time as the lines come. Then what ``run`` raises for ssh's own failures; a non-zero exit of the
        command itself is :class:`RemoteFailed`. Closing the iterator stops ssh (and so the command
        there, which sees its reader gone)."""
        argv = self.command_line(args)
        self._prepare()
        pipe = subprocess.PIPE
        try:
            process = subprocess.Popen(argv, stdin=pipe, stdout=pipe, stderr=pipe, env=self._env())
        except FileNotFoundError as err:
            raise _no_ssh() from err
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        _streaming.add(process)
        said: list[bytes] = []
        stderr_pipe = process.stderr

        def read_stderr() -> None:  # beside the lines: a full stderr pipe would stop ssh
            said.append(stderr_pipe.read())

        errors = threading.Thread(target=read_stderr, daemon=True)
        errors.start()
        try:
            try:
                process.stdin.write(stdin)
                process.stdin.close()
            except BrokenPipeError:
                pass  # ssh went before it read it: its exit says why
            yield from process.stdout
            code = process.wait()
            errors.join()
        finally:
            _streaming.discard(process)
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()
        if process in _stopped:
            return  # stopped by this process's exit: nothing to say
        stderr = b"".join(said)
        logger.debug("ssh %s: %s streamed, exit %d", self.target, args[0] if args else "", code)
        if code == EXIT_SSH:
            detail = _last_line(stderr).removeprefix("ssh: ") or "the connection was lost"
            raise HostUnreachable(host=self.target, detail=detail)
        if code in (EXIT_NOT_FOUND, EXIT_NOT_EXECUTABLE):
            what = "not found on its PATH" if code == EXIT_NOT_FOUND else "found but not executable"
            raise RemoteMissing(host=self.target, binary=self.settings.remote_bin, detail=what)
        RemoteResult(self.target, code, b"", stderr).check()

    def call(
        self, args: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = None
    ) -> RemoteResult:
        """``run``, and a failed remote command raised as :class:`RemoteFailed`."""
        return self.run(args, stdin=stdin, timeout=timeout).check()

    def remote_version(self) -> str:
        """The remote dev-sessions' version (``dev-sessions --version``), e.g. ``0.1.0``.

        :class:`RemoteIncompatible` when it answers something that is not a version."""
        result = self.run(["--version"], timeout=self.settings.ssh_connect_timeout + 30)
        answer = result.text.strip()
        match = _VERSION.fullmatch(answer) if result.ok else None
        if match is None:
            found = (answer.splitlines() or [result.error_line()])[0][:80]
            raise RemoteIncompatible(host=self.target, found=found, wanted=_wanted())
        return answer.split(" ", 1)[1]

    def check_version(self) -> str:
        """The remote's version if this dev-sessions can drive it, else :class:`RemoteIncompatible`."""
        version = self.remote_version()
        if not compatible(version):
            raise RemoteIncompatible(host=self.target, found=version, wanted=_wanted())
        return version

    def master_pid(self) -> int | None:
        """The pid of this host's shared connection (its ControlMaster), or None when none runs."""
        control = self.control_path()
        if control is None:
            return None
        proc = self.control("check")
        match = re.search(r"pid=(\d+)", proc.stderr.decode("utf-8", "replace"))
        return int(match.group(1)) if proc.returncode == 0 and match else None

    def disconnect(self) -> bool:
        """Close this host's shared connection; False when none was open."""
        if self.control_path() is None:
            return False
        return self.control("exit").returncode == 0

    def control(self, command: str, *args: str) -> subprocess.CompletedProcess[bytes]:
        """``ssh -O COMMAND ARGS... TARGET``: a request to this host's shared connection (``check``,
        ``exit``, ``forward -L ...``, ``cancel -L ...``)."""
        argv = ["ssh", *self.options(), "-O", command, *args, self.target]
        try:
            return subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, env=self._env(), timeout=10, check=False
            )
        except FileNotFoundError as err:
            raise _no_ssh() from err
        except subprocess.TimeoutExpired as err:
            raise HostUnreachable(host=self.target, detail=f"ssh -O {command} did not answer") from err

    def _prepare(self) -> None:
        if self.control_path() is not None:
            private_dir(self.settings.home)
            owned_private_dir(self.control_dir)

    def _env(self) -> dict[str, str] | None:
        return dict(self.settings.environ) if self.settings.environ else None

    def _spawn(self, argv: list[str], stdin: bytes | None, timeout: float | None) -> tuple[bytes, bytes, int]:
        feed = subprocess.PIPE if stdin is not None else subprocess.DEVNULL
        pipe = subprocess.PIPE
        try:
            process = subprocess.Popen(argv, stdin=feed, stdout=pipe, stderr=pipe, env=self._env())
        except FileNotFoundError as err:
            raise _no_ssh() from err
        with process:
            try:
                stdout, stderr = process.communicate(stdin, timeout=timeout)
            except subprocess.TimeoutExpired as err:
                # Only the pipes' reader: the master (if this ssh became one) is detached and keeps
                # no pipe of ours, so the host's other commands go on.
                process.kill()
                process.wait()
                raise HostUnreachable(host=self.target, detail=f"no answer within {timeout:g} s") from err
            except BaseException:
                process.kill()  # Ctrl-C or the like: no ssh left behind
                raise
        return stdout, stderr, process.returncode


_streaming: set[subprocess.Popen[bytes]] = set()
_stopped: set[subprocess.Popen[bytes]] = set()


def _stop_streams() -> None:
    """At exit: the ssh of each stream still read (by a thread nobody waits for) is stopped, so that
    neither it nor the command on the host lingers until the next line."""
    for process in list(_streaming):
        _stopped.add(process)
        if process.poll() is None:
            process.kill()


atexit.register(_stop_streams)


def _no_ssh() -> ToolMissing:
    return ToolMissing(tool="ssh", hint="install OpenSSH's client (Debian: apt-get install openssh-client)")


def _wanted() -> str:
    oldest = ".".join(str(part) for part in OLDEST_REMOTE)
    return f"{oldest} or newer, before {OLDEST_REMOTE[0] + 1}.0.0"


def run_many(
    settings: Settings, commands: Mapping[str, Sequence[str]], timeout: float
) -> dict[str, RemoteResult | DevSessionsError]:
    """Run a command on each host at once (``{target: args}``); every host is answered within
    ``timeout`` seconds, with its result or the error that kept it from one (an unreachable host is a
    :class:`HostUnreachable` value, not a hang and not an exception for the others)."""

    def one(target: str, args: Sequence[str]) -> RemoteResult | DevSessionsError:
        try:
            return Ssh(settings, target).run(args, timeout=timeout)
        except DevSessionsError as err:  # one host's failure is its own answer, not the whole call's
            return err

    if not commands:
        return {}
    with ThreadPoolExecutor(min(len(commands), MAX_PARALLEL), thread_name_prefix="ssh") as pool:
        futures = {target: pool.submit(one, target, args) for target, args in commands.items()}
        return {target: future.result() for target, future in futures.items()}
