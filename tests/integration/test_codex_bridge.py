"""The Codex bridge refuses a peer that runs as another user: a real process of another uid connects.

The bridge runs in-process against the scripted app-server (``tests/fakes/app_server.py``); the peer
is a child process that drops to uid 65534, which needs root. The socket's modes are opened up first,
so that what refuses the peer is the bridge's own check, not the file mode.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from dev_sessions.codex.bridge import Bridge
from dev_sessions.config import Settings
from tests.conftest import SLOW, need
from tests.fakes.app_server import FakeAppServer

PEER = textwrap.dedent(
    """
    import os, socket, sys
    os.setgid(65534)
    os.setuid(65534)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(sys.argv[1])
    sock.settimeout(20)
    print(repr(sock.recv(100)))
    """
)


async def test_a_peer_of_another_user_is_refused_without_an_answer(caplog: pytest.LogCaptureFixture) -> None:
    if os.geteuid() != 0:
        need("a client of another uid needs root to start")
    caplog.set_level(logging.INFO, logger="dev_sessions")
    app = FakeAppServer()
    directory = Path(tempfile.mkdtemp(prefix="ds-peer-", dir="/tmp"))
    path = directory / "bridge.sock"
    bridge = Bridge(Settings.from_env(), os.environ, app=app, connect=app.connect)
    served = asyncio.ensure_future(bridge.serve(path))
    try:
        deadline = time.monotonic() + 10 * SLOW
        while not path.exists():
            assert time.monotonic() < deadline and not served.done(), "the bridge did not listen"
            await asyncio.sleep(0.01)
        directory.chmod(0o711)
        path.chmod(0o666)
        peer = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            PEER,
            str(path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(peer.communicate(), 30 * SLOW)
        assert peer.returncode == 0, err.decode()
        assert out == b"b''\n", "closed at once, before the peer said anything"
        assert "refused a connection from uid 65534" in caplog.text
        # Its owner is still served.
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b'{"op": "ping"}\n')
        answer = json.loads(await asyncio.wait_for(reader.readline(), 10 * SLOW))
        writer.close()
        assert answer["ok"]["pid"] == os.getpid()
        assert app.calls == []
    finally:
        bridge.stopping.set()
        await asyncio.wait_for(served, 10 * SLOW)
        shutil.rmtree(directory, ignore_errors=True)
