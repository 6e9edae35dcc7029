"""The MCP server: what issue 13 names.

    python bench/mcp_server.py [--runs N]

* from starting ``dev-sessions mcp`` to the answer to ``initialize`` (a new process each time: what an
  agent pays when it starts), and what of it is the SDK's own import;
* a tool call's overhead over the library call it makes: the same call (``status`` of a live Claude
  session, ``read_messages`` of ten messages) through the SDK's client over stdio, against the library
  called in this process. Target: at most 20 ms more (median).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import anyio
from common import Stats, ms, table, timed, world
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from dev_sessions.config import Settings
from dev_sessions.messaging.messenger import Messenger
from dev_sessions.sessions import SessionManager


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    with world() as w:
        python = str(w.tool.parent / "python")
        params = StdioServerParameters(command=str(w.tool), args=["mcp"], env=w.env, cwd=w.workdir)
        sid = w.create()
        settings = Settings.from_env(w.env)
        messenger = Messenger(settings)
        messenger.register("reader")
        for n in range(10):
            messenger.send("reader", f"message {n}", sender="user")

        async def start_only() -> None:
            async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
                await session.initialize()

        started = timed(lambda: anyio.run(start_only), runs)
        importing = "import mcp.server.lowlevel, mcp.server.stdio"
        sdk = timed(lambda: subprocess.run([python, "-c", importing], check=True), runs)
        bare = timed(lambda: subprocess.run([python, "-c", "pass"], check=True), runs)

        samples: dict[str, list[float]] = {"status": [], "read_messages": []}

        async def calls() -> None:
            async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                for _ in range(3):  # warm: the first call of each tool imports what it needs
                    await session.call_tool("status", {"session_id": sid})
                    await session.call_tool("read_messages", {"reader": "reader"})
                pairs = (("status", {"session_id": sid}), ("read_messages", {"reader": "reader"}))
                for _ in range(runs):
                    for name, args in pairs:
                        begun = time.perf_counter()
                        answer = await session.call_tool(name, args)
                        samples[name].append(time.perf_counter() - begun)
                        assert not answer.is_error, answer

        anyio.run(calls)
        manager = SessionManager(settings)
        library = {
            "status": timed(lambda: manager.status(sid), runs),
            "read_messages": timed(lambda: Messenger(settings).read("reader"), runs),
        }
        rows = [
            ["start to initialize answered (new process)", ms(started.median), ms(started.p95), "report"],
            ["  of which: import the SDK (python -c)", ms(sdk.median - bare.median), ms(sdk.p95), ""],
            ["  of which: python itself", ms(bare.median), ms(bare.p95), ""],
        ]
        for name, lib in library.items():
            tool = Stats(samples[name])
            rows.append([f"{name}: library call in process", ms(lib.median), ms(lib.p95), ""])
            rows.append([f"{name}: tool call over stdio", ms(tool.median), ms(tool.p95), ""])
            rows.append([f"{name}: overhead", ms(tool.median - lib.median), "", "<= 20 ms"])
        print(table(["what", "median", "p95", "target"], rows))
        w.run("kill", sid)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
