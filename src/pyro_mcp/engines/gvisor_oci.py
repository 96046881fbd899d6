"""The OCI bundle of a gVisor sandbox: its ``config.json`` (engines/gvisor.py writes it).

The agent is the container's entry process unless the caller names another (a one-shot run's
command); the rootfs is used as is (runsc puts it under a memory overlay).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import BootSpec
from .limits import tmpfs_size_mib

if TYPE_CHECKING:
    from .gvisor_net import GvisorNet

CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_NET_ADMIN",
    "CAP_SYS_CHROOT",
    "CAP_MKNOD",
    "CAP_AUDIT_WRITE",
    "CAP_SETFCAP",
    "CAP_SYS_PTRACE",
    "CAP_SYS_ADMIN",
    "CAP_SYS_RESOURCE",
    "CAP_IPC_LOCK",
]
GUEST_ENV = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONPATH=/opt/pyro",
    "PYTHONDONTWRITEBYTECODE=1",
    "HOME=/root",
    "LANG=C.UTF-8",
]


def _bind(destination: str, source: Path | None, mode: str) -> list[dict[str, Any]]:
    """A bind mount of a host directory, or nothing when there is none."""
    if source is None:
        return []
    return [
        {
            "destination": destination,
            "type": "bind",
            "source": str(source),
            "options": ["rbind", mode],
        }
    ]


def _mounts(spec: BootSpec, tmpfs_size: str, net: GvisorNet | None) -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", tmpfs_size],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/tmp",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777", tmpfs_size],
        },
        {
            "destination": "/run",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=755", tmpfs_size],
        },
        *_bind("/workspace", spec.workspace_dir, "rw"),
        *_bind("/opt/pyro", spec.agent_dir, "ro"),
        *([net.mount()] if net is not None else []),
    ]


def oci_config(spec: BootSpec, rootfs: Path, net: GvisorNet | None = None) -> dict[str, Any]:
    caps = {key: CAPABILITIES for key in ("bounding", "effective", "permitted", "inheritable")}
    tmpfs_size = f"size={tmpfs_size_mib(spec.mem_mib)}m"
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["/usr/bin/python3", "-S", "-B", "-m", "pyro_guest.agent", "--init"],
            "env": GUEST_ENV,
            "cwd": "/",
            "capabilities": caps,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576}],
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": "pyro",
        "mounts": _mounts(spec, tmpfs_size, net),
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        },
    }
