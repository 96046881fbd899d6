"""Named snapshots and reset to a snapshot or the baseline (§2.11).

A sandbox workspace's snapshot is full: copies of both its disk images, /workspace's and
the system layer's (``snapshots/<name>/``, images.py), and a reset to it restores both. A
host-compat workspace's (and a 3.6 one's, ``snapshots/<name>.tar``) is a tar of /workspace.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import NotFoundError, StateError, ValidationError
from ..guest.chunks import CHUNK_BYTES, WAITING_CHUNKS
from . import image_chunks, images, records, suspend, system_layer
from .archives import validate_members
from .bounds import paged
from .handle import Handle, operation
from .history import forget_streams
from .layout import remove_quietly, uses_image
from .streams import STREAM_TIMEOUT, tar_source

INFO = "snapshot.json"  # a full snapshot's entry_count and bytes_written
SMALL_BYTES = CHUNK_BYTES * WAITING_CHUNKS  # a larger baseline: its supervisor reads it


def _path(ws: Handle, name: str) -> Path:
    """A /workspace-only tar snapshot (3.6.0's, and host compat's)."""
    return ws.layout.snapshots_dir / f"{name}.tar"


def _dir(ws: Handle, name: str) -> Path:
    """A full snapshot: both disk images and INFO (images.py)."""
    return ws.layout.snapshots_dir / name


def _name(name: Any) -> str:
    if not isinstance(name, str) or not records.NAME_RE.match(name):
        raise ValidationError(f"snapshot name {name!r} must match {records.NAME_RE.pattern}")
    return name


@operation
def full_snapshots(ws: Handle, record: dict[str, Any]) -> bool:
    """Whether this workspace's snapshots are full ones (disk images): every sandbox
    engine's, unless its /workspace predates the images (a gVisor workspace of 3.6)."""
    return uses_image(record["engine"]) and ws.layout.disk.is_file()


@operation
def copy_live(ws: Handle, dest: Path, snapshot: bool = False) -> dict[str, Any]:
    """Both images of the running workspace copied into the new directory ``dest`` by its
    supervisor, its file systems quiesced meanwhile (images.py), kept as a ``snapshot``'s
    or as whole images (a fork's); nothing left at ``dest`` if that fails. What the copy
    saw: ``entry_count``, ``bytes_written``."""
    dest.mkdir(mode=0o700)
    try:
        args = {"dest": str(dest), "snapshot": snapshot}
        info, _ = ws.call(images.COPY_OP, args, timeout=600)
    except BaseException:
        remove_quietly(dest)
        raise
    return info


def _partial(ws: Handle, name: str) -> Path:
    """Where a snapshot is made before it is ``_keep``-ed (its own: creates may race)."""
    return images.partial(ws.layout.snapshots_dir, name)


def _create_full(ws: Handle, name: str) -> tuple[Path, dict[str, Any]]:
    partial = _partial(ws, name)
    info = copy_live(ws, partial, snapshot=True)
    try:
        (partial / INFO).write_text(json.dumps(info))
    except BaseException:
        remove_quietly(partial)
        raise
    return partial, info


def _create_tar(ws: Handle, name: str) -> tuple[Path, dict[str, Any]]:
    info, data = ws.call("tar_out", {"path": "/workspace"}, timeout=600)
    validate_members(data, guest_links=True)
    partial = _partial(ws, name)
    partial.write_bytes(data)
    return partial, info


def _keep(ws: Handle, name: str, partial: Path, info: dict[str, Any], now: float) -> None:
    """The snapshot recorded, then moved in place. The record comes first: it is the name's
    one owner (two creates of one name race to it; the loser's copy goes, never the
    winner's), and whatever sits at the name unrecorded (a create killed after its move)
    is a leftover the owner replaces."""
    try:
        ws.store.add_snapshot(ws.id, name, now, info["entry_count"], info["bytes_written"])
    except sqlite3.IntegrityError:
        remove_quietly(partial)
        raise ValidationError(f"snapshot {name!r} already exists") from None
    except BaseException:
        remove_quietly(partial)
        raise
    try:
        if partial.is_dir():
            remove_quietly(_dir(ws, name))
            partial.rename(_dir(ws, name))
        else:
            partial.replace(_path(ws, name))
    except BaseException:
        ws.store.delete_snapshot(ws.id, name)
        remove_quietly(partial)
        raise


