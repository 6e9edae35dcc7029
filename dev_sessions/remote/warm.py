"""The warm path to a host: its call server (:mod:`dev_sessions.remote.serve`), through the ssh connection.

A call over plain ssh (``ssh HOST dev-sessions call``) starts Python on the host every time; this
path does not. The host's ControlMaster forwards a Unix socket here,
``$DEV_SESSIONS_HOME/ssh/wc-<hash>`` (made by ssh, 0600, in our 0700 directory; the hash names the
target, ``DEV_SESSIONS_REMOTE_BIN`` and ``DEV_SESSIONS_SSH_CONFIG``), to the server's socket on the
host (``ssh -O forward -L LOCAL:REMOTE``, OpenSSH's Unix-socket forwarding).

What it owns:

* ``call``: one call through that socket. Nothing is sent before the server has said hello, so a path
  that is not there (no socket, a dead master, a server gone, forwarding refused by the host's sshd)
  is told apart from a call that failed, and the caller makes the call over plain ssh instead. Once
  the request is sent, the call is never made again: a connection lost then is
  :class:`HostUnreachable`, as it is over ssh. An answer ``retry`` (the host's code changed; the call
  was not run) also sends it over plain ssh.
* ``stream``: a streamed call (``follow``) through that socket, its answer lines as they come, when
  the host's server says it streams (an older one is left to plain ssh). As with ``call``, nothing is
  sent before the hello, and a connection lost after it is :class:`HostUnreachable`.
* ``arrange``: after a call over plain ssh, make the path for the next ones: ``dev-sessions call
  --serve`` on the host (starts its server if none runs this code, says where it listens), and the
  forward on the master. A host where that does not work (an older dev-sessions, forwarding refused)
  is left alone for ``RETRY_AFTER`` seconds (a ``wc-<hash>.off`` file says why), so that commands
  there cost one ssh call each, as before, and not two.

What it must not do: make a call twice, put anything in an argument or a log but paths, or import
anything heavier than the standard library.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import stat
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dev_sessions.errors import DevSessionsError, HostUnreachable
from dev_sessions.peers import peer_uid
from dev_sessions.remote.wire import greet, read_line

if TYPE_CHECKING:
    from dev_sessions.remote.ssh import Ssh

log = logging.getLogger(__name__)

RETRY_AFTER = 600.0
"""Seconds a host whose warm path could not be made is left to plain ssh before the next try."""

# ssh reads -L's value as LOCAL:REMOTE: neither path may hold a colon (nor anything odd).
_FORWARDABLE = re.compile(r"/[\w./+@,=~-]+")
_SUN_PATH_MAX = 107


class WarmPath:
    """The warm path to one host (``ssh``'s target, binary and config)."""

    def __init__(self, ssh: Ssh) -> None:
        self.ssh = ssh
        settings = ssh.settings
        key = "\0".join([ssh.target, settings.remote_bin, str(settings.ssh_config or "")])
        name = "wc-" + hashlib.sha256(key.encode()).hexdigest()[:20]
        self.local = ssh.control_dir / name
        self.off = ssh.control_dir / f"{name}.off"
        usable = (
            ssh.control_path() is not None
            and settings.ssh_persist > 0
            and _FORWARDABLE.fullmatch(str(self.local)) is not None
            and len(os.fsencode(self.local)) <= _SUN_PATH_MAX
        )
        self.usable = usable
        self._greeting: dict[str, Any] | None = None

    # -- a call -----------------------------------------------------------------------------------------

    def call(self, request: bytes, timeout: float | None) -> dict[str, Any] | None:
        """The host's answer to ``request`` through its server, or None when the call was not made
        (no warm path, or one that did not answer before anything was sent: make it over ssh)."""
        if not self.usable:
            return None
        started = time.monotonic()
        greeting = (
            self.ssh.settings.ssh_connect_timeout
            if timeout is None
            else min(timeout, self.ssh.settings.ssh_connect_timeout)
        )
        sock = self._open(greeting)
        if sock is None:
            return None
        with contextlib.closing(sock):
            left = None if timeout is None else max(0.001, timeout - (time.monotonic() - started))
            sock.settimeout(left)
            try:
                sock.sendall(request + b"\n")
                line = read_line(sock)
            except TimeoutError:
                raise HostUnreachable(
                    host=self.ssh.target, detail=f"no answer within {timeout:g} s"
                ) from None
            except OSError as err:
                raise HostUnreachable(
                    host=self.ssh.target, detail=f"the connection was lost during the call ({err.strerror})"
                ) from None
        if not line.endswith(b"\n"):
            raise HostUnreachable(host=self.ssh.target, detail="the connection was lost during the call")
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and "retry" in answer:
            log.debug("warm path to %s: retry over ssh (%s)", self.ssh.target, answer.get("retry"))
            return None
        return answer if isinstance(answer, dict) else {}

    def stream(self, request: bytes) -> Generator[dict[str, Any], None, None] | None:
        """The answer lines of a streamed call through the host's server, each as it comes (the first
        may be ``retry``: the call was not run); None when the call was not made (no warm path, or a
        server that does not stream)."""
        if not self.usable:
            return None
        sock = self._open(self.ssh.settings.ssh_connect_timeout)
        if sock is None:
            return None
        if not (self._greeting or {}).get("streams"):
            sock.close()
            return None
        return self._lines(sock, request)

    def _lines(self, sock: socket.socket, request: bytes) -> Generator[dict[str, Any], None, None]:
        with contextlib.closing(sock):
            sock.settimeout(None)  # a follow may be quiet for hours; ssh's keep-alives watch the link
            try:
                sock.sendall(request + b"\n")
                with sock.makefile("rb") as lines:
                    for line in lines:
                        if not line.endswith(b"\n"):
                            break  # cut short: the connection was lost
                        try:
                            answer = json.loads(line)
                        except ValueError:
                            answer = {}
                        yield answer if isinstance(answer, dict) else {}
            except OSError as err:
                raise HostUnreachable(
                    host=self.ssh.target, detail=f"the connection was lost during the call ({err.strerror})"
                ) from None

    def _open(self, timeout: float) -> socket.socket | None:
        """A connection the host's server has greeted, or None."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(self.local))
            uid = peer_uid(sock)
            if uid is not None and uid != os.getuid():
                log.warning("%s is answered by uid %d, not by our ssh; not used", self.local, uid)
                sock.close()
                return None
        except OSError:
            sock.close()
            return None
        self._greeting = greet(sock)
        if self._greeting is None:
            sock.close()
            return None
        return sock

    def hello(self) -> dict[str, Any] | None:
        """What the host's server says on a new connection (its pid, its code), or None when the warm
        path does not answer."""
        sock = self._open(self.ssh.settings.ssh_connect_timeout) if self.usable else None
        if sock is None:
            return None
        with contextlib.closing(sock):
            return self._greeting

    def greeted(self) -> bool:
        return self.hello() is not None

    # -- making it ------------------------------------------------------------------------------------

    def arrange(self) -> None:
        """Make the warm path for the next calls, if it can be made; never raises (the call this
        follows has its answer already)."""
        if not self.usable or self._resting():
            return
        from dev_sessions.lock import FileLock

        try:
            with FileLock(self.ssh.control_dir / f"{self.local.name}.lock", timeout=60):
                if not self._resting() and not self.greeted():
                    self._arrange()
        except DevSessionsError as err:
            log.debug("warm path to %s not made: %s", self.ssh.target, err)

    def _arrange(self) -> None:
        started = time.monotonic()
        limit = self.ssh.settings.ssh_connect_timeout + 30
        result = self.ssh.run(["call", "--serve"], timeout=limit)
        try:
            info = json.loads(result.stdout) if result.ok else None
        except ValueError:
            info = None
        remote = info.get("socket") if isinstance(info, dict) else None
        if not isinstance(remote, str):
            self._rest(f"`call --serve` answered: {result.error_line() if not result.ok else 'no socket'}")
            return
        if _FORWARDABLE.fullmatch(remote) is None:
            self._rest("the host's socket path cannot be forwarded (a colon or an odd character in it)")
            return
        if self.greeted():  # the forward was there; only the server was missing
            return
        self._clear_local()
        spec = f"{self.local}:{remote}"
        forwarded = self.ssh.control("forward", "-L", spec)
        if forwarded.returncode != 0 or not self.greeted():
            why = forwarded.stderr.decode("utf-8", "replace").strip()[:200] or "nothing answers through it"
            self._rest(
                f"the forward to {remote} did not work: {why} (does the host's sshd allow forwarding?)"
            )
            self.ssh.control("cancel", "-L", spec)
            self._clear_local()
            return
        self.off.unlink(missing_ok=True)
        log.debug("warm path to %s made in %.0f ms", self.ssh.target, (time.monotonic() - started) * 1000)

    def _clear_local(self) -> None:
        """Remove what is at the local path: a socket of ours that nothing answers on (ssh does not
        bind over one). Anything else there is left, and the forward will fail."""
        with contextlib.suppress(FileNotFoundError):
            info = os.lstat(self.local)
            if stat.S_ISSOCK(info.st_mode) and info.st_uid == os.getuid():
                self.local.unlink()

    def _resting(self) -> bool:
        with contextlib.suppress(FileNotFoundError):
            return time.time() - os.lstat(self.off).st_mtime < RETRY_AFTER
        return False

    def _rest(self, why: str) -> None:
        from dev_sessions.files import write_atomic

        log.info("warm path to %s not made: %s; plain ssh for %.0f s", self.ssh.target, why, RETRY_AFTER)
        with contextlib.suppress(DevSessionsError):
            write_atomic(self.off, (why + "\n").encode())


def local_socket(ssh: Ssh) -> Path:
    return WarmPath(ssh).local
