"""Ephemeral VMs: in-memory records owned by this process (PRODUCT_SPEC §2.1–2.2).

A VM that reaches its TTL is stopped and deleted by a timer, not only when something
happens to look at it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import calls, core, lifetime, validation
from .core import Core
from .engines.agent_client import AgentGone
from .engines.base import BootSpec, Sandbox
from .engines.profile import GVISOR, guest_network
from .environments.store import InstalledEnvironment
from .errors import NotFoundError, StateError
from .guest.protocol import split_output
from .lifetime import Lifetime
from .network.policy import network_dir
from .network.proxy import EgressProxy
from .runtime import EngineChoice, Runtime
from .workspaces import owners

# vm_network_info's fields from the engine's guest network (the contract's, no more).
NETWORK_FIELDS = ("guest_ip", "gateway_ip", "subnet_cidr", "mac_address", "dns_servers", "proxy")

if TYPE_CHECKING:
    from .environments.build import Progress

OutputHandler = Callable[[str, bytes], None]
Phase = Callable[[str], None]

GUEST_CWD = "/root"
OWNER_FILE = "owner"  # pid:start-time of the process whose VM this is (workspaces/owners.py)
EXEC_SLACK_SECONDS = 30.0


class VmRecord:
    """One VM; mutable (state, sandbox and timer change over its life)."""

    __slots__ = (
        "allow_host_compat",
        "choice",
        "created_at",
        "env",
        "lock",
        "mem_mib",
        "network",
        "proxy",
        "sandbox",
        "state",
        "timer",
        "ttl_seconds",
        "vcpu_count",
        "vm_id",
        "workdir",
    )

    def __init__(
        self,
        vm_id: str,
        env: InstalledEnvironment,
        choice: EngineChoice,
        vcpu_count: int,
        mem_mib: int,
        ttl_seconds: int,
        network: bool,
        allow_host_compat: bool,
        workdir: Path,
    ) -> None:
        self.vm_id = vm_id
        self.env = env
        self.choice = choice
        self.vcpu_count = vcpu_count
        self.mem_mib = mem_mib
        self.ttl_seconds = ttl_seconds
        self.network = network
        self.allow_host_compat = allow_host_compat
        self.workdir = workdir
        self.created_at = time.time()
        self.state = "created"
        self.sandbox: Sandbox | None = None
        self.proxy: EgressProxy | None = None  # a networked VM's only way out
        self.timer: threading.Timer | None = None
        self.lock = threading.Lock()

    @property
    def expires_at(self) -> float:
        return self.created_at + self.ttl_seconds

    def core(self) -> Core:
        return Core(
            id=self.vm_id,
            kind="vm",
            engine=self.choice.key,
            environment=self.env.spec.name,
            environment_version=self.env.spec.version,
            vcpu_count=self.vcpu_count,
            mem_mib=self.mem_mib,
            ttl_seconds=self.ttl_seconds,
            created_at=self.created_at,
            expires_at=self.expires_at,
            state=self.state,
            network=self.network,
            allow_host_compat=self.allow_host_compat,
        )

    def payload(self) -> dict[str, Any]:
        return core.payload(self.core())


class VmRegistry:
    def __init__(self, runtime: Runtime, lifetime: Lifetime) -> None:
        self.runtime = runtime
        self.lifetime = lifetime
        self.vms = lifetime.vms  # the cap counts them
        self.lock = threading.RLock()

    # -- lookup and expiry -------------------------------------------------------------
    def get(self, vm_id: str) -> VmRecord:
        with self.lock:
            record = self.vms.get(vm_id) if isinstance(vm_id, str) else None
            if record is None:
                raise NotFoundError(f"vm {vm_id!r} does not exist")
            if lifetime.due(record.expires_at):
                self._expire(record)
                raise lifetime.expired_error("vm", vm_id, record.ttl_seconds)
            return record

    def reap_expired(self) -> dict[str, Any]:
        now = time.time()
        with self.lock:
            expired = [r for r in self.vms.values() if lifetime.due(r.expires_at, now)]
            for record in expired:
                self._expire(record)
        ids = [r.vm_id for r in expired]
        return {"deleted_vm_ids": ids, "count": len(ids)}

    def _on_timer(self, vm_id: str) -> None:
        with self.lock:
            record = self.vms.get(vm_id)
            if record is not None and lifetime.due(record.expires_at, time.time() + 0.5):
                self._expire(record)

    def _expire(self, record: VmRecord) -> None:
        lifetime.expire("vm", record.vm_id, record.ttl_seconds, lambda: self._destroy(record), None)

    def _destroy(self, record: VmRecord) -> None:
        if record.timer is not None:
            record.timer.cancel()
        if record.sandbox is not None:
            record.sandbox.kill()
            record.sandbox = None
        if record.proxy is not None:
            record.proxy.close()
        self.runtime.remove_dir(record.workdir)
        self.vms.pop(record.vm_id, None)
        record.state = "deleted"

    # -- lifecycle -----------------------------------------------------------------------
    def create(
        self,
        environment: str,
        vcpu_count: int,
        mem_mib: int,
        ttl_seconds: int,
        network: bool,
        allow_host_compat: bool,
        progress: Progress | None = None,
        notify: Phase | None = None,
    ) -> VmRecord:
        self.reap_expired()
        with self.lock:
            self.lifetime.admit_vm()  # before any download or engine choice
        network = validation.boolean("network", network)
        env, choice = self.runtime.prepare(
            environment, allow_host_compat, progress, notify, need_network=network
        )
        vm_id = validation.new_id()
        self.sweep_orphans()
        record = VmRecord(
            vm_id=vm_id,
            env=env,
            choice=choice,
            vcpu_count=vcpu_count,
            mem_mib=mem_mib,
            ttl_seconds=ttl_seconds,
            network=network,
            allow_host_compat=allow_host_compat,
            workdir=self.runtime.sandbox_dir("vms", vm_id),
        )
        partial = record.workdir / f".{OWNER_FILE}"  # renamed in whole: a sweep never
        partial.write_text(owners.current())  # reads a half-written owner
        partial.replace(record.workdir / OWNER_FILE)
        with self.lock:  # admitted again with the insert: racing creates cannot overshoot
            try:
                self.lifetime.admit_vm()
            except StateError:
                self.runtime.remove_dir(record.workdir)
                raise
            self.vms[vm_id] = record
        return record

    def sweep_orphans(self) -> None:
        """End the sandboxes of VMs and one-shot runs whose process died (``kill -9`` of a
        `pyro run`, an SDK script or an MCP host) and remove what they left on the host."""
        for workdir in sorted((self.runtime.runtime_root / "vms").glob("*")):
            try:
                owner = (workdir / OWNER_FILE).read_text()
            except OSError:
                continue  # being made, or not ours
            if ":" not in owner or owners.alive(owner):
                continue
            with contextlib.suppress(Exception):  # a leftover never fails another's create
                self._end_orphan(workdir)

    def _end_orphan(self, workdir: Path) -> None:
        for pid in owners.engines(workdir):
            owners.kill(pid)
        self.runtime.engine_by_key(GVISOR.key).engine.reclaim(workdir.name)
        self.runtime.remove_dir(workdir)

    def start(self, vm_id: str) -> VmRecord:
        record = self.get(vm_id)
        with record.lock:
            if record.state not in ("created", "stopped"):
                raise StateError(
                    f"vm {vm_id!r} is {record.state}; only a created or stopped vm can start"
                )
            if record.network and record.proxy is None:
                record.proxy = EgressProxy(network_dir(record.workdir))
            record.sandbox = self.runtime.boot(
                record.choice,
                record.env,
                vm_id,
                record.workdir,
                vcpu_count=record.vcpu_count,
                mem_mib=record.mem_mib,
                network=record.network,
                egress_proxy=str(record.proxy.socket_path) if record.proxy else None,
            )
            if record.network:
                record.sandbox.client.call("network", guest_network(record.choice.key), timeout=30)
            record.state = "started"
            delay = max(0.0, record.expires_at - time.time())
            record.timer = threading.Timer(delay, self._on_timer, args=(vm_id,))
            record.timer.daemon = True
            record.timer.start()
        return record

    @staticmethod
    def can_run_once(record: VmRecord) -> bool:
        return record.choice.profile.one_shot and not record.network

    def exec(
        self,
        record: VmRecord,
        command: str,
        timeout_seconds: float,
        on_output: OutputHandler | None = None,
        *,
        once: bool = False,
    ) -> dict[str, Any]:
        """Run ``command`` (checked by the caller, manager.py, and the Params) through the
        guest agent of a started VM, or ``once`` as a created VM's only process."""
        timeout = float(timeout_seconds)
        on_output = calls.listen(on_output)  # progress and cancel of a surface's call
        if once:
            result = self._run_once(record, command, timeout, on_output)
        else:
            result = self._agent_exec(record, command, timeout, on_output)
        return core.exec_result(record.core(), command, result, engine=record.choice.key)

    def _agent_exec(
        self, record: VmRecord, command: str, timeout: float, on_output: OutputHandler | None
    ) -> Any:
        if record.state != "started" or record.sandbox is None:
            raise StateError(f"vm {record.vm_id!r} must be in 'started' state before vm_exec")
        cwd = GUEST_CWD if record.choice.profile.isolated else str(record.workdir / "root")
        args: dict[str, Any] = {"command": command, "timeout_seconds": timeout, "cwd": cwd}
        client = record.sandbox.client
        try:
            with calls.cancellable(client.call) as cancel_key:
                args.update(stream=on_output is not None, cancel_key=cancel_key)
                reply = client.call(
                    "exec", args, on_event=on_output, timeout=timeout + EXEC_SLACK_SECONDS
                )
            return split_output(*reply)
        except AgentGone as exc:
            raise StateError(
                f"vm {record.vm_id!r} stopped while running the command: {exc}"
            ) from exc

    @staticmethod
    def _run_once(
        record: VmRecord, command: str, timeout: float, on_output: OutputHandler | None
    ) -> Any:
        """A one-shot command without the guest agent (``Engine.run_once``)."""
        spec = BootSpec(
            sandbox_id=record.vm_id,
            environment=record.env,
            workdir=record.workdir,
            agent_dir=None,  # the command is the sandbox's only process: no agent to mount
            vcpu_count=record.vcpu_count,
            mem_mib=record.mem_mib,
        )
        record.state = "started"
        return record.choice.engine.run_once(spec, command, timeout, GUEST_CWD, on_output)

    def stop(self, vm_id: str) -> VmRecord:
        record = self.get(vm_id)
        with record.lock:
            if record.state != "started":
                raise StateError(f"vm {vm_id!r} is {record.state}; only a started vm can stop")
            if record.timer is not None:
                record.timer.cancel()
            if record.sandbox is not None:
                record.sandbox.kill()
                record.sandbox = None
            record.state = "stopped"
        return record

    def delete(self, vm_id: str, reason: str = "explicit_delete") -> dict[str, Any]:
        with self.lock:
            record = self.vms.get(vm_id) if isinstance(vm_id, str) else None
            if record is None:
                raise NotFoundError(f"vm {vm_id!r} does not exist")
            self._destroy(record)
        return {"vm_id": vm_id, "deleted": True, "reason": reason}

    def network_info(self, vm_id: str) -> dict[str, Any]:
        record = self.get(vm_id)
        if not record.network:
            return {
                "vm_id": vm_id,
                "network_enabled": False,
                "reason": "the vm was created without network",
            }
        return {
            "vm_id": vm_id,
            "network_enabled": True,
            "tap_name": None,
            **{k: v for k, v in guest_network(record.choice.key).items() if k in NETWORK_FIELDS},
            "outbound_connectivity_expected": True,
        }

    def close_all(self) -> None:
        with self.lock:
            for record in list(self.vms.values()):
                self._destroy(record)
