"""Full snapshots and forks: a workspace's two disk images (/workspace's and the system
layer's, see layout.py) copied while the file systems on them are quiesced.

A fork's copy is ``blank_disk.copy_image``: a clone (copy-on-write, no data written) when
PYRO_HOME is on btrfs or XFS, a sparse copy elsewhere. A snapshot is a clone too where the
home can; elsewhere its images are kept as chunks shared with the workspace's earlier
snapshots (image_chunks.py), so an unchanged workspace's next snapshot writes next to
nothing. Quiescing:

- gVisor: the supervisor mounts both images on the host, in its private mount namespace
  (volume_mount.py, system_layer.py). The guest's ``sync`` writes what gVisor's own page
  cache holds back to the host files, then each host file system is frozen (``FIFREEZE``
  flushes it to its image first) for the copy and thawed after, in a ``finally``.
- VMs: the guest agent freezes /workspace and the system layer itself (``fs_freeze``,
  guest/freeze.py) and the host copies the image files, then asks it to thaw. QEMU opens
  the disks ``cache=writeback``: what the guest flushed is in the host's page cache, which
  the copy reads.

A freeze never outlasts ``WATCHDOG_SECONDS`` (a frozen file system hangs every writer in the
guest): a watchdog thaws it (on the host, and in the guest for a host that never asks), and
a copy that took longer is refused, never kept half-consistent. On the host a guard process
thaws it too if the supervisor is killed mid-copy (``Freeze``, ``GUARD``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NotFoundError, PyroError, SandboxError, StateError
from ..guest.freeze import FIFREEZE, FITHAW, entries
from . import blank_disk, image_chunks
from .layout import SYSTEM_IMAGE, WORKSPACE_IMAGE, WorkspaceLayout, remove_quietly

if TYPE_CHECKING:
    from ..engines.base import Sandbox
    from .supervisor import Supervisor

WATCHDOG_SECONDS = 20.0
COPY_OP = "supervisor_copy_images"  # the supervisor's own op (supervisor.py)
PARTIAL = ".partial-"  # in the name of a snapshot directory still being copied


def sources(layout: WorkspaceLayout) -> dict[str, Path]:
    """A workspace's images by the names a snapshot (or a fork's copy) gives them."""
    return {WORKSPACE_IMAGE: layout.disk, SYSTEM_IMAGE: layout.system_disk}


def partial(snapshots_dir: Path, name: str) -> Path:
    """Where a full snapshot's copy is made before it is renamed to its name (a crash
    mid-copy leaves it: ``remove_partials``)."""
    return snapshots_dir / f".{name}{PARTIAL}{uuid.uuid4().hex[:8]}"


def remove_partials(layout: WorkspaceLayout) -> list[str]:
    """A supervisor's boot: the partial snapshot copies (directories) a crash left, removed.
    Only the supervisor writes snapshot directories and none serves this workspace yet, so
    every one is stale (a tar snapshot's partial file is its client's). Their names."""
    stale = sorted(p for p in layout.snapshots_dir.glob(f".*{PARTIAL}*") if p.is_dir())
    for path in stale:
        remove_quietly(path)
    return [path.name for path in stale]


NAMES = (WORKSPACE_IMAGE, SYSTEM_IMAGE)  # a full snapshot's images


def has_images(directory: Path) -> bool:
    """Whether ``directory`` holds both images (a snapshot's: whole, or as chunks)."""
    return all(image_chunks.is_kept(directory, name) for name in NAMES)


def copy_images(images: dict[str, Path], dest: Path, optional: tuple[str, ...] = ()) -> int:
    """The images (``sources`` of a workspace, or a snapshot's) copied into the directory
    ``dest`` under their names, one in ``optional`` only if it exists; the disk bytes the
    copies use (none for a clone). The one loop of snapshots, fork and their resets."""
    for name, source in images.items():
        if name not in optional or source.exists():
            blank_disk.copy_image(source, dest / name)
    return used_bytes(dest)


def keep_images(images: dict[str, Path], dest: Path, snapshots_dir: Path) -> int:
    """A snapshot's copy: each image cloned into ``dest`` where the home can, else kept as
    chunks shared with the finished snapshots in ``snapshots_dir`` (image_chunks.py); the
    data bytes written (a clone writes none)."""
    held: dict[str, Path] | None = None
    written = 0
    for name, source in images.items():
        if blank_disk.clone(source, dest / name):
            continue
        if held is None:
            held = image_chunks.known(snapshots_dir)
        written += image_chunks.save(source, dest, name, held)
    return written


def restore_images(snapshot: Path, dest: Path) -> int:
    """Both images of the full snapshot in ``snapshot`` made anew in ``dest`` (a fork's);
    the disk bytes they use."""
    for name in (WORKSPACE_IMAGE, SYSTEM_IMAGE):
        image_chunks.restore(snapshot, name, dest / name)
    return used_bytes(dest)


def used_bytes(directory: Path) -> int:
    """The disk space the images in ``directory`` take (their allocated blocks)."""
    total = 0
    for name in (WORKSPACE_IMAGE, SYSTEM_IMAGE):
        with contextlib.suppress(FileNotFoundError):
            total += (directory / name).stat().st_blocks * 512
    return total


# The guard (a process of its own session, so a kill of the supervisor's group spares it):
# it holds the frozen directories' descriptors and thaws them when its stdin ends (the
# freezer thawed them, or was killed: the kernel keeps a file system frozen after its
# freezer died, and its loop device then blocks every later mount of that image), or after
# its own watchdog. Unthawed file systems are refused (EINVAL): harmless.
GUARD = (
    "import fcntl,select,sys\n"
    "select.select([0],[],[],float(sys.argv[1]))\n"
    "for fd in sys.argv[2:]:\n"
    f" try: fcntl.ioctl(int(fd),{FITHAW},0)\n"
    " except OSError: pass\n"
)
GUARD_SLACK_SECONDS = 5.0


class Freeze:
    """File systems frozen by FIFREEZE on an open directory of each, thawed by ``thaw()``
    or by a watchdog after ``seconds``; ``expired`` says the watchdog came first. A guard
    process thaws them too if this process dies meanwhile (``GUARD``)."""

    def __init__(self, seconds: float) -> None:
        self.fds: list[int] = []
        self.lock = threading.Lock()
        self.expired = False
        self.seconds = seconds
        self.timer = threading.Timer(seconds, self._expire)
        self.timer.daemon = True
        self.guard: subprocess.Popen[bytes] | None = None

    def freeze(self, paths: list[str]) -> None:
        """Freeze the file system mounted at each (a failure thaws those frozen already and
        raises). Only mount points: a plain directory would freeze the host's file system
        that holds it."""
        try:
            for path in paths:
                if not os.path.ismount(path):
                    raise OSError(errno.EINVAL, f"{path} is not mounted")
                self.fds.append(os.open(path, os.O_RDONLY | os.O_DIRECTORY))
            self._start_guard()  # before the first freeze: no window without it
            for fd in self.fds:
                fcntl.ioctl(fd, FIFREEZE, 0)  # the kernel syncs the file system first
            self.timer.start()
        except OSError as exc:
            self.thaw()
            raise SandboxError(f"cannot freeze the workspace's disks: {exc.strerror}") from None

    def _start_guard(self) -> None:
        limit = self.seconds + GUARD_SLACK_SECONDS
        self.guard = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", GUARD, str(limit), *map(str, self.fds)],
            stdin=subprocess.PIPE,
            pass_fds=self.fds,
            start_new_session=True,
        )

    def _expire(self) -> None:
        self.expired = True
        self.thaw()

    def thaw(self) -> bool:
        """Thaw all (at most once); True if the watchdog had thawed them first."""
        self.timer.cancel()
        with self.lock:
            fds, self.fds = self.fds, []
            guard, self.guard = self.guard, None
        for fd in fds:
            with contextlib.suppress(OSError):
                fcntl.ioctl(fd, FITHAW, 0)
            os.close(fd)
        if guard is not None:  # it ends now, and is reaped: never a thaw of a later freeze
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                guard.communicate(timeout=10)
        return self.expired


