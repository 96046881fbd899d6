"""One profile per engine: the one home of every fact about an engine that other code reads.

Records, payloads, ``pyro doctor`` and engine detection read these; no module outside
``engines/`` compares an engine's key to a string. Keys are what a workspace record stores
and what payloads call ``engine`` (gvisor, qemu-kvm, qemu-tcg, host).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import EngineUnavailable
from .network import LOOPBACK_NETWORK, USER_NETWORK

# The contract's names for where commands run: inside the sandbox through its agent (the
# name is the contract's, from when that was a vsock), or directly on the host.
GUEST_EXECUTION = "guest_vsock"
HOST_EXECUTION = "host_compat"
QEMU_BINARY = "qemu-system-x86_64"


@dataclass(frozen=True)
class EngineProfile:
    key: str  # the record's and payload's engine name
    name: str  # the engine family, for messages ("qemu" for both of its keys)
    isolation: str  # payloads' ``isolation``: gvisor-sentry, vm-kvm, vm-tcg, none
    real_vm: bool  # a guest kernel of its own (its /workspace is a virtual disk)
    isolated: bool  # False: commands run on the host itself (host_compat)
    guest_network: dict[str, Any]  # what the guest sees with networking (engines/network.py)
    binary: str | None = None  # the program it runs, looked up on PATH
    install_hint: str | None = None  # for `pyro doctor` when it is unavailable
    probe_timeout: float = 30.0  # a detection boot probe's limit (seconds)
    one_shot: bool = False  # Engine.run_once: a command as the sandbox's only process
    built: bool = True  # False: known to doctor, not an engine of this build

    @property
    def execution_mode(self) -> str:
        return GUEST_EXECUTION if self.isolated else HOST_EXECUTION

    @property
    def has_guest_workspace(self) -> bool:
        """/workspace is the sandbox's own (an ext4 image: a VM's disk, or loop-mounted for
        gVisor), so shells, services and disk operations have a guest to work in."""
        return self.isolated


# The table of engines, one row each: key, family name, isolation, real_vm, isolated, guest
# network; then what differs from the defaults above.
# fmt: off
GVISOR = EngineProfile("gvisor", "gvisor", "gvisor-sentry", False, True, LOOPBACK_NETWORK,
    binary="runsc", one_shot=True,
    install_hint="apt-get install -t bookworm-backports runsc (bookworm-backports apt source)")
QEMU_KVM = EngineProfile("qemu-kvm", "qemu", "vm-kvm", True, True, USER_NETWORK,
    binary=QEMU_BINARY, probe_timeout=20.0,
    install_hint="apt-get install qemu-system-x86, and a host whose /dev/kvm boots guests")
QEMU_TCG = EngineProfile("qemu-tcg", "qemu", "vm-tcg", True, True, USER_NETWORK,
    binary=QEMU_BINARY, probe_timeout=120.0, install_hint="apt-get install qemu-system-x86")
# host: its network is never used (a networked request never falls back to it)
HOST = EngineProfile("host", "host", "none", False, False, USER_NETWORK)
FIRECRACKER = EngineProfile("firecracker", "firecracker", "vm-kvm", True, True, USER_NETWORK,
    binary="firecracker", built=False)
# fmt: on

PROFILES = {p.key: p for p in (GVISOR, QEMU_KVM, QEMU_TCG, HOST, FIRECRACKER)}
# The programs a sandbox of this build runs as (how a leftover sandbox's processes are found).
ENGINE_BINARIES = tuple(sorted({p.binary for p in PROFILES.values() if p.built and p.binary}))


def profile_of(key: str) -> EngineProfile:
    """The profile of the engine a sandbox or record names, or a clear error."""
    found = PROFILES.get(key) if isinstance(key, str) else None
    if found is None or not found.built:
        raise EngineUnavailable(f"unknown engine {key!r}")
    return found


def guest_network(key: str) -> dict[str, Any]:
    """What the ``network`` op sets up in a guest of engine ``key``."""
    return profile_of(key).guest_network
