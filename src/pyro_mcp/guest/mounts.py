"""mount(2) and umount2(2) for the agent, through libc (ctypes is loaded at the first call).

A `mount` process costs the guest ~0.1 s of CPU in gVisor (an exec through its gofer); the
system call itself, microseconds.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes


@functools.cache
def libc() -> ctypes.CDLL:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _errno() -> int:
    import ctypes

    return ctypes.get_errno()


def mount(
    source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    """mount(2); an OSError with its errno if it fails."""
    encoded = [None if v is None else v.encode() for v in (source, target, fstype, data or None)]
    if libc().mount(encoded[0], encoded[1], encoded[2], flags, encoded[3]) != 0:
        error = _errno()
        raise OSError(error, f"mount {target}: {os.strerror(error)}")


def umount(target: str, flags: int = 0) -> None:
    """umount2(2); an OSError with its errno if it fails."""
    if libc().umount2(target.encode(), flags) != 0:
        error = _errno()
        raise OSError(error, f"umount {target}: {os.strerror(error)}")
