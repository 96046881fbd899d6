"""A VM workspace's system layer, guest side (the host's half: workspaces/system_layer.py).

The initramfs put the root's overlay on a tmpfs (a boot template is saved that way, before
any workspace's disks are known). For a workspace the agent then moves the root onto its
system disk: the environment's image (read-only, mounted again) as the lower layer, the
disk's ``upper`` and ``work`` directories as the upper layer, the running mounts (/dev,
/run, /tmp) moved across, /proc and /sys mounted anew (PID 1 keeps the old ones: it powers
off through its /proc), the agent's package bound in, and the agent's root switched
(``switch_root``'s steps: move the new root onto ``/``, chroot). Every process started
after it (exec, shells, services) lives on the disk; the tmpfs root stays hidden.
"""

from __future__ import annotations

import contextlib
import os

from . import mounts
from .boot import drop_cached_blocks

MS_RDONLY = 1
MS_MOVE = 8192
MS_BIND = 4096
MS_REC = 16384
MNT_DETACH = 2
WORK = "/.pyro-sysroot"  # in the tmpfs root: hidden once the root moved
MOVED = ("/dev", "/run", "/tmp")
# Mounted again, not moved: PID 1 stays in the old root and powers off through its /proc.
FRESH = (("/proc", "proc"), ("/sys", "sysfs"))
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
DONE: list[str] = []  # the device the root moved onto (once per boot)
DISK_DIRS: list[int] = []  # the system disk's root, open: what a freeze names (freeze.py)


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    try:
        mounts.mount(source, target, fstype, flags, data or None)
    except OSError as exc:
        raise RuntimeError(f"cannot set up the system layer: {exc.strerror}") from None


def switch(device: str, lower_device: str = "/dev/vda") -> dict[str, str]:
    """Move the root's writable layer onto ``device`` (made an empty ext4 by the host or
    holding an earlier run's layer) and switch the agent's root to it."""
    if DONE:
        return {"system_disk": DONE[0]}
    drop_cached_blocks(device)  # a template's VM saw another disk here at probe time
    lower, disk, new = (f"{WORK}/{name}" for name in ("lower", "disk", "root"))
    for path in (lower, disk, new):
        os.makedirs(path, exist_ok=True)
    _mount(lower_device, lower, "ext4", MS_RDONLY)
    _mount(device, disk, "ext4", 0)
    upper, work = f"{disk}/upper", f"{disk}/work"
    for path in (upper, work):
        os.makedirs(path, exist_ok=True)
    root = os.stat(lower)  # the root directory keeps the environment's owner and mode
    os.chown(upper, root.st_uid, root.st_gid)
    os.chmod(upper, root.st_mode & 0o7777)
    _mount("pyro-system", new, "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={work}")
    DISK_DIRS.append(os.open(disk, os.O_RDONLY))  # still reachable once unmounted below
    for path in (lower, disk):  # the overlay holds its layers; nobody else needs them
        with contextlib.suppress(OSError):
            mounts.umount(path, MNT_DETACH)
    os.makedirs(f"{new}/opt/pyro", exist_ok=True)
    _mount("/opt/pyro", f"{new}/opt/pyro", None, MS_BIND | MS_REC)  # this agent's package
    for path in MOVED:
        os.makedirs(new + path, exist_ok=True)
        _mount(path, new + path, None, MS_MOVE)
    for path, kind in FRESH:
        os.makedirs(new + path, exist_ok=True)
        _mount(kind, new + path, kind, MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chdir(new)
    _mount(".", "/", None, MS_MOVE)
    os.chroot(".")
    os.chdir("/")
    DONE.append(device)
    return {"system_disk": device}
