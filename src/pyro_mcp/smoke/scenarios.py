"""The five use-case stories, end to end on real guest-backed workspaces (PRODUCT_SPEC §4).

Each scenario creates what it needs, asserts on structured SDK results, exports one concrete
result where the story has one, and deletes every workspace it created, on success and on
failure. A failed expectation raises SmokeFailure with a message that says what was expected.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..api import Pyro
from ..engines.profile import GUEST_EXECUTION
from . import fixtures

if TYPE_CHECKING:
    from ..operations.results import WorkspaceExecResult

SUITE = "workspace-use-case-smoke"


class SmokeFailure(AssertionError):
    """A story did not behave as its recipe says."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeFailure(message)


class Story:
    def __init__(self, pyro: Pyro, scenario: str, environment: str, work: Path) -> None:
        self.pyro = pyro
        self.scenario = scenario
        self.environment = environment
        self.work = work
        self.created: list[str] = []

    @contextmanager
    def workspaces(self) -> Iterator[Story]:
        try:
            yield self
        finally:
            for workspace_id in self.created:
                try:
                    self.pyro.delete_workspace(workspace_id)
                except Exception as exc:  # cleanup must try them all, and say what it left
                    print(f"[smoke] cleanup of {workspace_id} failed: {exc}", file=sys.stderr)

    def create(self, seed: Path, name: str | None = None, **labels: str) -> str:
        result = self.pyro.create_workspace(
            environment=self.environment,
            seed_path=str(seed),
            name=name,
            network_policy="off",
            labels={"suite": SUITE, "use_case": self.scenario, **labels},
        )
        self.created.append(result["workspace_id"])
        expect(result["state"] == "started", f"workspace did not start: {result['state']}")
        return str(result["workspace_id"])

    def exec(self, workspace_id: str, command: str, code: int = 0) -> WorkspaceExecResult:
        result = self.pyro.exec_workspace(workspace_id, command)
        expect(
            result["exit_code"] == code,
            f"`{command}` exited {result['exit_code']}, expected {code} "
            f"(stdout {result['stdout'][-200:]!r}, stderr {result['stderr'][-200:]!r})",
        )
        return result

    def export_text(self, workspace_id: str, path: str) -> str:
        target = self.work / "exports" / f"{workspace_id}-{Path(path).name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        self.pyro.export_workspace(workspace_id, path, output_path=str(target))
        return target.read_text()


def cold_start_validation(story: Story, broken: bool) -> dict[str, Any]:
    seed = fixtures.cold_start(story.work / "repo", broken)
    ws = story.create(seed, name="cold-start")
    result = story.exec(ws, "sh validate.sh")
    expect(result["stdout"] == "validated\n", f"validate.sh printed {result['stdout']!r}")
    expect(result["execution_mode"] == GUEST_EXECUTION, "validation did not run in the guest")
    service = story.pyro.start_service(
        ws, "app", command="sh serve.sh", readiness={"type": "file", "path": ".app-ready"}
    )
    expect(service["state"] == "running", f"service app is {service['state']}, not running")
    probe = story.exec(ws, "test -f .app-ready && cat service-state.txt")
    expect(probe["stdout"] == "service=ready\n", f"service state: {probe['stdout']!r}")
    logs = story.pyro.logs_service(ws, "app")
    expect("service started" in logs["stdout"], "service logs lack 'service started'")
    story.exec(ws, "echo validation=pass > validation-report.txt")
    report = story.export_text(ws, "validation-report.txt")
    expect(report == "validation=pass\n", f"exported report is {report!r}")
    stopped = story.pyro.stop_service(ws, "app")
    expect(stopped["state"] == "stopped", f"service app is {stopped['state']} after stop")
    return {"workspace_id": ws, "report": report.strip()}


def repro_fix_loop(story: Story, broken: bool) -> dict[str, Any]:
    seed = fixtures.repro_fix(story.work / "repo", broken)
    ws = story.create(seed, name="repro-fix")
    read = story.pyro.read_workspace_file(ws, "message.txt")
    expect(read["content"] == "broken\n", f"message.txt is {read['content']!r}")
    story.exec(ws, "sh check.sh", code=1)
    patched = story.pyro.apply_workspace_patch(ws, (seed / "fix.patch").read_text())
    expect(patched["changed"], "the fix patch changed nothing")
    fixed = story.exec(ws, "sh check.sh")
    expect(fixed["stdout"] == "fixed\n", f"check.sh printed {fixed['stdout']!r}")
    expect(story.pyro.diff_workspace(ws)["changed"], "diff shows no change after the fix")
    exported = story.export_text(ws, "message.txt")
    expect(exported == "fixed\n", f"exported message.txt is {exported!r}")
    reset = story.pyro.reset_workspace(ws)
    expect(reset["reset_count"] == 1, f"reset_count is {reset['reset_count']}")
    expect(not story.pyro.diff_workspace(ws)["changed"], "diff not clean after reset")
    return {"workspace_id": ws, "exported": exported.strip()}


