"""Loop-mounting a workspace's ext4 image from the supervisor itself: the ioctls and mount
calls that ``losetup -j``, ``mount -o loop`` and ``umount -l`` would make, without starting
those programs (three processes per reset: ~35 ms here on a loaded host).

The loop device is set up with ``LOOP_CONFIGURE`` (Linux 5.8) and autoclear: it is freed by
the kernel when the mount using it goes, however its supervisor ends. Where the kernel or
``/dev`` cannot do this (:class:`Unsupported`) the caller runs the programs, as before.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import glob
import os
import struct
from pathlib import Path

LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LO_FLAGS_AUTOCLEAR = 4
MS_NOSUID = 2
MS_NODEV = 4
MNT_DETACH = 2
# struct loop_config: fd, block_size, struct loop_info64 (lo_flags at 52, lo_file_name at
# 56), reserved: 304 bytes.
LOOP_CONFIG = struct.Struct("=II40xIIII64s64s32s16x64x")
ATTEMPTS = 20  # free devices another process took between asking and configuring

_libc = ctypes.CDLL(None, use_errno=True)


class Unsupported(Exception):
    """This host cannot loop-mount from here: use the programs."""


def users(image: Path) -> list[str] | None:
    """The loop devices backed by ``image`` (read from sysfs, as ``losetup -j`` does; an
    unlinked image shows as ``... (deleted)`` there and is another image); None where there
    is no sysfs to read."""
    if not os.path.isdir("/sys/block"):
        return None
    wanted = os.path.realpath(image)
    found = []
    for path in glob.glob("/sys/block/loop*/loop/backing_file"):
        try:
            with open(path) as handle:
                if handle.read().rstrip("\n") == wanted:
                    found.append(path.split("/")[3])
        except OSError:
            continue  # a device being freed just now
    return found


def mount(image: Path, target: Path) -> None:
    """``image`` (ext4) mounted nosuid, nodev on ``target`` through a free loop device.
    Raises :class:`Unsupported`, or OSError when the mount itself fails."""
    try:
        ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise Unsupported from exc
    try:
        backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
        try:
            device, fd = _configure(ctl, backing, image)
        finally:
            os.close(backing)  # the loop device holds the file now
    finally:
        os.close(ctl)
    try:
        flags = MS_NOSUID | MS_NODEV
        if _libc.mount(device.encode(), os.fsencode(target), b"ext4", flags, None) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
    finally:
        os.close(fd)  # mounted: the mount keeps the device; if not, autoclear frees it now


def _configure(ctl: int, backing: int, image: Path) -> tuple[str, int]:
    name = os.fsencode(image)[:63]
    config = LOOP_CONFIG.pack(backing, 0, 0, 0, 0, LO_FLAGS_AUTOCLEAR, name, b"", b"")
    for _ in range(ATTEMPTS):
        device = f"/dev/loop{fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)}"
        try:
            fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError as exc:  # no device node appears here (a bare /dev)
            raise Unsupported from exc
        try:
            fcntl.ioctl(fd, LOOP_CONFIGURE, config)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ENOTTY, errno.EINVAL):  # a kernel before 5.8
                raise Unsupported from exc
            if exc.errno != errno.EBUSY:  # EBUSY: another process took it first
                raise
            continue
        return device, fd
    raise OSError(errno.EBUSY, "no free loop device")


def detach(target: Path) -> None:
    """Lazy unmount (a sandbox still using the mount keeps it until it ends)."""
    _libc.umount2(os.fsencode(target), MNT_DETACH)
