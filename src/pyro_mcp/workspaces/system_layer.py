"""A workspace's writable system layer: what the guest changes outside /workspace (an
`apt-get install`, `/etc`, `/usr/local`, a `pip install` into the system), kept on disk.

The layer is its own sparse ext4 image, ``system.ext4`` in the workspace's private directory,
``disk_mib`` big like /workspace's: that is its bound on the host's disk. The environment's
image stays the read-only lower layer and is never written.

- gVisor: the supervisor loop-mounts the image at ``system/`` in its private mount namespace
  (as /workspace's, see volume_mount.py) and mounts a host overlayfs at ``rootfs/``: lower the
  environment's rootfs directory, upper and work directories on the image. runsc gets that
  directory as its root with its own memory overlay off (engines/gvisor.py).
- VMs: the image is the VM's third disk; the agent puts the root's overlay on it in place of
  the tmpfs the initramfs mounted (guest/sysroot.py), after a boot template's restore too.

Stop/start keeps the image; a reset makes a new, empty one: a fresh system.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from ..errors import SandboxError
from . import blank_disk, image_chunks, volume_mount
from .layout import SYSTEM_IMAGE, WorkspaceLayout, uses_image

WHAT = "system disk"
T = TypeVar("T")


class Beside(Generic[T]):
    """``fn(*args)`` run in a thread beside the caller's own work (a boot or a reset makes
    /workspace meanwhile): ``result()`` waits for it and raises what it raised."""

    def __init__(self, fn: Callable[..., T], *args: Any) -> None:
        self.box: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, args=(fn, args), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> None:
        try:
            self.box["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller
            self.box["error"] = exc

    def result(self) -> T:
        self.thread.join()
        if "error" in self.box:
            raise self.box["error"]
        value: T = self.box["value"]
        return value


def image(layout: WorkspaceLayout, disk_mib: int) -> Path:
    """The workspace's system image, made empty if it has none yet."""
    if not layout.system_disk.exists():
        blank_disk.make(layout.root.parent.parent, layout.system_disk, disk_mib)
    return layout.system_disk


def fresh_image(layout: WorkspaceLayout, disk_mib: int, source: Path | None = None) -> Path:
    """A new, empty system image (one still in use stays intact: it is replaced), or a
    copy of the one in ``source`` (a full snapshot's directory, images.py)."""
    with blank_disk.replacing(layout.system_disk) as new:
        if source is not None:
            image_chunks.restore(source, SYSTEM_IMAGE, new)
        else:
            blank_disk.make(layout.root.parent.parent, new, disk_mib)
    return layout.system_disk


def mount_root(layout: WorkspaceLayout, lower: Path, disk_mib: int) -> Path:
    """gVisor: the overlay of ``lower`` and the system layer mounted at ``layout.rootfs_dir``
    (unless it is already), in this process's private mount namespace; its path."""
    if volume_mount.is_mounted(layout.rootfs_dir):
        return layout.rootfs_dir
    if any(c in str(lower) + str(layout.root) for c in ",:\\"):
        raise SandboxError(f"cannot mount the {WHAT}: a path holds ',', ':' or '\\'")
    if not volume_mount.is_mounted(layout.system_dir):
        volume_mount.mount(image(layout, disk_mib), layout.system_dir, WHAT)
    upper, work = layout.system_dir / "upper", layout.system_dir / "work"
    for path in (upper, work):
        path.mkdir(exist_ok=True)
    stat = lower.stat()  # the root directory keeps the environment's owner and mode
    os.chown(upper, stat.st_uid, stat.st_gid)
    os.chmod(upper, stat.st_mode & 0o7777)
    layout.rootfs_dir.mkdir(mode=0o755, exist_ok=True)
    options = f"lowerdir={lower},upperdir={upper},workdir={work}".encode()
    libc = ctypes.CDLL(None, use_errno=True)  # a mount(2), not a `mount` process
    target = str(layout.rootfs_dir).encode()
    if libc.mount(b"pyro-system", target, b"overlay", 0, options) != 0:
        error = os.strerror(ctypes.get_errno())
        raise SandboxError(f"cannot mount the system layer: {error}")
    return layout.rootfs_dir


def detach_root(layout: WorkspaceLayout) -> None:
    """Lazy unmounts: a sandbox still using the old root keeps it until it ends."""
    volume_mount.detach(layout.rootfs_dir)
    volume_mount.detach(layout.system_dir)


def boot_args(
    layout: WorkspaceLayout, record: dict[str, Any], lower: Path, real_vm: bool
) -> dict[str, Path]:
    """The system layer of a workspace's next sandbox, as ``Runtime.boot`` arguments: a VM's
    disk or gVisor's root directory (mounted here); none for host compat."""
    if not uses_image(record["engine"]):
        return {}
    if real_vm:
        return {"system_disk": image(layout, record["disk_mib"])}
    return {"root_dir": mount_root(layout, lower, record["disk_mib"])}


def renew(layout: WorkspaceLayout, record: dict[str, Any], source: Path | None = None) -> None:
    """A reset: a fresh system for the next sandbox (or the one of the full snapshot in
    ``source``). The old root is detached (a sandbox still on it keeps it until it ends)
    and a new image made; the next boot mounts it."""
    if uses_image(record["engine"]):
        detach_root(layout)
        fresh_image(layout, record["disk_mib"], source)