@operation
def snapshot_create(ws: Handle, name: str) -> dict[str, Any]:
    name = _name(name)
    if name == "baseline":
        raise ValidationError("the snapshot name 'baseline' is reserved")
    record = ws.started("snapshot_create")
    if any(s["snapshot_name"] == name for s in ws.store.snapshots(ws.id)):
        raise ValidationError(f"snapshot {name!r} already exists")
    full = full_snapshots(ws, record)
    partial, info = _create_full(ws, name) if full else _create_tar(ws, name)
    now = time.time()
    _keep(ws, name, partial, info, now)
    snapshot = {
        "workspace_id": ws.id,
        "snapshot_name": name,
        "kind": "named",
        "created_at": now,
        "entry_count": info["entry_count"],
        "bytes_written": info["bytes_written"],
        "deletable": True,
    }
    ws.touch(now)
    return {
        "workspace_id": ws.id,
        "snapshot": snapshot,
        "execution_mode": ws.execution_mode(record),
    }


@operation
def snapshot_list(
    ws: Handle, offset: int = 0, limit: int | None = None, budget: int | None = None
) -> dict[str, Any]:
    record = ws.record()
    baseline = {
        "workspace_id": ws.id,
        "snapshot_name": "baseline",
        "kind": "baseline",
        "created_at": record["created_at"],
        "entry_count": record["workspace_seed"].get("entry_count", 0),
        "bytes_written": record["workspace_seed"].get("bytes_written", 0),
        "deletable": False,
    }
    named = [
        {"workspace_id": ws.id, **row, "kind": "named", "deletable": True}
        for row in sorted(ws.store.snapshots(ws.id), key=lambda r: -float(r["created_at"]))
    ]
    page, where = paged([baseline, *named], lambda row: row, offset, limit, budget)
    return {"workspace_id": ws.id, "count": len(page), "snapshots": page, **where}


@operation
def snapshot_delete(ws: Handle, name: str) -> dict[str, Any]:
    ws.record()
    if name == "baseline":
        raise ValidationError("cannot delete the baseline snapshot")
    name = _name(name)
    if not ws.store.delete_snapshot(ws.id, name):
        raise NotFoundError(f"snapshot {name!r} does not exist")
    _remove(ws, name)
    ws.touch()
    return {"workspace_id": ws.id, "snapshot_name": name, "deleted": True}


def _remove(ws: Handle, name: str) -> None:
    _path(ws, name).unlink(missing_ok=True)
    if _dir(ws, name).is_dir():
        image_chunks.unlist(_dir(ws, name))
        remove_quietly(_dir(ws, name))


class Source(NamedTuple):
    """What a reset restores: a tar of /workspace (``seed``: its bytes, or the baseline's
    file, streamed at any size) or a full snapshot's images (``images``, a directory), and
    its kind (baseline or named)."""

    seed: bytes | Path
    images: Path | None
    kind: str
    info: dict[str, Any]


def source(ws: Handle, snapshot: str) -> Source:
    if snapshot == "baseline":
        return Source(ws.layout.baseline, None, "baseline", {})
    name = _name(snapshot)
    if images.has_images(_dir(ws, name)):
        info = json.loads((_dir(ws, name) / INFO).read_text())
        restored = sum(image_chunks.data_bytes(_dir(ws, name), n) for n in images.NAMES)
        return Source(b"", _dir(ws, name), "named", {**info, "bytes_written": restored})
    if not _path(ws, name).is_file():
        raise NotFoundError(f"snapshot {snapshot!r} does not exist")
    return Source(_path(ws, name).read_bytes(), None, "named", {})


@contextlib.contextmanager
def copying(directory: Path) -> Iterator[None]:
    """Copies from the full snapshot in ``directory``: one deleted meanwhile fails as if it
    had never existed (in one line, no host path)."""
    try:
        yield
    except FileNotFoundError:
        if not images.has_images(directory):
            raise NotFoundError(f"snapshot {directory.name!r} does not exist") from None
        raise


