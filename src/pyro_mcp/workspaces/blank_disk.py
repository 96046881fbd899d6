"""Empty workspace disks: a sparse ext4 image of ``disk_mib``, copied from a blank one.

``mkfs.ext4`` costs every create and reset a process, ~10 ms of CPU and a flush to the
host's disk; copying the few MiB of an identical blank image made once per size (kept in
``<home>/runtime/disk-templates``, named by size and mkfs command) costs ~2 ms. The copy
keeps the holes (``SEEK_DATA``/``SEEK_HOLE``), so every disk stays as sparse as mkfs makes
it; where that cannot be done (a file system without hole reporting, a template gone wrong)
the disk is made by mkfs itself, as before. The template is written under a temporary name
and renamed in whole: a copy never reads a half-made one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

from ..errors import PyroError
from ..hostcmd import MKFS_EXT4
from ..paths import private_dir
from ..validation import operator_setting

MKFS = [
    *MKFS_EXT4,
    "-L",
    "workspace",
    "-E",
    "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0",
]
TEMPLATE_DIR = "disk-templates"  # under <home>/runtime
SLACK_BYTES = 1024 * 1024  # data a copy may find beyond the template's allocated blocks


def mkfs(path: Path, disk_mib: int) -> None:
    """A new sparse file of ``disk_mib`` at ``path`` (which must not exist), made ext4."""
    with path.open("xb") as handle:
        handle.truncate(disk_mib * 1024 * 1024)
    result = subprocess.run([*MKFS, str(path)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        path.unlink(missing_ok=True)
        why = next((line for line in result.stderr.splitlines() if line.strip()), "mkfs failed")
        raise PyroError(f"cannot create the workspace disk: {why.strip()}")


def template(home: Path, disk_mib: int) -> Path:
    """The blank image of ``disk_mib`` (made now if there is none)."""
    digest = hashlib.sha256("\0".join(MKFS).encode()).hexdigest()[:12]
    directory = private_dir(private_dir(home / "runtime") / TEMPLATE_DIR)
    path = directory / f"{disk_mib}-{digest}.ext4"
    if not path.is_file():
        partial = directory / f".{path.name}.{uuid.uuid4().hex[:8]}"
        try:
            mkfs(partial, disk_mib)
            os.replace(partial, path)  # another process may have made it too: same bytes
        finally:
            partial.unlink(missing_ok=True)
    return path


def data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """(offset, length) of each stretch of ``fd`` that is not a hole."""
    extents, offset = [], 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError:  # ENXIO: nothing but a hole from here on
            break
        end = os.lseek(fd, start, os.SEEK_HOLE)
        extents.append((start, end - start))
        offset = end
    return extents


def copy_sparse(source: Path, target: Path) -> bool:
    """Copy ``source`` to a new ``target`` hole for hole; False (nothing left at ``target``)
    if its holes cannot be told apart (the copy would be as big as the disk)."""
    with source.open("rb") as src:
        info = os.fstat(src.fileno())
        extents = data_extents(src.fileno(), info.st_size)
        if sum(length for _, length in extents) > info.st_blocks * 512 + SLACK_BYTES:
            return False
        with target.open("xb") as dst:
            try:
                for start, length in extents:
                    done = 0
                    while done < length:
                        copied = os.copy_file_range(
                            src.fileno(), dst.fileno(), length - done, start + done, start + done
                        )
                        if copied == 0:
                            raise OSError(f"{source} ended early")
                        done += copied
                dst.truncate(info.st_size)
            except BaseException:
                target.unlink(missing_ok=True)
                raise
    return True


def copy_image(source: Path, target: Path) -> None:
    """The one copy of a disk image (snapshots, reset to one, fork): ``source`` to a new
    ``target``. Where the file system can (btrfs, XFS with reflinks) it is a clone: no data
    is written and no space used until either side changes a block. Elsewhere (ext4) it is
    a sparse copy of the data by ``copy_file_range``, hole for hole (a plain copy where
    holes cannot be told apart), refused if it would leave the host's disk below the
    operator's reserve (``check_room``)."""
    if clone(source, target):
        return
    info = os.stat(source)
    extents = sum(length for _, length in _extents_of(source, info.st_size))
    sparse = extents <= info.st_blocks * 512 + SLACK_BYTES
    check_room(target.parent, info.st_blocks * 512 if sparse else info.st_size)
    try:
        if copy_sparse(source, target):
            return
    except OSError:
        target.unlink(missing_ok=True)
        raise
    shutil.copyfile(source, target)


FICLONE = 0x40049409  # ioctl: the whole of one file's blocks shared into another


def clone(source: Path, target: Path) -> bool:
    """``target`` made a clone of ``source`` (False, nothing left, where that cannot be)."""
    with source.open("rb") as src, target.open("xb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
            return True
        except OSError:  # EOPNOTSUPP, EXDEV, EINVAL …: no shared blocks here
            pass
    target.unlink(missing_ok=True)
    return False


def _extents_of(path: Path, size: int) -> list[tuple[int, int]]:
    with path.open("rb") as handle:
        return data_extents(handle.fileno(), size)


MIN_FREE_SETTING = "PYRO_MIN_FREE_MIB"
MIN_FREE_DEFAULT_MIB = 1024


def min_free_mib() -> int:
    """The host disk space snapshots and forks leave free (``PYRO_MIN_FREE_MIB``, default
    1 GiB), read when used."""
    return operator_setting(MIN_FREE_SETTING, MIN_FREE_DEFAULT_MIB, 0, "MiB")


def check_room(directory: Path, needed: int) -> None:
    """Refuse a copy that writes ``needed`` bytes and would leave the host's disk under the
    operator's reserve: a model taking snapshot after snapshot (or fork after fork) is
    stopped there, the host's disk never filled."""
    free = shutil.disk_usage(directory).free
    reserve = min_free_mib() * 1024 * 1024
    if free - needed < reserve:
        raise PyroError(
            f"not enough free disk on the host for this copy: it needs {needed >> 20} MiB, "
            f"{free >> 20} MiB are free and {reserve >> 20} MiB stay free "
            f"({MIN_FREE_SETTING}); delete snapshots or workspaces first"
        )


@contextlib.contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """Where to make the new image for ``target`` (a reset's): it is put in place whole, by
    a rename, once the block ends. A process killed meanwhile leaves ``target`` as it was
    (and a ``.partial`` file), never missing or half copied, which no start could mount;
    the old image, if a sandbox still uses it, stays intact (it is unlinked, not changed)."""
    partial = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        yield partial
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def make(home: Path, target: Path, disk_mib: int) -> None:
    """A blank workspace disk of ``disk_mib`` at ``target`` (which must not exist)."""
    try:
        if copy_sparse(template(home, disk_mib), target):
            return
    except OSError:
        target.unlink(missing_ok=True)  # e.g. no copy_file_range here: mkfs, as before
    mkfs(target, disk_mib)
