"""Parallel isolated workspaces through the Python SDK (docs/use-cases/parallel-workspaces.md).

    uv run python examples/sdk_parallel_workspaces.py

Two workspaces from the same seed, one per branch: each gets its own change, labels tell
them apart, and ``list_workspaces`` shows the most recently active first. A file read is
a pure read, so reading beta after alpha does not move beta ahead of alpha.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from pyro_mcp import Pyro

ENVIRONMENT = os.environ.get("USE_CASE_ENVIRONMENT", "debian:12")


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"[example] FAIL: {message}")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pyro-example-") as tmp:
        seed = Path(tmp, "repo")
        seed.mkdir()
        (seed / "README.md").write_text("# shared seed\n")
        (seed / "branch.txt").write_text("main\n")

        with Pyro() as pyro:
            created: list[str] = []
            try:
                for branch in ("alpha", "beta"):
                    ws = pyro.create_workspace(
                        environment=ENVIRONMENT,
                        seed_path=str(seed),
                        name=f"parallel-{branch}",
                        labels={"use_case": "parallel-workspaces", "branch": branch},
                    )
                    created.append(ws["workspace_id"])
                    print(f"[example] created parallel-{branch}: {ws['workspace_id']}")
                alpha, beta = created

                pyro.write_workspace_file(beta, "branch.txt", "beta was here\n")
                pyro.write_workspace_file(alpha, "branch.txt", "alpha was last\n")
                print("[example] wrote branch.txt in beta, then in alpha")

                updated = pyro.update_workspace(alpha, labels={"owner": "alice"})
                print(f"[example] alpha labels: {updated['labels']}")
                expect(updated["labels"].get("owner") == "alice", "owner label missing")

                a = pyro.read_workspace_file(alpha, "branch.txt")["content"]
                b = pyro.read_workspace_file(beta, "branch.txt")["content"]
                print(f"[example] alpha sees {a.strip()!r}, beta sees {b.strip()!r}")
                expect(a == "alpha was last\n" and b == "beta was here\n", "not isolated")

                listed = [
                    w for w in pyro.list_workspaces()["workspaces"] if w["workspace_id"] in created
                ]
                for w in listed:
                    print(
                        f"[example] list: {w['name']} labels={w['labels']} "
                        f"last_activity_at={w['last_activity_at']:.3f}"
                    )
                expect(
                    [w["workspace_id"] for w in listed] == [alpha, beta],
                    "alpha (the last one changed) should be listed first",
                )
            finally:
                for workspace_id in created:
                    pyro.delete_workspace(workspace_id)
                    print(f"[example] deleted workspace {workspace_id}")
    print("[example] OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
