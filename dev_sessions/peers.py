"""Who is at the other end of a Unix socket: the uid of the peer process, from the kernel.

The bridge refuses clients that run as another user, and clients refuse a bridge that does: a socket in
a shared directory could otherwise be answered by whoever made it first.
"""

from __future__ import annotations

import socket
import struct
import sys


def peer_uid(sock: socket.socket) -> int | None:
    """The peer's uid (Linux ``SO_PEERCRED``, macOS ``LOCAL_PEERCRED``); None where neither exists."""
    creds = getattr(socket, "SO_PEERCRED", None)
    if creds is not None:
        raw = sock.getsockopt(socket.SOL_SOCKET, creds, struct.calcsize("3i"))
        return int(struct.unpack("3i", raw)[1])
    if sys.platform == "darwin":
        # struct xucred: u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16]
        sol_local, local_peercred = 0, 0x001
        raw = sock.getsockopt(sol_local, local_peercred, struct.calcsize("IIh16I"))
        return int(struct.unpack_from("II", raw)[1])
    return None


def peer_pid(sock: socket.socket) -> int | None:
    """The peer's pid, as this process's pid namespace numbers it (Linux ``SO_PEERCRED``); None elsewhere."""
    creds = getattr(socket, "SO_PEERCRED", None)
    if creds is None:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, creds, struct.calcsize("3i"))
    return int(struct.unpack("3i", raw)[0])
