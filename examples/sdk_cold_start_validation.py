"""Cold-start repo validation through the Python SDK (docs/use-cases/cold-start-validation.md).

    uv run python examples/sdk_cold_start_validation.py

Seed a fresh workspace with a repository, run its validation script, start its service and
wait until it is ready, probe it, read its logs, export a report, and stop the service.
Services are in the MCP profile ``workspace-full``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from pyro_mcp import Pyro

ENVIRONMENT = os.environ.get("USE_CASE_ENVIRONMENT", "debian:12")

VALIDATE_SH = """#!/bin/sh
set -e
test -f serve.sh
echo validated
"""
SERVE_SH = """#!/bin/sh
echo 'service started'
echo service=ready > service-state.txt
touch .app-ready
while true; do sleep 1; done
"""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"[example] FAIL: {message}")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pyro-example-") as tmp:
        repo = Path(tmp, "repo")
        repo.mkdir()
        for name, text in (("validate.sh", VALIDATE_SH), ("serve.sh", SERVE_SH)):
            (repo / name).write_text(text)
            (repo / name).chmod(0o755)
        (repo / "README.md").write_text("# demo app\n")

        with Pyro() as pyro:
            ws = pyro.create_workspace(
                environment=ENVIRONMENT,
                seed_path=str(repo),
                name="cold-start",
                labels={"use_case": "cold-start-validation"},
            )
            workspace_id = ws["workspace_id"]
            print(f"[example] created workspace {workspace_id} on {ws['engine']}")
            try:
                result = pyro.exec_workspace(workspace_id, "sh validate.sh")
                print(
                    f"[example] validate.sh: exit_code={result['exit_code']} "
                    f"stdout={result['stdout'].strip()!r} mode={result['execution_mode']}"
                )
                expect(result["exit_code"] == 0 and result["stdout"] == "validated\n", "validate")

                service = pyro.start_service(
                    workspace_id,
                    "app",
                    command="sh serve.sh",
                    readiness={"type": "file", "path": ".app-ready"},
                )
                print(f"[example] service app: state={service['state']}")
                expect(service["state"] == "running", "the service should be running")

                probe = pyro.exec_workspace(
                    workspace_id, "test -f .app-ready && cat service-state.txt"
                )
                print(f"[example] probe: {probe['stdout'].strip()}")
                expect(probe["stdout"] == "service=ready\n", "the service is not ready")

                logs = pyro.logs_service(workspace_id, "app")
                print(f"[example] service logs: {logs['stdout'].strip()!r}")
                expect("service started" in logs["stdout"], "the logs lack 'service started'")

                pyro.exec_workspace(workspace_id, "echo validation=pass > validation-report.txt")
                out = Path(tmp, "out", "validation-report.txt")
                pyro.export_workspace(workspace_id, "validation-report.txt", output_path=str(out))
                print(f"[example] exported report: {out.read_text().strip()}")
                expect(out.read_text() == "validation=pass\n", "report")

                stopped = pyro.stop_service(workspace_id, "app")
                print(f"[example] service app: state={stopped['state']}")
                expect(stopped["state"] == "stopped", "the service should be stopped")
            finally:
                pyro.delete_workspace(workspace_id)
                print(f"[example] deleted workspace {workspace_id}")
    print("[example] OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
