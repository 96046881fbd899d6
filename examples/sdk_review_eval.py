"""Review / evaluation through the Python SDK (docs/use-cases/review-eval.md).

    uv run python examples/sdk_review_eval.py

Snapshot the workspace before reviewing, read the checklist through an interactive shell,
run the review, break the artifact on purpose, reset to the snapshot, and review again.
Snapshots and shells are in the MCP profile ``workspace-full``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from pyro_mcp import Pyro

ENVIRONMENT = os.environ.get("USE_CASE_ENVIRONMENT", "debian:12")

REVIEW_SH = (
    "#!/bin/sh\n"
    "if grep -q PASS artifact.txt; then echo review=pass > review-report.txt; "
    "echo review=pass; exit 0; fi\n"
    "echo review=fail > review-report.txt; echo review=fail; exit 1\n"
)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"[example] FAIL: {message}")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pyro-example-") as tmp:
        repo = Path(tmp, "repo")
        repo.mkdir()
        (repo / "CHECKLIST.md").write_text("# Review checklist\n- artifact says PASS\n")
        (repo / "artifact.txt").write_text("PASS\n")
        (repo / "review.sh").write_text(REVIEW_SH)
        (repo / "review.sh").chmod(0o755)

        with Pyro() as pyro:
            ws = pyro.create_workspace(
                environment=ENVIRONMENT,
                seed_path=str(repo),
                name="review",
                labels={"use_case": "review-eval"},
            )
            workspace_id = ws["workspace_id"]
            print(f"[example] created workspace {workspace_id} on {ws['engine']}")
            try:
                snap = pyro.create_snapshot(workspace_id, "pre-review")
                print(f"[example] snapshot {snap['snapshot']['snapshot_name']} saved")

                shell = pyro.open_shell(workspace_id)
                shell_id = shell["shell_id"]
                first = pyro.read_shell(workspace_id, shell_id, plain=True, wait_for_idle_ms=300)
                pyro.write_shell(workspace_id, shell_id, "cat CHECKLIST.md")
                seen = pyro.read_shell(
                    workspace_id,
                    shell_id,
                    cursor=first["next_cursor"],
                    plain=True,
                    wait_for_idle_ms=300,
                )
                print(f"[example] shell {shell_id} shows:\n{seen['output'].rstrip()}")
                expect("Review checklist" in seen["output"], "the checklist did not show")
                closed = pyro.close_shell(workspace_id, shell_id)
                expect(closed["closed"], "the shell did not close")

                review = pyro.exec_workspace(workspace_id, "sh review.sh")
                print(f"[example] review: {review['stdout'].strip()}")
                expect(review["exit_code"] == 0, "the first review should pass")

                pyro.write_workspace_file(workspace_id, "artifact.txt", "FAIL\n")
                print("[example] artifact.txt broken on purpose; resetting to pre-review")
                reset = pyro.reset_workspace(workspace_id, snapshot="pre-review")
                expect(reset["workspace_reset"]["snapshot_name"] == "pre-review", "snapshot")
                artifact = pyro.read_workspace_file(workspace_id, "artifact.txt")["content"]
                print(f"[example] artifact.txt after reset: {artifact.strip()}")
                expect(artifact == "PASS\n", "the reset did not restore the artifact")

                again = pyro.exec_workspace(workspace_id, "sh review.sh")
                expect(again["exit_code"] == 0, "the second review should pass")
                out = Path(tmp, "out", "review-report.txt")
                pyro.export_workspace(workspace_id, "review-report.txt", output_path=str(out))
                print(f"[example] exported report: {out.read_text().strip()}")
                expect(out.read_text() == "review=pass\n", "report")
            finally:
                pyro.delete_workspace(workspace_id)
                print(f"[example] deleted workspace {workspace_id}")
    print("[example] OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
