"""Files in the state directory: written so that nothing is lost, opened so that no link is followed.

Every file dev-sessions keeps (the session store, locks, tokens, the app-server's state, logs) goes
through this module. Its rules:

* No symbolic link is followed inside the state directory: files are opened with ``O_NOFOLLOW``, and a
  link where one of our files should be is refused with :class:`UnsafePath` naming it (a link there
  would let whoever planted it make us truncate or overwrite its target).
* A file is replaced atomically (:func:`write_atomic`): a new private file in the same directory,
  written in full (a short write is continued, an error raised), fsynced, renamed over the old one,
  and the directory fsynced. On any failure the temp file is removed and the old file is untouched;
  the caller gets :class:`WriteFailed`, one line naming the path and the system's reason.
* A file made once and then only read, such as a token (:func:`create_once`), is written in full under
  a temp name and linked into place, so that two first starts racing agree on one complete content,
  and a reader never sees a half-written or empty one.
* Directories we make are 0700 (:func:`private_dir`); files are 0600 from the start.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from dev_sessions.errors import UnsafePath, WriteFailed

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def open_private(path: Path, flags: int, mode: int = 0o600) -> int:
    """``os.open`` that never follows a symbolic link at ``path`` (refused with :class:`UnsafePath`)."""
    try:
        return os.open(path, flags | _NOFOLLOW | _CLOEXEC, mode)
    except OSError as err:
        if err.errno == errno.ELOOP or (err.errno == errno.EEXIST and path.is_symlink()):
            raise UnsafePath(path=str(path), detail="is a symbolic link") from None
        raise


def check_not_link(path: Path) -> None:
    """Refuse a symbolic link at ``path`` (for files opened by code we do not control, such as SQLite)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise UnsafePath(path=str(path), detail="is a symbolic link")


def read_bytes(path: Path) -> bytes | None:
    """The content of a file of ours, or None when it does not exist."""
    try:
        fd = open_private(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def read_text(path: Path) -> str | None:
    data = read_bytes(path)
    return None if data is None else data.decode("utf-8", "replace")


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` (``os.write`` may write fewer than asked; a full disk raises)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, "the system wrote nothing")
        view = view[written:]


def _temp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")


def _write_temp(path: Path, data: bytes, mode: int) -> Path:
    tmp = _temp_for(path)
    fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | _CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` by ``data`` all at once, or leave it as it was and raise :class:`WriteFailed`."""
    private_dir(path.parent)
    check_not_link(path)
    try:
        tmp = _write_temp(path, data, mode)
    except OSError as err:
        raise WriteFailed(path=str(path), reason=err.strerror or str(err)) from err
    try:
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise WriteFailed(path=str(path), reason=err.strerror or str(err)) from err
        raise
    with contextlib.suppress(OSError):  # the data is in place; a directory fsync is best effort
        fsync_dir(path.parent)


def create_once(path: Path, data: bytes) -> bytes:
    """Put ``data`` at ``path`` unless a file is already there; the content that is there afterwards.

    The new file is complete before it appears under its name (written under a temp name, then
    hard-linked), so concurrent first calls agree on one content and none sees a partial one.
    """
    existing = read_bytes(path)
    if existing is not None:
        return existing
    private_dir(path.parent)
    try:
        tmp = _write_temp(path, data, 0o600)
    except OSError as err:
        raise WriteFailed(path=str(path), reason=err.strerror or str(err)) from err
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process made it first: theirs is complete, use it
    except OSError as err:
        raise WriteFailed(path=str(path), reason=err.strerror or str(err)) from err
    finally:
        tmp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        fsync_dir(path.parent)
    existing = read_bytes(path)
    if existing is None:
        raise WriteFailed(path=str(path), reason="it vanished right after it was made")
    return existing


def open_log(path: Path, *, truncate: bool = False) -> int:
    """A log file of ours opened for appending (or rewriting), never through a link."""
    private_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else os.O_APPEND)
    return open_private(path, flags)


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents as 0700 directories (only their owner may enter).

    ``Path.mkdir(mode=...)`` applies the mode to the last component only, and the umask still applies.
    An existing ``path`` must be a directory.
    """
    missing = []
    current = path
    while not current.exists():
        if current.is_symlink():
            raise UnsafePath(path=str(current), detail="is a dangling symbolic link")
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue  # another process made it first
        directory.chmod(0o700)
    if not missing and not path.is_dir():
        raise UnsafePath(path=str(path), detail="is not a directory")
    return path


def owned_private_dir(path: Path) -> Path:
    """A directory only we can use, made if missing; refused if it is a link, another user's, or open.

    For directories outside the state directory, in shared places such as ``/tmp``, where someone else
    could have made it first to squat on the name.
    """
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath(path=str(path), detail="is a symbolic link")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePath(path=str(path), detail="is not a directory")
    if info.st_uid != os.getuid():
        raise UnsafePath(path=str(path), detail=f"belongs to uid {info.st_uid}, not to you")
    if info.st_mode & 0o077:
        raise UnsafePath(
            path=str(path), detail=f"is open to others (mode {stat.S_IMODE(info.st_mode):o}; want 700)"
        )
    return path
