"""Named snapshots of /workspace and reset to a snapshot or the baseline (§2.11)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

from ..errors import NotFoundError, StateError, ValidationError
from ..guest.chunks import CHUNK_BYTES, WAITING_CHUNKS
from . import records
from .archives import validate_members
from .bounds import paged
from .handle import Handle, operation
from .history import forget_streams
from .streams import STREAM_TIMEOUT, tar_source


def _path(ws: Handle, name: str) -> Path:
    return ws.layout.snapshots_dir / f"{name}.tar"


def _name(name: Any) -> str:
    if not isinstance(name, str) or not records.NAME_RE.match(name):
        raise ValidationError(f"snapshot name {name!r} must match {records.NAME_RE.pattern}")
    return name


@operation
def snapshot_create(ws: Handle, name: str) -> dict[str, Any]:
    name = _name(name)
    if name == "baseline":
        raise ValidationError("the snapshot name 'baseline' is reserved")
    record = ws.started("snapshot_create")
    if any(s["snapshot_name"] == name for s in ws.store.snapshots(ws.id)):
        raise ValidationError(f"snapshot {name!r} already exists")
    info, data = ws.call("tar_out", {"path": "/workspace"}, timeout=600)
    validate_members(data, guest_links=True)
    path = _path(ws, name)
    tmp = path.with_suffix(".partial")
    tmp.write_bytes(data)
    tmp.replace(path)
    now = time.time()
    snapshot = {
        "workspace_id": ws.id,
        "snapshot_name": name,
        "kind": "named",
        "created_at": now,
        "entry_count": info["entry_count"],
        "bytes_written": info["bytes_written"],
        "deletable": True,
    }
    ws.store.add_snapshot(ws.id, name, now, info["entry_count"], info["bytes_written"])
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
    _path(ws, name).unlink(missing_ok=True)
    ws.touch()
    return {"workspace_id": ws.id, "snapshot_name": name, "deleted": True}


def _seed(ws: Handle, snapshot: str) -> tuple[bytes | Path, str]:
    """The tar a reset unpacks, and its kind (baseline or named). The baseline stays a file
    (streamed, any size; a supervisor reads its own)."""
    if snapshot == "baseline":
        return ws.layout.baseline, "baseline"
    path = _path(ws, _name(snapshot))
    if not path.is_file():
        raise NotFoundError(f"snapshot {snapshot!r} does not exist")
    return path.read_bytes(), "named"


def _reboot(ws: Handle, seed: bytes | Path, guest_links: bool) -> dict[str, Any]:
    """A started workspace: its supervisor stays, only the sandbox and /workspace change."""
    data = seed if isinstance(seed, bytes) else _small(seed)
    if data is None and not ws.call("supervisor_status")[0].get("streams"):
        data = cast(Path, seed).read_bytes()  # a supervisor of an older pyro: as it was
    # else a larger baseline the supervisor reads itself
    args: dict[str, Any] = {"guest_links": guest_links, "baseline": data is None}
    rebooted, _ = ws.call("supervisor_reboot", args, data=data or b"", timeout=STREAM_TIMEOUT)
    unpacked = rebooted.get("unpacked")
    if unpacked is None:  # a supervisor started by an older pyro ignores the data
        args = {"dest": "/workspace", "guest_links": guest_links}
        with tar_source(seed) as source:
            unpacked, _ = ws.call("tar_in", args, data=source, timeout=STREAM_TIMEOUT)
    return dict(unpacked)


def _small(path: Path) -> bytes | None:
    """The file's bytes when it is small enough to travel whole (else None)."""
    if path.stat().st_size > CHUNK_BYTES * WAITING_CHUNKS:
        return None
    return path.read_bytes()


@operation
def reset(ws: Handle, snapshot: str = "baseline") -> dict[str, Any]:
    """A fresh sandbox from the pristine environment, /workspace from the snapshot."""
    lifecycle = ws.lifecycle
    record = ws.record()
    seed, kind = _seed(ws, snapshot)
    # A stopped workspace boots afresh only once the cap admits it, as a start does.
    booting = record["state"] != "started"
    if booting and not lifecycle.admit_start(ws.id):
        raise StateError(
            f"workspace {ws.id!r} is being started by another client; reset it once it is started"
        )
    try:
        if not booting:
            unpacked = _reboot(ws, seed, kind == "named")
        else:
            fresh = lifecycle.record(ws.id, refresh=False)
            unpacked = lifecycle.boot_fresh(fresh, seed, guest_links=kind == "named")
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
    ws.store.clear_commands(ws.id)
    forget_streams(ws.layout.root)
    ws.store.update(
        ws.id,
        command_count=0,
        last_command=None,
        reset_count=record["reset_count"] + 1,
        last_reset_at=now,
        last_activity_at=now,
    )
    payload = records.payload(ws.record())
    payload["workspace_reset"] = {
        "snapshot_name": snapshot,
        "kind": kind,
        "destination": "/workspace",
        "entry_count": unpacked.get("entry_count", 0),
        "bytes_written": unpacked.get("bytes_written", 0),
    }
    return payload
