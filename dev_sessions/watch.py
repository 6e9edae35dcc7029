"""Waiting without polling: file-system events for directories, process exits for pids, and any
other :class:`Source` of wake-ups (a PostgreSQL server's LISTEN connection).

On Linux, directories are watched with inotify (through ctypes; no dependency) and processes with
``pidfd_open``, and ``Watcher.wait`` sleeps in one ``select`` on all of them, so a waiter costs no CPU
and wakes within milliseconds. Elsewhere it falls back to a short poll (``POLL_INTERVAL``). An event
only means "look again": callers re-read what they watch after every wake-up, so a missed or merged
event can delay nothing beyond the next one or the caller's own deadline.

``Tail`` reads a growing file incrementally: only the new bytes, complete lines only, the partial last
line kept for the next read.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Protocol, TypeVar, cast

from dev_sessions import quiet_logs

quiet_logs()  # see dev_sessions.quiet_logs
log = logging.getLogger(__name__)

POLL_INTERVAL = 0.05
# What counts as "something changed" in a watched directory: a file in it was written, closed after
# writing, created, moved in or deleted.
_IN_MODIFY, _IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x2, 0x8, 0x80, 0x100, 0x200
_MASK = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, 0o2000000


class _Inotify:
    def __init__(self) -> None:
        import ctypes

        # The interpreter already links libc; find_library would spawn ldconfig to look for it.
        libc = ctypes.CDLL(None, use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd: int = fd

    def add(self, path: Path) -> bool:
        return bool(self._add(self.fd, os.fsencode(path), _MASK) >= 0)

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.fd, 65536):
                pass

    def close(self) -> None:
        os.close(self.fd)


class Source(Protocol):
    """Something else that wakes a :class:`Watcher`: a descriptor that becomes readable when it has news."""

    def fileno(self) -> int | None:
        """The descriptor to sleep on; None while there is none (a connection being made again)."""

    def longest_sleep(self, timeout: float) -> float:
        """How long the watcher may sleep before :meth:`drain` must run (0: news is already waiting)."""

    def drain(self) -> None:
        """Take in what woke the watcher, without blocking (and try again what failed, when due)."""

    def close(self) -> None: ...


class Watcher:
    """Sleeps until a watched directory changes, a watched process exits, a source has news, or time
    runs out."""

    def __init__(self) -> None:
        self._inotify: _Inotify | None = None
        if sys.platform.startswith("linux"):
            try:
                self._inotify = _Inotify()
            except (OSError, AttributeError) as err:
                log.debug("inotify unavailable, polling instead: %s", err)
        self._dirs: set[Path] = set()
        self._pidfds: dict[int, int] = {}
        self._polled_pids: set[int] = set()
        self._sources: list[Source] = []

    def watch_source(self, source: Source) -> None:
        """Wake on ``source`` too; it is closed with the watcher."""
        self._sources.append(source)

    def watch_dir(self, path: Path) -> bool:
        """Watch a directory (or, while it does not exist, its nearest existing ancestor).

        Returns whether the directory itself is watched; callers call again after a wake-up until it is.
        """
        target = path
        while not target.is_dir() and target != target.parent:
            target = target.parent
        if target not in self._dirs and (self._inotify is None or self._inotify.add(target)):
            self._dirs.add(target)
        return target == path

    def watch_pid(self, pid: int) -> None:
        if pid <= 0 or pid in self._pidfds or pid in self._polled_pids:
            return
        opener = getattr(os, "pidfd_open", None)
        if opener is not None:
            try:
                self._pidfds[pid] = opener(pid)
                return
            except OSError as err:
                if err.errno == errno.ESRCH:
                    self._polled_pids.add(pid)  # already gone: the next check reports it
                    return
        self._polled_pids.add(pid)

    def exited(self, pid: int) -> bool:
        """Whether a watched process has ended (also true for a pid that never existed)."""
        fd = self._pidfds.get(pid)
        if fd is not None:
            ready, _, _ = select.select([fd], [], [], 0)
            return bool(ready)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def fds(self) -> list[int]:
        """Descriptors that become readable when something watched happens (for an event loop)."""
        fds = list(self._pidfds.values())
        if self._inotify is not None:
            fds.append(self._inotify.fd)
        fds.extend(fd for source in self._sources if (fd := source.fileno()) is not None)
        return fds

    def longest_sleep(self, timeout: float) -> float:
        """How long one may sleep on ``fds()`` alone before looking again by hand."""
        for source in self._sources:
            timeout = source.longest_sleep(timeout)
        if self._inotify is None:
            return min(timeout, POLL_INTERVAL)
        return min(timeout, 1.0) if self._polled_pids else timeout

    def drain(self) -> None:
        if self._inotify is not None:
            self._inotify.drain()
        for source in self._sources:
            source.drain()

    def wait(self, timeout: float) -> None:
        """Sleep until something watched happens or ``timeout`` seconds pass."""
        timeout = self.longest_sleep(timeout)
        if timeout <= 0:
            self.drain()
            return
        select.select(self.fds(), [], [], timeout)
        self.drain()

    async def wait_async(self, timeout: float) -> None:
        """``wait`` for an asyncio loop: the loop watches the descriptors, no thread is used."""
        import asyncio

        timeout = self.longest_sleep(timeout)
        if timeout <= 0:
            self.drain()
            return
        loop = asyncio.get_running_loop()
        woke = asyncio.Event()
        fds = self.fds()
        for fd in fds:
            loop.add_reader(fd, woke.set)
        try:
            await asyncio.wait_for(woke.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            for fd in fds:
                loop.remove_reader(fd)
        self.drain()

    def close(self) -> None:
        for source in self._sources:
            source.close()
        self._sources.clear()
        for fd in self._pidfds.values():
            os.close(fd)
        self._pidfds.clear()
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


T = TypeVar("T")
Steps = Generator[tuple[Watcher, float], None, T]
"""Waiting written once for both worlds: rounds of looking, each yielding how long to sleep on the
watcher; the driver sleeps blocking (``run_steps``) or on an event loop (``run_steps_async``)."""


def run_steps(steps: Steps[T]) -> T:
    try:
        while True:
            watcher, pause = next(steps)
            watcher.wait(pause)
    except StopIteration as done:
        return cast(T, done.value)
    finally:
        steps.close()


async def run_steps_async(steps: Steps[T]) -> T:
    try:
        while True:
            watcher, pause = next(steps)
            await watcher.wait_async(pause)
    except StopIteration as done:
        return cast(T, done.value)
    finally:
        steps.close()


class Tail:
    """New complete lines of a file that only grows, from a byte offset on.

    A file that shrank below the offset is read again from the start (``rewound`` says so): what was
    read before cannot be trusted to line up. ``complete`` is where the last complete line read ends,
    the offset to start from next time (another process may keep it, with ``before`` to recognise the
    file by)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self.rewound = False
        self._partial = b""
        self._fd: int | None = None

    @property
    def complete(self) -> int:
        return self.offset - len(self._partial)

    def stat(self) -> os.stat_result | None:
        """The open file's status (it is opened now if it was not); None while it does not exist."""
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
        return os.fstat(self._fd)

    def before(self, offset: int, count: int) -> bytes:
        """Up to ``count`` bytes of the open file that end at ``offset``."""
        if self._fd is None or offset <= 0:
            return b""
        start = max(0, offset - count)
        return os.pread(self._fd, offset - start, start)

    def read_lines(self, upto: int | None = None) -> list[bytes]:
        """The complete lines written since the last read, up to byte ``upto`` at most (a size the
        caller saw, so that what was read is what that size describes)."""
        found = self.stat()
        if found is None:
            return []
        assert self._fd is not None
        size = found.st_size if upto is None else min(upto, found.st_size)
        if found.st_size < self.offset:
            # The file was replaced by a shorter one: nothing we read so far can be trusted to line up.
            log.debug(
                "%s shrank from %d to %d bytes; reading again from the start", self.path, self.offset, size
            )
            self.offset, self._partial, self.rewound = 0, b"", True
        chunks = []
        while self.offset < size:
            chunk = os.pread(self._fd, min(size - self.offset, 1 << 22), self.offset)
            if not chunk:
                break
            chunks.append(chunk)
            self.offset += len(chunk)
        if not chunks:
            return []
        data = self._partial + b"".join(chunks)
        lines = data.split(b"\n")
        self._partial = lines.pop()
        return lines

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def line_aligned_size(path: Path) -> int:
    """The file's size rounded down to the end of its last complete line (0 when it does not exist)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        size = os.fstat(fd).st_size
        position = size
        while position > 0:
            start = max(0, position - 65536)
            chunk = os.pread(fd, position - start, start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                return start + newline + 1
            position = start
        return 0
    finally:
        os.close(fd)
