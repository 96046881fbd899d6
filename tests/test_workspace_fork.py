"""Fork (issue 13): a new workspace from another's live state or one of its snapshots; after
the fork the two share nothing writable. Real sandboxes on both engines (workspaces/fork.py)."""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from pyro_mcp.workspaces import fork, owners
from pyro_mcp.workspaces.lifecycle import WorkspaceLifecycle
from support import ENVIRONMENT
from workspace_fixtures import *  # noqa: F403  (the fixtures)
from workspace_fixtures import capped_home, run_cli

pytestmark = pytest.mark.guest

CHANGE = (
    "echo x > /usr/local/bin/pyro-tool && echo y > /etc/pyro-test.conf && "
    "echo w > /workspace/work.txt"
)
PROBE = "cat /usr/local/bin/pyro-tool /etc/pyro-test.conf /workspace/work.txt 2>/dev/null; true"
SIDES = "cat /etc/pyro-side /workspace/side 2>/dev/null; true"


def run(pyro: Any, wid: str, command: str) -> str:
    result = pyro.exec_workspace(wid, command=command)
    assert result["exit_code"] == 0, result
    return str(result["stdout"])


def workspace_dirs(pyro: Pyro) -> set[str]:
    return {p.name for p in (pyro.manager.runtime.home / "workspaces").iterdir()}


@pytest.mark.parametrize("engine", ("gvisor", "qemu"))
def test_a_live_fork_copies_everything_then_shares_nothing(
    engine: str, pyro_for: Any, new_workspace: Any
) -> None:
    pyro = pyro_for(engine)
    parent = new_workspace(pyro, disk_mib=256, name="parent", labels={"team": "a"})
    pid = parent["workspace_id"]
    run(pyro, pid, CHANGE)

    child = pyro.fork_workspace(pid, labels={"try": "second"})
    cid = child["workspace_id"]
    try:
        assert cid != pid and child["state"] == "started"
        assert child["forked_from"] == {"workspace_id": pid, "snapshot_name": None}
        assert child["name"] == "parent" and child["labels"] == {"team": "a", "try": "second"}
        for key in ("engine", "environment", "vcpu_count", "mem_mib", "disk_mib", "ttl_seconds"):
            assert child[key] == parent[key], key
        assert child["network_policy"] == parent["network_policy"]
        assert run(pyro, cid, PROBE) == "x\ny\nw\n"  # files and system changes, as of the fork

        run(pyro, pid, "echo parent > /etc/pyro-side; echo parent > /workspace/side")
        run(pyro, cid, "echo child > /etc/pyro-side; echo child > /workspace/side")
        assert run(pyro, pid, SIDES) == "parent\nparent\n"
        assert run(pyro, cid, SIDES) == "child\nchild\n"
        assert pyro.status_workspace(pid)["state"] == "started"  # the source kept running
    finally:
        pyro.delete_workspace(cid)


def test_a_fork_from_a_snapshot_gets_that_state(ws_pyro: Pyro, new_workspace: Any) -> None:
    pid = new_workspace(disk_mib=256)["workspace_id"]
    run(ws_pyro, pid, CHANGE)
    ws_pyro.create_snapshot(pid, "s1")
    run(ws_pyro, pid, "echo later > /etc/pyro-test.conf; rm /workspace/work.txt")
    child = ws_pyro.fork_workspace(pid, snapshot="s1", name="from-s1")
    try:
        assert child["forked_from"] == {"workspace_id": pid, "snapshot_name": "s1"}
        assert child["name"] == "from-s1"
        assert run(ws_pyro, child["workspace_id"], PROBE) == "x\ny\nw\n"
        # the child's own snapshots start empty, and its baseline is the source's
        listed = ws_pyro.list_snapshots(child["workspace_id"])["snapshots"]
        names = [s["snapshot_name"] for s in listed]
        assert names == ["baseline"]
    finally:
        ws_pyro.delete_workspace(child["workspace_id"])
    base = ws_pyro.fork_workspace(pid, snapshot="baseline")  # a fresh system, empty /workspace
    try:
        assert run(ws_pyro, base["workspace_id"], PROBE) == ""
    finally:
        ws_pyro.delete_workspace(base["workspace_id"])


def test_a_fork_of_a_stopped_workspace_copies_its_disks_on_the_host(
    ws_pyro: Pyro, new_workspace: Any
) -> None:
    pid = new_workspace(disk_mib=256)["workspace_id"]
    run(ws_pyro, pid, CHANGE)
    ws_pyro.stop_workspace(pid)
    child = ws_pyro.fork_workspace(pid)
    cid = child["workspace_id"]
    try:
        assert child["state"] == "started"
        assert child["forked_from"] == {"workspace_id": pid, "snapshot_name": None}
        assert ws_pyro.status_workspace(pid)["state"] == "stopped"  # the source stays stopped
        assert ws_pyro.manager.workspaces.store.owners(pid) == []  # and is free to start
        assert run(ws_pyro, cid, PROBE) == "x\ny\nw\n"  # files and system changes
        run(ws_pyro, cid, "echo child > /etc/pyro-side; echo child > /workspace/side")
        ws_pyro.start_workspace(pid)
        assert run(ws_pyro, pid, PROBE) == "x\ny\nw\n"
        assert run(ws_pyro, pid, SIDES) == ""  # the child's writes stay in the child
        run(ws_pyro, pid, "echo parent > /workspace/side")
        assert run(ws_pyro, cid, SIDES) == "child\nchild\n"
    finally:
        ws_pyro.delete_workspace(cid)


