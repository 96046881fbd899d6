"""Where one workspace's files live on the host: a private directory per workspace."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from ..engines.profile import profile_of
from ..errors import StateError, ValidationError
from ..guest.tree import remove_tree
from ..paths import private_dir
from . import blank_disk, image_chunks

WORKSPACE_IMAGE, SYSTEM_IMAGE = "workspace.img", "system.img"  # in a full snapshot's directory
DEFAULT_DISK_MIB = 8192  # a workspace disk's size unless its create says otherwise (sparse)


def uses_image(engine: str) -> bool:
    """Every sandbox engine keeps /workspace in an ext4 image of ``disk_mib`` (a VM's disk;
    gVisor loop-mounts it, see volume_mount.py); host compat keeps a plain directory."""
    return profile_of(engine).has_guest_workspace


class WorkspaceLayout:
    def __init__(self, home: Path, workspace_id: str) -> None:
        self.root = home / "workspaces" / workspace_id

    def create(self) -> None:
        private_dir(self.root.parent)
        private_dir(self.root)
        private_dir(self.runtime_dir)
        private_dir(self.snapshots_dir)

    @property
    def runtime_dir(self) -> Path:
        return self.root / "runtime"

    @property
    def volume_dir(self) -> Path:
        """/workspace for engines that mount a host directory (gvisor, host compat)."""
        return self.root / "volume"

    @property
    def disk(self) -> Path:
        """/workspace for sandbox engines: an ext4 disk image (gVisor mounts it at volume_dir)."""
        return self.root / "workspace.ext4"

    @property
    def system_disk(self) -> Path:
        """The system layer's ext4 image: the root's upper layer (workspaces/system_layer.py)."""
        return self.root / "system.ext4"

    @property
    def system_dir(self) -> Path:
        """gVisor: where the supervisor mounts the system image (upper/ and work/ in it)."""
        return self.root / "system"

    @property
    def rootfs_dir(self) -> Path:
        """gVisor: the overlay (environment rootfs + system layer) runsc gets as its root."""
        return self.root / "rootfs"

    @property
    def memory_image(self) -> Path:
        """A suspended VM's memory (`stop --suspend`, QEMU): the next start resumes from it."""
        return self.root / "memory.state"

    @property
    def pending_seed(self) -> Path:
        """A seed the supervisor unpacks into the mounted image before the first boot."""
        return self.root / "seed-pending.tar"

    @property
    def socket(self) -> Path:
        return self.root / "supervisor.sock"

    @property
    def status(self) -> Path:
        return self.root / "supervisor.status"

    @property
    def log(self) -> Path:
        return self.root / "supervisor.log"

    @property
    def supervisor_pids(self) -> Path:
        """A line ``pid:start-time`` per supervisor process started (owners.supervisors)."""
        return self.root / "supervisor.pids"

    @property
    def baseline(self) -> Path:
        return self.root / "baseline.tar"

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def snapshots_dir(self) -> Path:
        return self.root / "snapshots"

    def fresh_volume(
        self, image: bool, disk_mib: int = DEFAULT_DISK_MIB, source: Path | None = None
    ) -> None:
        """An empty /workspace: a new directory, or a new sparse ext4 disk of ``disk_mib``
        (a disk in use stays intact: it is replaced, not truncated); with ``source`` (a
        full snapshot's directory, images.py) a copy of the disk it holds."""
        if image:
            if self.volume_dir.is_dir() and not os.path.ismount(self.volume_dir):
                remove_tree(str(self.volume_dir))  # a gVisor /workspace of an older version
            with blank_disk.replacing(self.disk) as new:
                if source is not None:
                    image_chunks.restore(source, WORKSPACE_IMAGE, new)
                else:
                    blank_disk.make(self.root.parent.parent, new, disk_mib)
        else:
            remove_tree(str(self.volume_dir))
            self.volume_dir.mkdir(mode=0o755)

    def replace_volume(self) -> Path:
        """A new empty /workspace directory; the old one is moved aside (its sandbox may
        still be running) and returned, for the caller to remove once that sandbox is gone."""
        sweep(self.root.parent.parent)
        aside = self.root / f"{OLD_VOLUME_PREFIX}{uuid.uuid4().hex[:8]}"
        if self.volume_dir.exists():
            self.volume_dir.rename(aside)
        self.volume_dir.mkdir(mode=0o755)
        return aside

    def leave_seed(self, seed: bytes | Path) -> None:
        """``seed`` (a tar's bytes or file) left for the supervisor to unpack
        (``pending_seed``): a hard link to the baseline when that holds these very bytes (a
        create's seed, a stopped workspace's reset), which spares writing them again; else
        a new file."""
        self.pending_seed.unlink(missing_ok=True)
        try:
            if (isinstance(seed, Path) and os.path.samefile(seed, self.baseline)) or (
                isinstance(seed, bytes)
                and self.baseline.stat().st_size == len(seed)
                and self.baseline.read_bytes() == seed
            ):
                os.link(self.baseline, self.pending_seed)
                return
        except OSError:
            pass
        if isinstance(seed, bytes):
            self.pending_seed.write_bytes(seed)
        else:
            shutil.copyfile(seed, self.pending_seed)

    def unpack_into_volume(self, tar: bytes | Path) -> dict[str, Any]:
        """Fill a fresh, empty /workspace directory (gVisor, host compat) from a seed or the
        baseline (its bytes, or its file: read as a stream, any size) before a sandbox uses
        it: the agent's own checked unpacking (no ``..``, no absolute names, no links out,
        no symlinked parents; every path opened under the root with O_NOFOLLOW), without
        streaming the bytes through the sandbox.

        Only for archives the host made from validated input (seeds, the baseline). A named
        snapshot came out of the guest and may hold links pointing anywhere: it is always
        unpacked inside the guest.
        """
        from ..guest import archive
        from .archive_rules import validate_file

        root = str(self.volume_dir)
        try:
            with contextlib.ExitStack() as stack:
                file = (
                    io.BytesIO(tar)
                    if isinstance(tar, bytes)
                    else stack.enter_context(tar.open("rb"))
                )
                validate_file(file, file.seek(0, os.SEEK_END))  # the host's stricter rules, again
                file.seek(0)
                result = archive.unpack(root, file, root=root)
        except ValueError as exc:
            raise ValidationError(guest_view(str(exc), root)) from exc
        except OSError as exc:
            if exc.errno == errno.ENOSPC and self.disk.exists():  # the image is disk_mib big
                raise disk_full(exc, self.disk.stat().st_size // (1024 * 1024)) from exc
            message = guest_view(str(exc), root)
            raise StateError(f"cannot unpack into /workspace: {message}") from exc
        return {**result, "destination": "/workspace"}

    def remove(self) -> None:
        """Delete this workspace's files. The directory is first renamed to a trash name (one
        atomic step: raises if that fails, so the caller can keep its record and retry),
        then removed; whatever a failure or a crash leaves is swept later (:func:`sweep`)."""
        trash = self.root.parent / f"{TRASH_PREFIX}{self.root.name}-{uuid.uuid4().hex[:8]}"
        try:
            self.root.rename(trash)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StateError(f"cannot delete {self.root}: {exc.strerror or exc}") from None
        remove_quietly(trash)


def archive_limit(disk_mib: int) -> int:
    """The most bytes any archive into or out of a workspace may hold: twice its disk limit
    (tar headers of empty files and directories, files the guest made sparse). Within it a
    too-large archive fails on the workspace's full disk; past it, it is refused unread."""
    return 2 * int(disk_mib) * 1024 * 1024


def disk_full(exc: Exception, disk_mib: int | None) -> Exception:
    """ENOSPC while filling /workspace as one line naming the disk limit (else ``exc``)."""
    if "No space left on device" not in str(exc):
        return exc
    return StateError(
        "/workspace is full (No space left on device): the workspace's disk limit is "
        f"{disk_mib} MiB (disk_mib)"
    )


TRASH_PREFIX = ".trash-"
"""Deleted workspace directories, renamed in ``<home>/workspaces`` before their removal."""
OLD_VOLUME_PREFIX = "volume.old-"
"""A gVisor /workspace moved aside by a reset, removed once its sandbox is gone."""


def remove_quietly(path: Path) -> None:
    """Remove a tree whose leftovers :func:`sweep` finds (trash, old volumes) if this fails."""
    with contextlib.suppress(OSError):
        remove_tree(str(path))


def sweep(home: Path) -> None:
    """Remove what crashed or failed operations left in ``home``: half-deleted workspaces
    and old /workspace volumes of resets. The one home of this clean-up; every call that
    reads the workspace records runs it (cheap when there is nothing to do)."""
    try:
        entries = list(os.scandir(home / "workspaces"))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith(TRASH_PREFIX):
            remove_quietly(Path(entry.path))
        elif entry.is_dir(follow_symlinks=False):
            stale: list[str] = []
            with contextlib.suppress(OSError), os.scandir(entry.path) as inner:
                stale = [e.path for e in inner if e.name.startswith(OLD_VOLUME_PREFIX)]
            for path in stale:
                remove_quietly(Path(path))


def guest_view(message: str, root: str) -> str:
    """Errors name /workspace paths, never the host directory behind them."""
    return message.replace(root, "/workspace")
