"""Host programs started the same way from several places: one home each.

``MKFS_EXT4`` and ``mkfs_ext4``: every ext4 filesystem this project makes (environment images,
blank workspace disks, exported disks). ``start_detached``: a long-lived process in its own
session whose output goes to a log file (a QEMU guest, a workspace supervisor).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# mkfs.ext4 quiet, forced (a file, not a device), no blocks reserved for root.
MKFS_EXT4 = ("mkfs.ext4", "-q", "-F", "-m", "0")


def mkfs_ext4(
    target: str | os.PathLike[str], *options: str, size_mib: int | None = None
) -> list[str]:
    """The argv of ``MKFS_EXT4`` for ``target``, ``options`` as mkfs.ext4 takes them (-L, -E,
    -d …)."""
    size = [f"{size_mib}M"] if size_mib is not None else []
    return [*MKFS_EXT4, *options, os.fspath(target), *size]


def start_detached(cmd: Sequence[str], log: Path, **options: Any) -> subprocess.Popen[bytes]:
    """``cmd`` in a new session, stdin closed, stdout and stderr appended to ``log``;
    ``options`` go to Popen (cwd, pass_fds …)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            **options,
        )