def test_a_failed_fork_leaves_nothing_and_says_why_in_one_line(
    ws_pyro: Pyro, ws_home: Path, new_workspace: Any
) -> None:
    pid = new_workspace(disk_mib=256)["workspace_id"]
    before = workspace_dirs(ws_pyro), len(ws_pyro.list_workspaces()["workspaces"])
    with pytest.raises(ValueError, match=r"^snapshot 'nope' does not exist$"):
        ws_pyro.fork_workspace(pid, snapshot="nope")
    with pytest.raises(ValueError, match="does not exist"):
        ws_pyro.fork_workspace("0123456789ab")
    assert (workspace_dirs(ws_pyro), len(ws_pyro.list_workspaces()["workspaces"])) == before
    cli = run_cli("workspace", "fork", pid, "--snapshot", "nope", home=ws_home)
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    assert cli.stderr.strip().count("\n") == 0 and "does not exist" in cli.stderr


def test_a_start_racing_a_fork_of_the_stopped_source_waits_for_the_copy(
    ws_pyro: Pyro, ws_home: Path, new_workspace: Any
) -> None:
    pid = new_workspace(disk_mib=256)["workspace_id"]
    run(ws_pyro, pid, CHANGE)
    ws_pyro.stop_workspace(pid)
    results: dict[str, Any] = {}

    def fork_it() -> None:
        with Pyro(backend_name="gvisor", base_dir=ws_home) as other:
            results["fork"] = other.fork_workspace(pid)

    forking = threading.Thread(target=fork_it, daemon=True)
    forking.start()
    results["start"] = ws_pyro.start_workspace(pid)
    forking.join(timeout=120)  # the watchdog: a deadlock fails here, never hangs the run
    assert not forking.is_alive() and "fork" in results
    cid = results["fork"]["workspace_id"]
    try:
        assert results["start"]["state"] == "started"
        assert run(ws_pyro, cid, PROBE) == "x\ny\nw\n"
        assert run(ws_pyro, pid, PROBE) == "x\ny\nw\n"
        assert ws_pyro.manager.workspaces.store.owners() == []
    finally:
        ws_pyro.delete_workspace(cid)


def test_a_fork_that_fails_mid_copy_ends_its_launched_child(
    ws_pyro: Pyro, new_workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child's supervisor is launched before the copy (fork_copy.Staging): a copy that
    fails leaves no directory, record, supervisor or claim behind."""
    pid = new_workspace(disk_mib=256)["workspace_id"]
    launched: list[str] = []
    real_launch, real_images = WorkspaceLifecycle.launch, fork._images

    def launch(self: WorkspaceLifecycle, workspace_id: str) -> Any:
        launched.append(workspace_id)
        return real_launch(self, workspace_id)

    def images_then_full(*args: Any) -> None:
        real_images(*args)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(WorkspaceLifecycle, "launch", launch)
    monkeypatch.setattr(fork, "_images", images_then_full)
    before = workspace_dirs(ws_pyro), len(ws_pyro.list_workspaces()["workspaces"])
    with pytest.raises(OSError, match="No space left"):
        ws_pyro.fork_workspace(pid)
    assert len(launched) == 1
    home = ws_pyro.manager.runtime.home
    assert owners.supervisors(home, launched[0]) == []
    assert (workspace_dirs(ws_pyro), len(ws_pyro.list_workspaces()["workspaces"])) == before
    assert ws_pyro.manager.workspaces.store.owners() == []
    assert run(ws_pyro, pid, "echo still-here") == "still-here\n"


@pytest.fixture
def capped() -> Iterator[Pyro]:
    """A state dir of its own with max_active_vms=1."""
    with capped_home("pyro-forkcap-", 1) as pyro:
        yield pyro


def test_a_fork_counts_against_the_cap(capped: Pyro) -> None:
    pid = capped.create_workspace(environment=ENVIRONMENT, disk_mib=256)["workspace_id"]
    with pytest.raises(RuntimeError, match=r"max active VMs reached \(1\)"):
        capped.fork_workspace(pid)
    assert workspace_dirs(capped) == {pid}
    assert [w["workspace_id"] for w in capped.list_workspaces()["workspaces"]] == [pid]


def test_a_fork_keeps_the_secrets_without_showing_them(ws_pyro: Pyro, new_workspace: Any) -> None:
    secret = {"name": "TOK", "value": "fork-secret-value"}
    parent = new_workspace(disk_mib=256, secrets=[secret])
    child = ws_pyro.fork_workspace(parent["workspace_id"])
    try:
        assert child["secrets"] == parent["secrets"]
        assert "fork-secret-value" not in str(child)
        check = 'test "$TOK" = fork-secret-value && echo same'
        result = ws_pyro.exec_workspace(
            child["workspace_id"], command=check, secret_env={"TOK": "TOK"}
        )
        assert result["stdout"] == "same\n"
    finally:
        ws_pyro.delete_workspace(child["workspace_id"])
