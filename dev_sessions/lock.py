"""A cross-process lock on a file, for the session store and other shared state.

It is an ``flock`` on a lock file that is never deleted. That gives the three promises the store needs
without any clean-up logic that could go wrong:

* it holds across processes (and across threads, since each holder opens its own descriptor);
* only its owner can release it: the kernel ties the lock to the owner's open file, and the owner's
  token written in the file lets the owner check, before clearing it, that the file still names it;
* a lock left by a process that died is free at once, because the kernel drops it with the process.

The file's content (pid, token, time) is only for telling a waiting user who holds the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from types import TracebackType

from dev_sessions.errors import DevSessionsError, LockTimeout
from dev_sessions.files import open_private, private_dir, read_text


class FileLock:
    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self.token = os.urandom(8).hex()
        self._fd: int | None = None

    def acquire(self) -> None:
        private_dir(self.path.parent)
        fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
        deadline = time.monotonic() + self.timeout
        pause = 0.001
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(
                            path=str(self.path), holder=self.holder(), waited=self.timeout
                        ) from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.02)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        owner = {"pid": os.getpid(), "host": os.uname().nodename, "token": self.token, "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._owner_token(fd) == self.token:
                os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def holder(self) -> str:
        """Who the lock file says holds the lock, for error messages."""
        try:
            info = json.loads(read_text(self.path) or "{}")
        except (OSError, ValueError, DevSessionsError):
            return "an unknown process"
        if not info:
            return "an unknown process"
        return f"pid {info.get('pid')} on {info.get('host')}"

    @staticmethod
    def _owner_token(fd: int) -> str | None:
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except ValueError:
            return None
        token = info.get("token") if isinstance(info, dict) else None
        return token if isinstance(token, str) else None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
