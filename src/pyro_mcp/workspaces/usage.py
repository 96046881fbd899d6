"""What a workspace uses, read on the host without a guest call: /workspace's disk against
its limit, and the engine's memory and CPU time (gVisor: its host cgroups; QEMU: the
process). Every figure is null where it cannot be read (host compat, a stopped engine)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..engines.gvisor import container_id
from ..engines.gvisor_cgroups import process_seconds, sandbox_usage
from ..engines.profile import profile_of
from .layout import WorkspaceLayout

MIB = 1024 * 1024


def usage(layout: WorkspaceLayout, record: dict[str, Any]) -> dict[str, Any]:
    profile = profile_of(record["engine"])
    pid = record["supervisor_pid"] if record["state"] == "started" else None
    memory: int | None = None
    cpu: float | None = None
    if pid and profile.has_guest_workspace:
        if profile.real_vm:
            memory, cpu = _vm_usage(int(pid))
        else:
            memory, cpu = sandbox_usage(container_id(record["workspace_id"]))
    return {
        "disk_used_bytes": _disk_used(layout, profile.has_guest_workspace, profile.real_vm, pid),
        "disk_limit_bytes": record["disk_mib"] * MIB if profile.has_guest_workspace else None,
        "memory_used_bytes": memory,
        "cpu_time_seconds": None if cpu is None else round(cpu, 3),
    }


def _disk_used(layout: WorkspaceLayout, image: bool, real_vm: bool, pid: int | None) -> int | None:
    """The ext4 image's used blocks: seen through the supervisor's own mount (gVisor, which
    mounts it in its private namespace), else the image's allocated size."""
    if not image:
        return None
    if pid and not real_vm:
        mounted = Path(f"/proc/{pid}/root{layout.volume_dir}")
        try:
            if os.stat(mounted).st_dev != os.stat(mounted.parent).st_dev:
                fs = os.statvfs(mounted)
                return (fs.f_blocks - fs.f_bfree) * fs.f_frsize
        except OSError:
            pass
    try:
        return os.stat(layout.disk).st_blocks * 512
    except OSError:
        return None


def _vm_usage(supervisor_pid: int) -> tuple[int | None, float | None]:
    """The QEMU process among the supervisor's children: its resident set and CPU time."""
    for pid in _children(supervisor_pid):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if comm.startswith("qemu"):
            rss = next(
                (line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")), None
            )
            return (int(rss) * 1024 if rss else None), process_seconds([pid])
    return None, None


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            continue
    return out
