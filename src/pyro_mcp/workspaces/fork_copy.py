"""A fork's copy of the disk images: the child's staging directory, and the copy of a
stopped source.

The child's supervisor is launched while the images are copied (its Python start-up costs
about as much as the copy): the fork holds an exclusive ``flock`` on the child's staging
directory (``Staging``) until the images are in place, and the supervisor's first step
(``before_boot``) waits on that lock before it mounts anything. A staging directory still
there once the lock is free is what a fork that died part-way left: it is removed and the
boot fails (the create's sweep removes the rest).

A stopped workspace's two images are quiet: the fork copies them on the host itself (no
supervisor, no freeze). Only the images: a suspended QEMU source's ``memory.state`` stays
with the source, and the child boots a fresh system from the copied disks.

While the copy runs the source is held under the store's owner mechanism (owners.py), with
the kind ``copy``: a start or a reset of it (``WorkspaceLifecycle.admit_start``) waits until
the copy is done, and a fork never copies a source another client is starting. A copier
that dies leaves its name behind; the next sweep drops it (its source is still stopped).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SandboxError, StateError
from . import images, owners
from .layout import SYSTEM_IMAGE, remove_quietly

if TYPE_CHECKING:
    from .handle import Handle
    from .layout import WorkspaceLayout
    from .store import Store

STAGING = "fork-images.partial"  # in the child's directory while the fork copies
COPY = "copy"  # the owner kind of a stopped source being copied
WAIT_SECONDS = 300.0  # the longest a fork waits for a source another client is starting
POLL_SECONDS = 0.02


def claim(store: Store, workspace_id: str) -> bool:
    """The stopped workspace held for this process's copy, atomically; False if it is not
    stopped or another client holds it (starting or copying it)."""
    with store.transaction() as db:
        state = db.execute(
            "SELECT state FROM workspaces WHERE workspace_id = ?", (workspace_id,)
        ).fetchone()
        taken = db.execute("SELECT 1 FROM owners WHERE workspace_id = ?", (workspace_id,))
        if state is None or state[0] != "stopped" or taken.fetchone() is not None:
            return False
        db.execute(
            "INSERT INTO owners (workspace_id, kind, owner) VALUES (?, ?, ?)",
            (workspace_id, COPY, owners.current()),
        )
    return True


def copying(store: Store, workspace_id: str) -> bool:
    """Whether a fork is copying this stopped workspace right now."""
    return any(row["kind"] == COPY for row in store.owners(workspace_id))


@contextlib.contextmanager
def held(ws: Handle, record: dict[str, Any]) -> Iterator[bool]:
    """The source as the fork finds it (``record``, just read): True if it is started (its
    supervisor copies its images live, images.py); False if it is stopped, held by this
    process (``claim``) until the block ends. A source another client is starting is
    waited for."""
    deadline = time.monotonic() + WAIT_SECONDS
    state = record["state"]
    while True:
        if state == "started":
            yield True
            return
        if state == "stopped" and claim(ws.store, ws.id):
            break
        if time.monotonic() > deadline:
            raise StateError(
                f"workspace {ws.id!r} is being started or copied by another client; "
                "fork it once that is done"
            )
        time.sleep(POLL_SECONDS)
        state = ws.record()["state"]  # (which sweeps an owner that died)
    try:
        yield False
    finally:
        ws.store.release(ws.id)


def copy_stopped(source: WorkspaceLayout, dest: Path) -> None:
    """A stopped workspace's images into the directory ``dest``, by the names a snapshot
    gives them; never its memory image. A system image not made yet (a workspace never
    started by this version) is left out: the child's boot makes a fresh one."""
    images.copy_images(images.sources(source), dest, optional=(SYSTEM_IMAGE,))


class Staging:
    """The child's staging directory, made and locked by the fork until ``done`` has put
    the images copied into its new directory ``images`` in place (or ``close``, after a
    failure)."""

    def __init__(self, layout: WorkspaceLayout) -> None:
        self.layout = layout
        self.path = layout.root / STAGING
        self.images = self.path / "images"  # made by the copy (snapshots.copy_live's rule)
        self.path.mkdir(mode=0o700)
        self.fd: int | None = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def done(self) -> None:
        """The copied images moved to the child's own paths (a system image the copy left
        out is made fresh at boot), then the child's supervisor may go on."""
        for name, target in images.sources(self.layout).items():
            if (self.images / name).exists():
                (self.images / name).rename(target)
        self.images.rmdir()
        self.path.rmdir()
        self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # the lock goes with it
            self.fd = None


def before_boot(layout: WorkspaceLayout) -> None:
    """A supervisor's first step: if a fork is copying this workspace's images, wait
    until they are in place (a staging directory left behind fails the boot)."""
    try:
        fd = os.open(layout.root / STAGING, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return  # no fork (or its copy is done)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # the fork holds it while it copies
    finally:
        os.close(fd)
    if (layout.root / STAGING).exists():
        remove_quietly(layout.root / STAGING)
        raise SandboxError("the fork that made this workspace ended before its disks were copied")
