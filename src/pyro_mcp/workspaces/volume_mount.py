"""A gVisor workspace's /workspace: its sparse ext4 image, loop-mounted on the host inside
the supervisor's own mount namespace.

gVisor bind-mounts a host directory as /workspace, and a plain directory has no size limit
(a guest could fill the host's disk). So the directory is the mount point of the
workspace's ext4 image (``disk_mib`` big, as a VM's disk): the guest gets ENOSPC at the
limit. The mount is made in a private mount namespace of the supervisor, which runsc
inherits: nobody else on the host sees it, and it goes away by itself (the loop device with
it, ``autoclear``) when the supervisor and its sandbox end, however they end.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import SandboxError
from . import loopdev
from .layout import WorkspaceLayout, uses_image

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
# An earlier sandbox of this workspace may still be ending (its mount with it).
BUSY_WAIT_SECONDS = 15.0


# Why this process has no private mount namespace (a property of the whole process).
NAMESPACE = {"error": "the supervisor did not make its private mount namespace"}


def private_namespace() -> None:
    """Move this (single-threaded) process into a new mount namespace whose mounts never
    propagate to the host (if it cannot, a mount later says why)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        NAMESPACE["error"] = f"unshare: {os.strerror(ctypes.get_errno())}"
    elif libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        NAMESPACE["error"] = f"making / private: {os.strerror(ctypes.get_errno())}"
    else:
        NAMESPACE.pop("error")


def is_mounted(target: Path) -> bool:
    return os.path.ismount(target)


def _loop_users(image: Path) -> list[str] | str:
    found = loopdev.users(image)
    if found is not None:
        return found
    result = subprocess.run(
        ["losetup", "-j", str(image)], capture_output=True, text=True, check=False
    )
    return result.stdout.strip()


def mount(image: Path, target: Path, what: str = "workspace disk") -> None:
    """Mount ``image`` on ``target`` (in this process's private namespace)."""
    if "error" in NAMESPACE:
        raise SandboxError(f"cannot mount the {what} ({NAMESPACE['error']})")
    deadline = time.monotonic() + BUSY_WAIT_SECONDS
    while _loop_users(image):  # never two mounts of one ext4 image at once
        if time.monotonic() > deadline:
            raise SandboxError(f"the {what} is still in use by an earlier sandbox")
        time.sleep(0.1)
    target.mkdir(mode=0o755, exist_ok=True)
    try:
        loopdev.mount(image, target)
    except loopdev.Unsupported:
        _mount_command(image, target, what)
    except OSError as exc:
        raise SandboxError(f"cannot mount the {what}: {exc.strerror or exc}") from None
    with contextlib.suppress(OSError):  # mkfs's, not the user's (as the VM guest does)
        os.rmdir(target / "lost+found")


def _mount_command(image: Path, target: Path, what: str) -> None:
    result = subprocess.run(
        ["mount", "-t", "ext4", "-o", "loop,nosuid,nodev", str(image), str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        why = result.stderr.strip().splitlines()[:1] or ["mount failed"]
        raise SandboxError(f"cannot mount the {what}: {why[0]}")


def detach(target: Path) -> None:
    """Lazy unmount: a sandbox still using the old mount keeps it until it ends."""
    if is_mounted(target):
        loopdev.detach(target)


def prepare(layout: WorkspaceLayout) -> None:
    """Before a gVisor sandbox boots: its image mounted at the volume directory (unless it
    is already; a workspace made before 3.7 has a plain directory, as it was)."""
    if layout.disk.exists() and not is_mounted(layout.volume_dir):
        mount(layout.disk, layout.volume_dir)


class Filling:
    """A host-made seed unpacked into the (mounted) /workspace directory beside the boot of
    the sandbox that shows it, instead of before: gVisor revalidates what its mounts show
    (runsc's default ``--file-access-mounts=shared``), so every file written here is seen,
    and nothing in the guest looks at /workspace before the supervisor has waited for this
    and answered. A seed the create left pending is removed once it is in."""

    def __init__(self, layout: WorkspaceLayout, tar: bytes | Path | None, pending: bool) -> None:
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        if tar is not None:
            self.thread = threading.Thread(
                target=self._run, args=(layout, tar, pending), daemon=True
            )
            self.thread.start()

    def _run(self, layout: WorkspaceLayout, tar: bytes | Path, pending: bool) -> None:
        try:
            self.result = layout.unpack_into_volume(tar)  # a file: read as a stream
            if pending:
                layout.pending_seed.unlink()
        except BaseException as exc:  # raised again by wait(), in the supervisor's thread
            self.error = exc

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()

    def wait(self) -> dict[str, Any] | None:
        """What was unpacked (None: there was nothing to unpack); raises what unpacking did."""
        self.join()
        if self.error is not None:
            raise self.error
        return self.result


def fill(layout: WorkspaceLayout, seed: bytes | Path | None) -> Filling:
    """Start unpacking ``seed`` (a reset's host-made tar), else a seed the create left
    pending (gVisor only), into /workspace; a Filling with nothing to do when neither."""
    if seed is None and layout.pending_seed.exists():
        return Filling(layout, layout.pending_seed, pending=True)
    return Filling(layout, seed, pending=False)


def replace(
    layout: WorkspaceLayout, record: dict[str, Any], source: Path | None = None
) -> Path | None:
    """A reset of a non-VM workspace: a new, empty /workspace while the old sandbox may
    still run. An image: the old mount detached (the old sandbox keeps it until it ends and
    the unlinked image is freed then), a new image made and mounted. Host compat: a new
    directory; the old one is returned, for the caller to remove once its sandbox is gone."""
    if not uses_image(record["engine"]):
        return layout.replace_volume()
    detach(layout.volume_dir)
    layout.fresh_volume(True, record["disk_mib"], source)  # or a full snapshot's copy
    mount(layout.disk, layout.volume_dir)
    return None
