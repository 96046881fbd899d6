"""Where a fork's disk images come from when its source is not running.

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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StateError
from . import blank_disk, images, owners

if TYPE_CHECKING:
    from .handle import Handle
    from .layout import WorkspaceLayout
    from .store import Store

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
def held(ws: Handle) -> Iterator[bool]:
    """The source as the fork finds it: True if it is started (its supervisor copies its
    images live, images.py); False if it is stopped, held by this process (``claim``) until
    the block ends. A source being started by another client is waited for."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        state = ws.record()["state"]  # sweeps an owner that died
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
    try:
        yield False
    finally:
        ws.store.release(ws.id)


def copy_stopped(source: WorkspaceLayout, dest: Path) -> None:
    """A stopped workspace's images into the directory ``dest``, by the names a snapshot
    gives them; never its memory image. A system image not made yet (a workspace never
    started by this version) is left out: the child's boot makes a fresh one."""
    for name, path in images.sources(source).items():
        if path.exists() or path == source.disk:
            blank_disk.copy_image(path, dest / name)
