"""PyroRuntime (exported as VmManager): the one runtime behind the CLI, the SDK and the MCP
server."""

from __future__ import annotations

import os
import shlex
import time
from typing import TYPE_CHECKING, Any

from . import validation
from .environments.catalog import get_spec
from .errors import StateError
from .lifetime import Lifetime
from .runtime import Notify, Runtime
from .vms import OutputHandler, Phase, VmRegistry

if TYPE_CHECKING:
    from .environments.build import Progress
    from .workspaces.manager import WorkspaceManager

DEFAULT_MAX_ACTIVE_VMS = 4


class PyroRuntime:
    """The whole runtime: environments, ephemeral VMs, workspaces and the host check, with
    one lifetime policy for VMs and workspaces (``runtime.Runtime`` is its engine and
    environment layer)."""

    def __init__(
        self,
        *,
        engine: str | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        max_active_vms: int = DEFAULT_MAX_ACTIVE_VMS,
    ) -> None:
        self.runtime = Runtime(engine=engine, home=base_dir, cache=cache_dir)
        self.lifetime = Lifetime(self.runtime.home, max_active_vms)
        self.vms = VmRegistry(self.runtime, self.lifetime)
        self._workspaces: WorkspaceManager | None = None
        # Surfaces may set these to show progress (the CLI prints them to stderr).
        self.progress: Progress | None = None
        self.notify: Notify | None = None

    @property
    def workspaces(self) -> WorkspaceManager:
        """Persistent workspaces (loaded on first use: a one-shot run never needs them)."""
        if self._workspaces is None:
            from .workspaces.manager import WorkspaceManager

            self._workspaces = WorkspaceManager(self.runtime, self.lifetime)
        return self._workspaces

    # -- environments ----------------------------------------------------------------
    def list_environments(self) -> list[dict[str, Any]]:
        return self.runtime.store.list()

    def pull_environment(self, environment: str, force: bool = False) -> dict[str, Any]:
        installed = self.runtime.store.pull(environment, self.progress, force=force)
        info = self.runtime.store.describe(installed.spec)
        info.update(
            install_dir=str(installed.path),
            kernel_image=str(installed.kernel),
            rootfs_image=str(installed.rootfs_image),
            source=installed.manifest.get("source"),
        )
        return info

    def inspect_environment(self, environment: str) -> dict[str, Any]:
        return self.runtime.store.inspect(environment)

    def prune_environments(self) -> dict[str, Any]:
        """Stale environments, plus boot templates and agent bundles of older versions."""
        result = self.runtime.store.prune()
        result["deleted_cache_dirs"] = self.runtime.prune_caches()
        return result

    # -- ephemeral VMs -----------------------------------------------------------------
    def create_vm(self, **kwargs: Any) -> dict[str, Any]:
        record = self.vms.create(progress=self.progress, notify=self.notify, **kwargs)
        return record.payload()

    def start_vm(self, vm_id: str) -> dict[str, Any]:
        return self.vms.start(vm_id).payload()

    def exec_vm(
        self,
        vm_id: str,
        command: str,
        timeout_seconds: float,
        on_output: OutputHandler | None = None,
    ) -> dict[str, Any]:
        """Run one command; the VM is deleted afterwards (the contract's vm_exec).

        Bad input, an unknown VM or one that is not started is refused before anything
        runs, and then the VM is kept.
        """
        validation.command(command)  # ranges: the Param declarations (operations/params.py)
        record = self.vms.get(vm_id)
        if record.state != "started":
            raise StateError(f"vm {vm_id!r} must be in 'started' state before vm_exec")
        try:
            return self.vms.exec(record, command, timeout_seconds, on_output)
        finally:
            if vm_id in self.vms.vms:
                self.vms.delete(vm_id, reason="post_exec_cleanup")

    def stop_vm(self, vm_id: str) -> dict[str, Any]:
        return self.vms.stop(vm_id).payload()

    def delete_vm(self, vm_id: str) -> dict[str, Any]:
        return self.vms.delete(vm_id)

    def status_vm(self, vm_id: str) -> dict[str, Any]:
        return self.vms.get(vm_id).payload()

    def network_info_vm(self, vm_id: str) -> dict[str, Any]:
        return self.vms.network_info(vm_id)

    def reap_expired(self) -> dict[str, Any]:
        return self.vms.reap_expired()

    def run_in_vm(
        self,
        *,
        environment: str,
        command: str,
        vcpu_count: int,
        mem_mib: int,
        timeout_seconds: float,
        ttl_seconds: int,
        network: bool,
        allow_host_compat: bool,
        on_output: OutputHandler | None = None,
        on_phase: Phase | None = None,
    ) -> dict[str, Any]:
        """create → start → exec → delete, always deleting, also on errors and Ctrl-C."""
        phase = on_phase or (lambda name: None)
        started = time.monotonic()
        # Every input is checked before anything is shown or booted.
        get_spec(environment)
        self.runtime.selector.check_name(self.runtime.engine_request)
        validation.command(command)  # ranges: the Param declarations (operations/params.py)
        phase("create")
        record = self.vms.create(
            environment,
            vcpu_count,
            mem_mib,
            ttl_seconds,
            network,
            allow_host_compat,
            progress=self.progress,
            notify=self.notify,
        )
        reason = "run_vm_error_cleanup"
        try:
            phase("start")
            once = self.vms.can_run_once(record)  # gVisor: the command is the sandbox's process
            if not once:
                self.vms.start(record.vm_id)
            phase("execute")
            result = self.vms.exec(record, command, timeout_seconds, on_output, once=once)
            reason = "post_exec_cleanup"
        finally:
            if record.vm_id in self.vms.vms:
                self.vms.delete(record.vm_id, reason=reason)
        result["duration_ms"] = int((time.monotonic() - started) * 1000)
        result["cleanup"] = {"vm_id": record.vm_id, "deleted": True, "reason": reason}
        return result

    # -- host --------------------------------------------------------------------------
    def doctor(self, probe: bool = True) -> dict[str, Any]:
        from .doctor import run_doctor

        return run_doctor(self.runtime, probe=probe, notify=self.notify)

    def close(self) -> None:
        self.vms.close_all()


VmManager = PyroRuntime  # the contract's name (PRODUCT_SPEC: exported by pyro_mcp)


def join_command(argv: list[str]) -> str:
    """Arguments after ``--`` are joined with POSIX shell quoting (PRODUCT_SPEC §2.1).

    One argument that contains white space is taken as a whole shell command instead
    (``pyro run debian:12 -- "echo a | wc -c"``): quoting it into a single word would only
    ever produce "command not found".
    """
    if len(argv) == 1 and any(ch.isspace() for ch in argv[0]):
        return argv[0]
    return shlex.join(argv)
