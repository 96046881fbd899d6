"""The max-active cap on real sandboxes: running workspaces and ephemeral VMs count,
stopped workspaces do not; create, start and a reset of a stopped workspace are admitted
by the same rule (lifetime.py), racing creates cannot overshoot it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from pyro_mcp import Pyro
from support import ENVIRONMENT
from workspace_fixtures import (
    capped_home,
    forget,
    supervisor_pids,
)

pytestmark = pytest.mark.guest


@pytest.fixture
def capped() -> Iterator[Pyro]:
    """A state dir of its own with max_active_vms=2, so other tests' workspaces never count."""
    with capped_home("pyro-cap-", 2) as pyro:
        yield pyro


CAP = r"max active VMs reached \(2\)"


def test_max_active_counts_running_workspaces_only(capped: Pyro) -> None:
    a = capped.create_workspace(environment=ENVIRONMENT)["workspace_id"]
    b = capped.create_workspace(environment=ENVIRONMENT)["workspace_id"]
    with pytest.raises(RuntimeError, match=CAP):
        capped.create_workspace(environment=ENVIRONMENT)
    assert len(capped.list_workspaces()["workspaces"]) == 2, "a refused create left a record"

    capped.stop_workspace(a)  # a stopped workspace frees its slot …
    c = capped.create_workspace(environment=ENVIRONMENT)["workspace_id"]
    with pytest.raises(RuntimeError, match=CAP):  # … and needs one again to start
        capped.start_workspace(a)
    assert capped.status_workspace(a)["state"] == "stopped"

    capped.delete_workspace(b)
    assert capped.start_workspace(a)["state"] == "started"
    with pytest.raises(RuntimeError, match=CAP):  # ephemeral VMs count too
        capped.create_vm(environment=ENVIRONMENT)
    capped.stop_workspace(c)
    vm = capped.create_vm(environment=ENVIRONMENT)["vm_id"]
    with pytest.raises(RuntimeError, match=CAP):
        capped.start_workspace(c)
    capped.delete_vm(vm)
    assert capped.start_workspace(c)["state"] == "started"
    for wid in (a, c):
        forget(capped, wid)


def test_reset_of_a_stopped_workspace_needs_a_slot_like_start(capped: Pyro) -> None:
    # Regression: a reset of a stopped workspace booted it with no capacity check at all.
    a = capped.create_workspace(environment=ENVIRONMENT)["workspace_id"]
    b = capped.create_workspace(environment=ENVIRONMENT)["workspace_id"]
    capped.stop_workspace(a)
    c = capped.create_workspace(environment=ENVIRONMENT)["workspace_id"]  # the cap is full
    with pytest.raises(RuntimeError, match=CAP) as refused_start:
        capped.start_workspace(a)
    with pytest.raises(RuntimeError, match=CAP) as refused_reset:
        capped.reset_workspace(a)
    assert str(refused_reset.value) == str(refused_start.value)
    status = capped.status_workspace(a)
    assert status["state"] == "stopped" and status["reset_count"] == 0
    assert supervisor_pids(capped.manager.runtime.home, a) == []
    running = [w for w in capped.list_workspaces()["workspaces"] if w["state"] == "started"]
    assert len(running) == 2
    capped.delete_workspace(b)  # a free slot: the reset boots it
    assert capped.reset_workspace(a)["state"] == "started"
    for wid in (a, c):
        forget(capped, wid)


def test_max_active_cap_holds_for_concurrent_creates(capped: Pyro) -> None:
    # Regression: the check and the insert were separate, so racing creates all got in.
    barrier = threading.Barrier(3)

    def create(_: int) -> str:
        barrier.wait()
        try:
            return capped.create_workspace(environment=ENVIRONMENT)["workspace_id"]
        except RuntimeError as exc:
            return f"refused: {exc}"

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(create, range(3)))
    created = [r for r in results if not r.startswith("refused")]
    running = [w for w in capped.list_workspaces()["workspaces"] if w["state"] == "started"]
    assert len(created) == 2, results
    assert len(running) == 2