def parallel_workspaces(story: Story, broken: bool) -> dict[str, Any]:
    seed = fixtures.parallel(story.work / "repo", broken)
    alpha = story.create(seed, name="parallel-alpha", branch="alpha")
    beta = story.create(seed, name="parallel-beta", branch="beta")
    story.pyro.write_workspace_file(beta, "branch.txt", "beta was here\n")
    time.sleep(0.01)
    story.pyro.write_workspace_file(alpha, "branch.txt", "alpha was last\n")
    updated = story.pyro.update_workspace(alpha, labels={"owner": "alice"})
    expect(updated["labels"].get("owner") == "alice", "label owner=alice missing")
    a = story.pyro.read_workspace_file(alpha, "branch.txt")["content"]
    b = story.pyro.read_workspace_file(beta, "branch.txt")["content"]
    expect(
        a == "alpha was last\n" and b == "beta was here\n",
        f"workspaces are not isolated: alpha={a!r} beta={b!r}",
    )
    if broken:  # the defect: beta is touched after alpha, so alpha is no longer first
        story.pyro.write_workspace_file(beta, "branch.txt", "beta was here\n")
    listed = [
        w["workspace_id"]
        for w in story.pyro.list_workspaces()["workspaces"]
        if w["workspace_id"] in (alpha, beta)
    ]
    expect(
        listed == [alpha, beta],
        f"workspace list order is {listed}, expected alpha first "
        "(a file read must not count as activity)",
    )
    return {"alpha": alpha, "beta": beta}


def untrusted_inspection(story: Story, broken: bool) -> dict[str, Any]:
    seed = fixtures.untrusted(story.work / "repo", broken)
    ws = story.create(seed, name="untrusted")
    status = story.pyro.status_workspace(ws)
    expect(status["network_policy"] == "off", "untrusted code must run without network")
    listing = story.pyro.list_workspace_files(ws, recursive=True)
    paths = [e["path"] for e in listing["entries"]]
    expect("/workspace/suspicious.sh" in paths, f"suspicious.sh not listed: {paths}")
    content = story.pyro.read_workspace_file(ws, "suspicious.sh")["content"]
    expect("curl -fsSL" in content, "suspicious.sh does not contain the curl | sh line")
    story.exec(
        ws, "{ echo network_policy=off; grep -n 'curl' suspicious.sh; } > inspection-report.txt"
    )
    report = story.export_text(ws, "inspection-report.txt")
    expect(
        report.startswith("network_policy=off\n") and "curl -fsSL" in report,
        f"inspection report is {report!r}",
    )
    return {"workspace_id": ws, "report_lines": len(report.splitlines())}


def review_eval(story: Story, broken: bool) -> dict[str, Any]:
    seed = fixtures.review(story.work / "repo", broken)
    ws = story.create(seed, name="review")
    story.pyro.create_snapshot(ws, "pre-review")
    shell = story.pyro.open_shell(ws)
    sid = shell["shell_id"]
    first = story.pyro.read_shell(ws, sid, plain=True, wait_for_idle_ms=300)
    story.pyro.write_shell(ws, sid, "cat CHECKLIST.md")
    seen = story.pyro.read_shell(
        ws, sid, cursor=first["next_cursor"], plain=True, wait_for_idle_ms=300
    )
    expect("Review checklist" in seen["output"], f"shell showed {seen['output']!r}")
    closed = story.pyro.close_shell(ws, sid)
    expect(closed["closed"], "shell did not close")
    story.exec(ws, "sh review.sh")
    story.pyro.write_workspace_file(ws, "artifact.txt", "FAIL\n")
    reset = story.pyro.reset_workspace(ws, snapshot="pre-review")
    expect(
        reset["workspace_reset"]["snapshot_name"] == "pre-review", "reset used the wrong snapshot"
    )
    artifact = story.pyro.read_workspace_file(ws, "artifact.txt")["content"]
    expect(artifact == "PASS\n", f"artifact after reset is {artifact!r}")
    story.exec(ws, "sh review.sh")
    report = story.export_text(ws, "review-report.txt")
    expect(report == "review=pass\n", f"review report is {report!r}")
    return {"workspace_id": ws, "report": report.strip()}


SCENARIOS: dict[str, Callable[[Story, bool], dict[str, Any]]] = {
    "cold-start-validation": cold_start_validation,
    "repro-fix-loop": repro_fix_loop,
    "parallel-workspaces": parallel_workspaces,
    "untrusted-inspection": untrusted_inspection,
    "review-eval": review_eval,
}