@contextlib.contextmanager
def quiesced(sandbox: Sandbox, layout: WorkspaceLayout) -> Iterator[dict[str, Any]]:
    """The workspace's file systems still while the block runs; yields what the freeze
    saw (``entry_count``: /workspace's files and directories)."""
    if sandbox.info.real_vm:
        args = {"watchdog_seconds": WATCHDOG_SECONDS}
        info, _ = sandbox.client.call("fs_freeze", args, timeout=60)
        try:
            yield info
        finally:
            thawed, _ = sandbox.client.call("fs_thaw", timeout=30)
        expired = bool(thawed.get("expired"))
    else:
        sandbox.client.call("sync", timeout=60)  # gVisor's own cache, to the host's files
        freeze = Freeze(WATCHDOG_SECONDS)
        freeze.freeze([str(layout.volume_dir), str(layout.system_dir)])
        try:
            yield {"entry_count": entries(layout.volume_dir)}
        finally:
            expired = freeze.thaw()
    if expired:
        raise SandboxError(f"the copy took longer than the {WATCHDOG_SECONDS:g} s freeze allows")


def inside(path: Any, home: Path) -> Path:
    """``path`` as a directory under ``home``'s workspaces (what a client may name)."""
    where = Path(str(path or ""))
    root = (home / "workspaces").resolve()
    if not where.is_absolute() or not where.resolve().is_relative_to(root) or not where.is_dir():
        raise StateError(f"{where} is not a directory of this pyro home")
    return where


def snapshot_at(path: Any, home: Path) -> Path:
    """The full snapshot a reset names (``inside`` the home): one deleted since the client
    found it does not exist, in one line (never a host path)."""
    where = Path(str(path or ""))
    under = where.is_absolute() and where.resolve().is_relative_to(home.resolve())
    if under and not has_images(where):
        raise NotFoundError(f"snapshot {where.name!r} does not exist")
    return inside(where, home)


def serve_copy(sup: Supervisor, args: dict[str, Any]) -> dict[str, Any]:
    """The supervisor's side: both images copied into ``args["dest"]`` while quiesced (kept
    as a snapshot's with ``args["snapshot"]``, else whole images, a fork's)."""
    dest = inside(args.get("dest"), sup.runtime.home)
    with sup.reboot_lock:  # the sandbox is not replaced meanwhile
        sandbox = sup.sandbox
        if sandbox is None:
            raise StateError("the workspace is restarting")
        with quiesced(sandbox, sup.layout) as info:
            if args.get("snapshot"):
                used = keep_images(sources(sup.layout), dest, sup.layout.snapshots_dir)
            else:
                used = copy_images(sources(sup.layout), dest)
    return {"entry_count": int(info.get("entry_count", 0)), "bytes_written": used}


def answer(sup: Supervisor, req_id: Any, args: dict[str, Any]) -> dict[str, Any]:
    """``serve_copy``'s reply frame (an error is one line)."""
    try:
        return {"id": req_id, "ok": True, "result": serve_copy(sup, args)}
    except Exception as exc:
        error = str(exc) if isinstance(exc, PyroError) else f"copy failed: {exc}"
        return {"id": req_id, "ok": False, "error": error, "kind": "failed"}
