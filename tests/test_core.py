"""The typed core and the one lifetime policy (lifetime.py, core.py), and the workspace
handle's redaction rule: pure logic and the real SQLite store, no sandbox."""

from __future__ import annotations

import contextlib
import inspect
import time
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import VmManager, core, lifetime
from pyro_mcp.errors import StateError
from pyro_mcp.lifetime import Lifetime
from pyro_mcp.manager import PyroRuntime
from pyro_mcp.workspaces import commands, disk, files, network, secrets, services, shells, snapshots
from pyro_mcp.workspaces.handle import Handle, operation
from pyro_mcp.workspaces.layout import WorkspaceLayout
from support import workspace_row

VM_FULL = "max active VMs reached (2); delete old VMs first"
WORKSPACE_FULL = (
    "max active VMs reached (2); stop or delete a running workspace first "
    "(stopped workspaces do not count)"
)


def test_admit_refuses_at_the_cap_with_the_kind_s_advice() -> None:
    lifetime.admit("vm", 1, 2)
    lifetime.admit("workspace", 0, 2)
    with pytest.raises(StateError) as vm:
        lifetime.admit("vm", 2, 2)
    with pytest.raises(StateError) as workspace:
        lifetime.admit("workspace", 3, 2)
    assert (str(vm.value), str(workspace.value)) == (VM_FULL, WORKSPACE_FULL)


def test_due_is_the_moment_of_expiry_on() -> None:
    assert not lifetime.due(100.0, now=99.999)
    assert lifetime.due(100.0, now=100.0)
    assert lifetime.due(time.time() - 1)
    assert str(lifetime.expired_error("vm", "abc", 60)) == (
        "vm 'abc' expired and was automatically deleted"
    )
    assert str(lifetime.expired_error("workspace", "abc", 60)) == (
        "workspace 'abc' expired (ttl 60s) and was automatically deleted"
    )


def test_the_store_admits_through_the_policy_in_one_transaction(tmp_path: Path) -> None:
    policy = Lifetime(tmp_path, 2)
    assert policy.running_workspaces() == 0
    assert not (tmp_path / "state.db").exists(), "counting made a database"
    store = policy.store
    store.insert_admitted(workspace_row("a", "started"), policy.admit_workspace)
    store.insert_admitted(workspace_row("b", "stopped"), policy.admit_workspace)
    store.insert_admitted(workspace_row("c", "starting"), policy.admit_workspace)
    with pytest.raises(StateError) as refused_create:
        store.insert_admitted(workspace_row("d", "starting"), policy.admit_workspace)
    assert store.get("d") is None, "a refused create left a record"
    with pytest.raises(StateError) as refused_start:
        store.mark_starting_admitted("b", policy.admit_workspace, "owner")
    assert str(refused_create.value) == str(refused_start.value) == WORKSPACE_FULL
    assert store.get("b")["state"] == "stopped"  # type: ignore[index]
    assert store.owners("b") == []
    store.update("a", state="stopped")
    assert store.mark_starting_admitted("b", policy.admit_workspace, "owner")
    assert store.owners("b") == [{"workspace_id": "b", "kind": "start", "owner": "owner"}]
    assert not store.mark_starting_admitted("b", policy.admit_workspace, "other")


def test_expire_remembers_a_workspace_then_ends_it(tmp_path: Path) -> None:
    store = Lifetime(tmp_path, 2).store
    ended: list[str] = []
    lifetime.expire("workspace", "w1", 90, lambda: ended.append("w1"), store)
    lifetime.expire("vm", "v1", 90, lambda: ended.append("v1"), None)
    assert ended == ["w1", "v1"]
    assert store.expired("w1")["ttl_seconds"] == 90  # type: ignore[index]
    assert store.expired("v1") is None


def _core(kind: lifetime.Kind, engine: str, network: bool) -> core.Core:
    return core.Core(
        id="0123456789ab",
        kind=kind,
        engine=engine,
        environment="debian:12",
        environment_version="1.0",
        vcpu_count=1,
        mem_mib=512,
        ttl_seconds=600,
        created_at=10.0,
        expires_at=610.0,
        state="started",
        network=network,
        allow_host_compat=engine == "host",
    )


def test_one_payload_for_vms_and_workspaces() -> None:
    vm = core.payload(_core("vm", "qemu-tcg", network=True))
    workspace = core.payload(_core("workspace", "qemu-tcg", network=True))
    assert vm.pop("vm_id") == workspace.pop("workspace_id") == "0123456789ab"
    assert vm == workspace
    assert vm["isolation"] == "vm-tcg" and vm["execution_mode"] == "guest_vsock"
    assert vm["guest_ip"] is not None and "warning" not in vm
    host = core.payload(_core("vm", "host", network=False))
    assert host["execution_mode"] == "host_compat" and host["guest_ip"] is None
    assert "NO isolation" in host["warning"]


def test_one_exec_result_shape() -> None:
    raw = {"stdout": "hi\n", "exit_code": 3, "duration_ms": 7.9, "timed_out": 0}
    vm = core.exec_result(_core("vm", "gvisor", False), "echo hi", raw, engine="gvisor")
    workspace = core.exec_result(_core("workspace", "gvisor", False), "echo hi", raw, sequence=1)
    assert vm["vm_id"] == workspace["workspace_id"]
    assert (vm["engine"], workspace["sequence"]) == ("gvisor", 1)
    for result in (vm, workspace):
        assert (result["exit_code"], result["duration_ms"], result["stderr"]) == (3, 7, "")
        assert result["timed_out"] is False and result["stdout_truncated"] is False


def test_the_runtime_is_named_for_what_it_is() -> None:
    assert VmManager is PyroRuntime


def test_every_workspace_operation_over_a_handle_is_redacted() -> None:
    found = []
    for module in (commands, disk, files, network, services, shells, snapshots):
        for name, function in vars(module).items():
            if name.startswith("_") or not inspect.isfunction(function):
                continue
            if function.__module__ != module.__name__:  # a helper it imports (streams.py)
                continue
            first = next(iter(inspect.signature(function).parameters.values()), None)
            if first is None or first.annotation not in ("Handle", Handle):
                continue
            if name == "service_counts":  # a count for status, whose result is redacted
                continue
            if name == "source":  # what a reset or fork reads (a tar, images): never shown
                continue
            found.append(name)
            assert hasattr(function, "__wrapped__"), f"{module.__name__}.{name} is not redacted"
    assert {"exec", "shell_read", "reset", "disk_read", "file_read", "network_log"} <= set(found)


def test_an_operation_never_shows_a_secret_value(tmp_path: Path) -> None:
    layout = WorkspaceLayout(tmp_path, "0123456789ab")
    layout.create()
    secrets.store(layout.secrets_dir, [secrets.Secret("TOKEN", "s3cr3t", "literal")])
    with contextlib.closing(PyroRuntime(base_dir=tmp_path)) as runtime:
        ws = runtime.workspaces.handle("0123456789ab")

        @operation
        def leaky(handle: Handle, fail: bool) -> dict[str, Any]:
            if fail:
                raise ValueError("bad token s3cr3t")
            return {"out": ["token=s3cr3t"]}

        assert "s3cr3t" not in str(leaky(ws, fail=False))
        with pytest.raises(ValueError) as error:
            leaky(ws, fail=True)
        assert "s3cr3t" not in str(error.value) and str(error.value).startswith("bad token ")
