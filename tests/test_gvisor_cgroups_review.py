"""Review of engines/gvisor_cgroups.py on a cgroup v2 layout this host does not have (it
is v1): a fake ``/sys/fs/cgroup`` tree, checking what ``HostCgroups`` writes where. The
kernel side (a controller's files appearing) is the tree the test lays out."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp.engines import gvisor_cgroups
from pyro_mcp.engines.base import BootSpec
from pyro_mcp.engines.gvisor import container_id
from pyro_mcp.engines.gvisor_cgroups import PARENT, HostCgroups
from pyro_mcp.runtime import Runtime
from support import ENVIRONMENT


@pytest.fixture
def v2_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A v2 root whose own subtree enables cpu (as systemd's does): ``pyro-gvisor`` is then a
    CPU cgroup of its own, with the default weight of one task."""
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    parent = tmp_path / PARENT
    parent.mkdir()
    (parent / "cgroup.subtree_control").write_text("")
    (parent / "cpu.weight").write_text("100\n")
    monkeypatch.setattr(gvisor_cgroups, "ROOT", tmp_path)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    return tmp_path


@pytest.mark.parametrize("vcpus", [1, 3], ids=["quota", "no-quota"])
def test_v2_all_sandboxes_weigh_one_task_per_host_cpu_with_or_without_a_quota(
    v2_root: Path, vcpus: int
) -> None:
    """On v2 every sandbox is inside ``pyro-gvisor`` (its memory and pids need it), and
    that is a CPU cgroup wherever the root enables cpu: at the default weight all sandboxes
    together get the CPU share of one task on a busy host (the 15-25 % slowdown the module
    says the weight prevents). A sandbox without a quota (3 vCPUs + 1 of 4 host CPUs) left
    the weight unset."""
    cgroups = HostCgroups("pyro-test-0", 512, vcpu_count=vcpus)
    cgroups.create()
    assert (v2_root / PARENT / "cpu.weight").read_text().strip() == "400"
    (cgroup,) = cgroups.dirs
    has_quota = (cgroup / "cpu.max").exists()
    assert has_quota is (vcpus == 1)
    assert ("+cpu" in (v2_root / PARENT / "cgroup.subtree_control").read_text()) is has_quota


def test_the_sweep_takes_old_empty_cgroups_of_every_v1_controller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before pyro made its cgroups, runsc made one per sandbox in every controller under
    ``pyro-gvisor`` (blkio, cpuacct, devices, freezer, name=systemd...); the sweep looked in
    memory, pids and cpu only, so those stayed forever (this host had 16 in blkio and
    systemd, 12 hours old). A fresh one (a starting sandbox's) is never taken."""
    monkeypatch.setattr(gvisor_cgroups, "ROOT", tmp_path)
    old, fresh = [], []
    for controller in ("memory", "cpu", "blkio", "systemd", "freezer"):
        (tmp_path / controller / PARENT / "pyro-old").mkdir(parents=True)
        (tmp_path / controller / PARENT / "pyro-new").mkdir()
        os.utime(tmp_path / controller / PARENT / "pyro-old", (0, time.time() - 3600))
        old.append(tmp_path / controller / PARENT / "pyro-old")
        fresh.append(tmp_path / controller / PARENT / "pyro-new")
    HostCgroups.sweep()
    assert [path for path in old if path.exists()] == []
    assert all(path.exists() for path in fresh)


@pytest.mark.guest
@pytest.mark.skipif(os.geteuid() != 0, reason="host cgroups need root")
@pytest.mark.parametrize("bounded", [True, False], ids=["quota-bounds", "quota-bounds-nothing"])
def test_a_real_sandbox_is_in_a_cpu_cgroup_only_where_its_quota_bounds_and_leaves_none(
    fresh_state_dir: Path, installed_env: Any, monkeypatch: pytest.MonkeyPatch, bounded: bool
) -> None:
    """A real one-shot gVisor sandbox: where its quota bounds something (as on a host with
    more CPUs: ``host_cpu_quota`` made to say so) its processes sit in a CPU cgroup with the
    quota; where it does not (this 2-CPU host, 1 vCPU) in none of pyro's; in every case no
    cgroup of it is left under any controller's ``pyro-gvisor`` once it ended."""
    if bounded:
        monkeypatch.setattr(gvisor_cgroups, "host_cpu_quota", lambda vcpus, cpus: vcpus + 1)
    else:  # as on a host of 2 CPUs or fewer, whatever this one has
        monkeypatch.setattr(gvisor_cgroups, "host_cpu_quota", lambda vcpus, cpus: None)
    runtime = Runtime(home=fresh_state_dir)
    engine = runtime.selector.engine("gvisor")
    workdir = fresh_state_dir / "once"
    workdir.mkdir()
    spec = BootSpec(
        sandbox_id=f"cgrev{os.getpid()}", environment=runtime.environment(ENVIRONMENT),
        workdir=workdir, agent_dir=None, mem_mib=256,
    )  # fmt: skip
    container = container_id(spec.sandbox_id)
    cpu = Path("/sys/fs/cgroup/cpu") / PARENT / container
    seen: dict[str, Any] = {}

    def watch(kind: str, chunk: bytes) -> None:  # the command runs: look at its cgroups
        if b"ready" in chunk and not seen:
            procs = Path("/sys/fs/cgroup/pids", PARENT, container, "cgroup.procs")
            seen["pids"] = procs.read_text().split()
            seen["cpu"] = cpu.is_dir() and (cpu / "cgroup.procs").read_text().split()
            seen["quota"] = cpu.is_dir() and int((cpu / "cpu.cfs_quota_us").read_text())

    result = engine.run_once(spec, "echo ready; sleep 0.5", 60, "/", watch)
    assert result["exit_code"] == 0, result
    assert seen["pids"], seen  # it was in its pids cgroup
    if bounded:
        assert seen["cpu"] == seen["pids"] and seen["quota"] == 2 * 100_000, seen
    else:
        assert seen["cpu"] is False, seen
    left = [p for p in Path("/sys/fs/cgroup").glob(f"*/{PARENT}/{container}") if p.exists()]
    assert left == []
