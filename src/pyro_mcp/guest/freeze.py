"""A VM's file systems held still while the host copies its disk images (a full snapshot or
a fork, workspaces/images.py): /workspace and the system layer frozen (FIFREEZE flushes
each to its disk first), thawed when the host asks, or by a watchdog after the time the
host named, so a host that died mid-copy cannot leave the guest hung on a frozen disk."""

from __future__ import annotations

import fcntl
import os
import threading

from . import paths, sysroot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FIFREEZE = 0xC0045877
FITHAW = 0xC0045878
EXT4_RESERVED_INODES = 10
MAX_WATCHDOG_SECONDS = 120.0
STATE: dict[str, Any] = {"fds": [], "timer": None, "expired": False}
LOCK = threading.Lock()


def _thaw_all(expired: bool) -> bool:
    """Thaw what is frozen; True if the watchdog thawed it before the host asked."""
    with LOCK:
        if expired and STATE["fds"]:
            STATE["expired"] = True
        fds, STATE["fds"] = STATE["fds"], []
        timer, STATE["timer"] = STATE["timer"], None
        was = bool(STATE["expired"])
        if not expired:
            STATE["expired"] = False
    if timer is not None and not expired:
        timer.cancel()
    for fd in fds:
        try:
            fcntl.ioctl(fd, FITHAW, 0)
        except OSError:
            pass
        os.close(fd)
    return was


def entries(mount: str | os.PathLike[str]) -> int:
    """Files and directories on an ext4 mount (its used inodes, less the reserved ones): a
    snapshot's entry_count, in the guest and on the host (workspaces/images.py)."""
    stat = os.statvfs(mount)
    return max(0, stat.f_files - stat.f_ffree - EXT4_RESERVED_INODES)


def op_fs_freeze(args: dict[str, Any], data: bytes, emit: Any) -> dict[str, Any]:
    seconds = min(float(args.get("watchdog_seconds") or 10), MAX_WATCHDOG_SECONDS)
    targets: list[str | int] = [paths.ROOT, *sysroot.DISK_DIRS]
    _thaw_all(False)  # an earlier freeze the host never ended
    if not os.path.ismount(paths.ROOT):  # never the root's file system instead
        raise RuntimeError("cannot freeze the workspace's disks: /workspace is not mounted")
    count = entries(paths.ROOT)
    os.sync()
    fds: list[int] = []
    try:
        for target in targets:
            fds.append(os.dup(target) if isinstance(target, int) else os.open(target, os.O_RDONLY))
            fd = fds[-1]
            fcntl.ioctl(fd, FIFREEZE, 0)
    except OSError as exc:
        with LOCK:
            STATE["fds"] = fds
        _thaw_all(False)
        raise RuntimeError(f"cannot freeze the workspace's disks: {exc.strerror}") from None
    timer = threading.Timer(seconds, _thaw_all, args=(True,))
    timer.daemon = True
    with LOCK:
        STATE["fds"], STATE["timer"] = fds, timer
    timer.start()
    return {"entry_count": count, "frozen": len(fds)}


def op_fs_thaw(args: dict[str, Any], data: bytes, emit: Any) -> dict[str, Any]:
    return {"expired": _thaw_all(False)}
