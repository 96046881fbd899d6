"""Drive ``pyro mcp serve --profile vm-run`` with the official MCP client (stdio).

    uv run python examples/mcp_vm_run_client.py

The narrowest profile: one tool, ``vm_run``, which creates a sandbox, runs one command and
deletes the sandbox. The server is ``pyro`` on PATH, or PYRO_BIN. The whole environment
is handed to the server (MCP's stdio client passes only a few variables by default).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

ENVIRONMENT = os.environ.get("USE_CASE_ENVIRONMENT", "debian:12")


async def main() -> int:
    pyro = os.environ.get("PYRO_BIN") or shutil.which("pyro")
    if pyro is None:
        print("[example] pyro is not on PATH (run this with `uv run`)", file=sys.stderr)
        return 1
    server = StdioServerParameters(
        command=pyro, args=["mcp", "serve", "--profile", "vm-run"], env=dict(os.environ)
    )
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        tools = (await session.list_tools()).tools
        print(f"[example] connected to {init.serverInfo.name}: tools {[t.name for t in tools]}")
        if [t.name for t in tools] != ["vm_run"]:
            print("[example] FAIL: the vm-run profile should expose vm_run only", file=sys.stderr)
            return 1

        result = await session.call_tool(
            "vm_run", {"environment": ENVIRONMENT, "command": "git --version"}
        )
        payload = result.structuredContent or {}
        print(
            f"[example] vm_run git --version -> isError={result.isError} "
            f"exit_code={payload.get('exit_code')} stdout={payload.get('stdout', '').strip()!r}"
        )
        if result.isError or payload.get("exit_code") != 0:
            return 1

        bad = await session.call_tool("vm_run", {"environment": "nosuch:1", "command": "true"})
        message = " ".join(getattr(c, "text", "") for c in bad.content)
        print(f"[example] vm_run on an unknown environment -> isError={bad.isError}: {message}")
        if not bad.isError:
            return 1
    print("[example] OK")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
