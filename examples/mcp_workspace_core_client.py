"""Drive ``pyro mcp serve --profile workspace-core`` with the official MCP client (stdio).

    uv run python examples/mcp_workspace_core_client.py

This is what a chat host does on a model's behalf: start the server, list its tools, and
call them. The story is the repro + fix loop (docs/use-cases/repro-fix-loop.md): seed a
workspace, reproduce a failing check, patch, re-check, diff, export, reset, delete.

The server is found as ``pyro`` on PATH (``uv run`` puts the checkout's on it); set
PYRO_BIN to use another. MCP's stdio client passes only a few environment variables to
the server unless told otherwise, so this script hands over its whole environment
(PYRO_ENGINE, PYRO_HOME ... reach the server that way).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

ENVIRONMENT = os.environ.get("USE_CASE_ENVIRONMENT", "debian:12")

CHECK_SH = """#!/bin/sh
read -r message < message.txt
if [ "$message" = fixed ]; then echo fixed; exit 0; fi
echo "expected 'fixed', found '$message'" >&2
exit 1
"""
FIX_PATCH = """--- a/message.txt
+++ b/message.txt
@@ -1 +1 @@
-broken
+fixed
"""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"[example] FAIL: {message}")


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call one tool; a tool error (isError) stops the example with its message."""
    result = await session.call_tool(tool, arguments)
    if result.isError:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        raise SystemExit(f"[example] FAIL: {tool} returned a tool error: {text}")
    assert result.structuredContent is not None
    return result.structuredContent


async def repro_fix_loop(session: ClientSession, repo: Path, out_dir: Path) -> None:
    ws = await call(
        session,
        "workspace_create",
        environment=ENVIRONMENT,
        seed_path=str(repo),
        name="repro-fix",
        labels={"use_case": "repro-fix-loop"},
    )
    workspace_id = ws["workspace_id"]
    print(f"[example] workspace_create -> {workspace_id} ({ws['engine']})")
    try:
        read = await call(
            session, "workspace_file_read", workspace_id=workspace_id, path="message.txt"
        )
        print(f"[example] workspace_file_read message.txt -> {read['content'].strip()!r}")
        expect(read["content"] == "broken\n", "message.txt should start broken")

        failing = await call(
            session, "workspace_exec", workspace_id=workspace_id, command="sh check.sh"
        )
        print(f"[example] workspace_exec sh check.sh -> exit_code={failing['exit_code']}")
        expect(failing["exit_code"] == 1, "check.sh should fail before the fix")

        patched = await call(
            session, "workspace_patch_apply", workspace_id=workspace_id, patch=FIX_PATCH
        )
        print(f"[example] workspace_patch_apply -> changed={patched['changed']}")
        expect(patched["changed"], "the patch should change message.txt")

        fixed = await call(
            session, "workspace_exec", workspace_id=workspace_id, command="sh check.sh"
        )
        print(f"[example] workspace_exec sh check.sh -> exit_code={fixed['exit_code']}")
        expect(fixed["exit_code"] == 0 and fixed["stdout"] == "fixed\n", "check after fix")

        diff = await call(session, "workspace_diff", workspace_id=workspace_id)
        print(f"[example] workspace_diff -> changed={diff['changed']} {diff['summary']}")
        expect(diff["changed"], "the diff should show the fix")

        target = out_dir / "message.txt"
        await call(
            session,
            "workspace_export",
            workspace_id=workspace_id,
            path="message.txt",
            output_path=str(target),
        )
        print(f"[example] workspace_export message.txt -> {target.read_text().strip()!r}")
        expect(target.read_text() == "fixed\n", "the exported file should be fixed")

        reset = await call(session, "workspace_reset", workspace_id=workspace_id)
        clean = await call(session, "workspace_diff", workspace_id=workspace_id)
        print(
            f"[example] workspace_reset -> reset_count={reset['reset_count']}; "
            f"workspace_diff -> changed={clean['changed']}"
        )
        expect(reset["reset_count"] == 1 and not clean["changed"], "reset")
    finally:
        await call(session, "workspace_delete", workspace_id=workspace_id)
        print(f"[example] workspace_delete {workspace_id}")


async def main() -> int:
    pyro = os.environ.get("PYRO_BIN") or shutil.which("pyro")
    if pyro is None:
        print("[example] pyro is not on PATH (run this with `uv run`)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="pyro-example-") as tmp:
        # The model may seed from and export to the operator's --host-root only.
        server = StdioServerParameters(
            command=pyro,
            args=["mcp", "serve", "--profile", "workspace-core", "--host-root", tmp],
            env=dict(os.environ),
        )
        repo = Path(tmp, "repo")
        repo.mkdir()
        (repo / "message.txt").write_text("broken\n")
        (repo / "check.sh").write_text(CHECK_SH)
        (repo / "check.sh").chmod(0o755)
        (repo / "fix.patch").write_text(FIX_PATCH)

        async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
            init = await session.initialize()
            tools = sorted(t.name for t in (await session.list_tools()).tools)
            print(
                f"[example] connected to {init.serverInfo.name} {init.serverInfo.version}: "
                f"{len(tools)} tools"
            )
            print(f"[example] tools: {', '.join(tools)}")
            expect(len(tools) == 17 and "workspace_patch_apply" in tools, "workspace-core")
            await repro_fix_loop(session, repo, Path(tmp, "out"))
    print("[example] OK")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