def _reboot(ws: Handle, src: Source) -> dict[str, Any]:
    """A started workspace: its supervisor stays, only the sandbox and its disks change."""
    data = src.seed if isinstance(src.seed, bytes) else _small(src.seed)
    if data is None and not ws.call("supervisor_status")[0].get("streams"):
        data = _small(src.seed, whole=True)  # a supervisor of an older pyro: as it was
    # else a larger baseline the supervisor reads itself
    args: dict[str, Any] = {"guest_links": src.kind == "named", "baseline": data is None}
    if src.images is not None:
        args["images"] = str(src.images)
    rebooted, _ = ws.call("supervisor_reboot", args, data=data or b"", timeout=STREAM_TIMEOUT)
    unpacked = rebooted.get("unpacked")
    if unpacked is None:  # a supervisor started by an older pyro ignores the data
        args = {"dest": "/workspace", "guest_links": src.kind == "named"}
        with tar_source(src.seed) as seed:
            unpacked, _ = ws.call("tar_in", args, data=seed, timeout=STREAM_TIMEOUT)
    return dict(unpacked)


def _small(seed: bytes | Path, whole: bool = False) -> bytes | None:
    """The baseline's bytes when it is small enough to travel in one frame (or ``whole``:
    any size), else None."""
    if isinstance(seed, bytes) or (not whole and seed.stat().st_size > SMALL_BYTES):
        return None
    return seed.read_bytes()


def _boot_stopped(ws: Handle, src: Source) -> dict[str, Any]:
    """A stopped workspace: a fresh system layer (or the snapshot's), then a new supervisor
    on /workspace from the tar (or the snapshot's image)."""
    lifecycle = ws.lifecycle
    fresh = lifecycle.record(ws.id, refresh=False)
    suspend.forget(ws.layout)  # a suspended VM's memory fits its old disks only: never resumed
    if src.images is not None:
        with copying(src.images):
            system_layer.fresh_image(ws.layout, fresh["disk_mib"], src.images)
            ws.layout.fresh_volume(True, fresh["disk_mib"], src.images)
        lifecycle.spawn(ws.id)
        return {}
    if uses_image(fresh["engine"]):
        system_layer.fresh_image(ws.layout, fresh["disk_mib"])
    return lifecycle.boot_fresh(fresh, src.seed, guest_links=src.kind == "named")


@operation
def reset(ws: Handle, snapshot: str = "baseline") -> dict[str, Any]:
    """A fresh sandbox from the pristine environment, /workspace from the snapshot."""
    lifecycle = ws.lifecycle
    record = ws.record()
    src = source(ws, snapshot)
    # A stopped workspace boots afresh only once the cap admits it, as a start does.
    booting = record["state"] != "started"
    if booting and not lifecycle.admit_start(ws.id):
        raise StateError(
            f"workspace {ws.id!r} is being started by another client; reset it once it is started"
        )
    try:
        unpacked = _boot_stopped(ws, src) if booting else _reboot(ws, src)
    except BaseException:
        current = ws.store.get(ws.id)
        if current is not None:
            lifecycle.stop_supervisor(current)
            ws.store.update(ws.id, state="stopped", supervisor_pid=None)
        raise
    finally:
        if booting:
            ws.store.release(ws.id)  # this process's start is over
    now = time.time()
    ws.store.clear_commands(ws.id, lambda: forget_streams(ws.layout.root))
    ws.store.update(
        ws.id,
        reset_count=record["reset_count"] + 1,
        last_reset_at=now,
        last_activity_at=now,
    )
    payload = records.payload(ws.record())
    payload["workspace_reset"] = {
        "snapshot_name": snapshot,
        "kind": src.kind,
        "destination": "/workspace",
        "entry_count": unpacked.get("entry_count", src.info.get("entry_count", 0)),
        "bytes_written": unpacked.get("bytes_written", src.info.get("bytes_written", 0)),
    }
    return payload
