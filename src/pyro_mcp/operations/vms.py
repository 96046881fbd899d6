"""One-shot runs and the low-level ephemeral VM lifecycle (PRODUCT_SPEC §2.1–2.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, cast

from ..environments.catalog import DEFAULT_ENVIRONMENT
from ..validation import MAX_COMMAND_BYTES
from ..vms import OutputHandler, Phase
from .base import OperationsBase
from .params import (
    AllowHostCompat,
    EnvironmentName,
    MaxResultBytes,
    MemMib,
    ShellCommand,
    TimeoutSeconds,
    TtlSeconds,
    VcpuCount,
    VmId,
)
from .registry import FULL, VM_RUN, Param, operation

if TYPE_CHECKING:  # the shapes are for mypy and the MCP schema: not on the CLI's path
    from .results import VmDeleted, VmExecResult, VmInfo, VmNetworkInfo, VmReaped, VmRunResult

Network = Annotated[
    bool,
    Param(
        "Give the guest outbound network access (egress).",
        mcp_role="network",  # over MCP: only within pyro mcp serve --network-ceiling
    ),
]
VmEnvironment = Annotated[str, Param("Environment name from the catalog, e.g. debian:12.")]


class VmOperations(OperationsBase):
    @operation(mcp="vm_run", cli=("run",), profiles=VM_RUN, cli_runner="run", reaches_network=True)
    def run_in_vm(
        self,
        environment: EnvironmentName,
        command: ShellCommand,
        vcpu_count: VcpuCount = 1,
        mem_mib: MemMib = 1024,
        timeout_seconds: TimeoutSeconds = 30,
        ttl_seconds: TtlSeconds = 600,
        network: Network = False,
        allow_host_compat: AllowHostCompat = False,
        max_result_bytes: MaxResultBytes = None,
        *,
        on_output: OutputHandler | None = None,
        on_phase: Phase | None = None,
    ) -> VmRunResult:
        """Run one command in a fresh sandbox and delete it: create, start, exec, delete.

        The sandbox is always deleted, also when the command fails or times out. The result
        has stdout, stderr, exit_code (124 on timeout, with the output produced so far),
        duration_ms, the engine and execution_mode.
        """
        from ..workspaces.bounds import bound_streams

        result = self._manager.run_in_vm(
            environment=environment,
            command=command,
            vcpu_count=vcpu_count,
            mem_mib=mem_mib,
            timeout_seconds=timeout_seconds,
            ttl_seconds=ttl_seconds,
            network=network,
            allow_host_compat=allow_host_compat,
            on_output=on_output,
            on_phase=on_phase,
        )
        return cast("VmRunResult", bound_streams(result, max_result_bytes, kept=False))

    @operation(mcp="vm_create", profiles=FULL, reaches_network=True)
    def create_vm(
        self,
        environment: VmEnvironment = DEFAULT_ENVIRONMENT,
        vcpu_count: VcpuCount = 1,
        mem_mib: MemMib = 1024,
        ttl_seconds: TtlSeconds = 600,
        network: Network = False,
        allow_host_compat: AllowHostCompat = False,
    ) -> VmInfo:
        """Create an ephemeral VM (state 'created'); the environment is built if missing."""
        return cast(
            "VmInfo",
            self._manager.create_vm(
                environment=environment,
                vcpu_count=vcpu_count,
                mem_mib=mem_mib,
                ttl_seconds=ttl_seconds,
                network=network,
                allow_host_compat=allow_host_compat,
            ),
        )

    @operation(mcp="vm_start", profiles=FULL)
    def start_vm(self, vm_id: VmId) -> VmInfo:
        """Boot a created or stopped VM."""
        return cast("VmInfo", self._manager.start_vm(vm_id))

    @operation(mcp="vm_exec", profiles=FULL, destructive=True, reaches_network=True)
    def exec_vm(
        self,
        vm_id: VmId,
        command: Annotated[
            str,
            Param("The command; the guest runs it with /bin/sh -lc.", max_length=MAX_COMMAND_BYTES),
        ],
        timeout_seconds: TimeoutSeconds = 30,
        max_result_bytes: MaxResultBytes = None,
    ) -> VmExecResult:
        """Run one command in a started VM; the VM is deleted automatically afterwards."""
        from ..workspaces.bounds import bound_streams

        result = self._manager.exec_vm(vm_id, command, timeout_seconds)
        return cast("VmExecResult", bound_streams(result, max_result_bytes, kept=False))

    @operation(mcp="vm_stop", profiles=FULL, destructive=True)
    def stop_vm(self, vm_id: VmId) -> VmInfo:
        """Stop a started VM (it can be started again until its TTL ends)."""
        return cast("VmInfo", self._manager.stop_vm(vm_id))

    @operation(mcp="vm_delete", profiles=FULL, destructive=True)
    def delete_vm(self, vm_id: VmId) -> VmDeleted:
        """Delete a VM and everything it had."""
        return cast("VmDeleted", self._manager.delete_vm(vm_id))

    @operation(mcp="vm_status", profiles=FULL, read_only=True)
    def status_vm(self, vm_id: VmId) -> VmInfo:
        """Show a VM's state, engine, limits and expiry."""
        return cast("VmInfo", self._manager.status_vm(vm_id))

    @operation(mcp="vm_network_info", profiles=FULL, read_only=True)
    def network_info_vm(self, vm_id: VmId) -> VmNetworkInfo:
        """Show a VM's guest network (addresses, DNS), or why it has none."""
        return cast("VmNetworkInfo", self._manager.network_info_vm(vm_id))

    @operation(mcp="vm_reap_expired", profiles=FULL, destructive=True)
    def reap_expired(self) -> VmReaped:
        """Delete every ephemeral VM whose TTL has ended."""
        return cast("VmReaped", self._manager.reap_expired())
