"""What an ephemeral VM and a workspace both are: one typed core record, its one payload,
and the one shape of a command's result (PRODUCT_SPEC §2.1-2.3)."""

from __future__ import annotations

from typing import Any, NamedTuple

from .engines.profile import profile_of
from .lifetime import Kind
from .runtime import HOST_COMPAT_WARNING

ID_KEYS: dict[Kind, str] = {"vm": "vm_id", "workspace": "workspace_id"}


class Core(NamedTuple):
    """A VM's or a workspace's identity, engine, size, lifetime and state (a NamedTuple: no
    dataclass on the `pyro run` path, see docs/ARCHITECTURE.md)."""

    id: str
    kind: Kind
    engine: str  # the engine key: gvisor, qemu-kvm, qemu-tcg, host
    environment: str
    environment_version: str
    vcpu_count: int
    mem_mib: int
    ttl_seconds: int
    created_at: float
    expires_at: float
    state: str
    network: bool
    allow_host_compat: bool

    @property
    def id_key(self) -> str:
        return ID_KEYS[self.kind]


def payload(core: Core) -> dict[str, Any]:
    """The fields a VM's and a workspace's payloads share. No host paths (§7.23)."""
    profile = profile_of(core.engine)
    isolation = profile.isolation
    data: dict[str, Any] = {
        core.id_key: core.id,
        "environment": core.environment,
        "environment_version": core.environment_version,
        "vcpu_count": core.vcpu_count,
        "mem_mib": core.mem_mib,
        "ttl_seconds": core.ttl_seconds,
        "created_at": core.created_at,
        "expires_at": core.expires_at,
        "state": core.state,
        "network_enabled": core.network,
        "allow_host_compat": core.allow_host_compat,
        "guest_ip": profile.guest_network["guest_ip"] if core.network else None,
        "tap_name": None,
        "execution_mode": profile.execution_mode,
        "engine": core.engine,
        "isolation": isolation,
        "metadata": {"engine": core.engine, "isolation": isolation},
    }
    if not profile.isolated:
        data["warning"] = HOST_COMPAT_WARNING
    return data


def exec_result(core: Core, command: str, result: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A finished command, from a VM or a workspace (``extra``: the fields only one has)."""
    return {
        core.id_key: core.id,
        "environment": core.environment,
        "environment_version": core.environment_version,
        "command": command,
        "stdout": result.get("stdout", ""),
        "stderr": result.get("stderr", ""),
        "exit_code": int(result.get("exit_code", -1)),
        "duration_ms": int(result.get("duration_ms", 0)),
        "execution_mode": profile_of(core.engine).execution_mode,
        **extra,
        "timed_out": bool(result.get("timed_out")),
        "cancelled": bool(result.get("cancelled")),
        "stdout_truncated": bool(result.get("stdout_truncated")),
        "stderr_truncated": bool(result.get("stderr_truncated")),
    }
