"""Named snapshots of /workspace and reset to a snapshot or the baseline (§2.11)."""

from __future__ import annotations

import time
from typing import Any

from ..errors import NotFoundError, StateError, ValidationError
from . import records
from .archives import validate_members
from .lifecycle import WorkspaceLifecycle


class SnapshotMixin(WorkspaceLifecycle):
    def _snapshot_path(self, workspace_id: str, name: str) -> Any:
        return self.layout(workspace_id).snapshots_dir / f"{name}.tar"

    @staticmethod
    def _snapshot_name(name: Any) -> str:
        if not isinstance(name, str) or not records.NAME_RE.match(name):
            raise ValidationError(f"snapshot name {name!r} must match {records.NAME_RE.pattern}")
        return name

    def snapshot_create(self, workspace_id: str, name: str) -> dict[str, Any]:
        name = self._snapshot_name(name)
        if name == "baseline":
            raise ValidationError("the snapshot name 'baseline' is reserved")
        record = self.require_started(workspace_id, "snapshot_create")
        if any(s["snapshot_name"] == name for s in self.store.snapshots(workspace_id)):
            raise ValidationError(f"snapshot {name!r} already exists")
        info, data = self.call(workspace_id, "tar_out", {"path": "/workspace"}, timeout=600)
        validate_members(data, guest_links=True)
        path = self._snapshot_path(workspace_id, name)
        tmp = path.with_suffix(".partial")
        tmp.write_bytes(data)
        tmp.replace(path)
        now = time.time()
        snapshot = {
            "workspace_id": workspace_id,
            "snapshot_name": name,
            "kind": "named",
            "created_at": now,
            "entry_count": info["entry_count"],
            "bytes_written": info["bytes_written"],
            "deletable": True,
        }
        self.store.add_snapshot(workspace_id, name, now, info["entry_count"], info["bytes_written"])
        self.touch(workspace_id, now)
        return {
            "workspace_id": workspace_id,
            "snapshot": snapshot,
            "execution_mode": records.execution_mode(record["engine"]),
        }

    def snapshot_list(self, workspace_id: str) -> dict[str, Any]:
        record = self.record(workspace_id)
        baseline = {
            "workspace_id": workspace_id,
            "snapshot_name": "baseline",
            "kind": "baseline",
            "created_at": record["created_at"],
            "entry_count": record["workspace_seed"].get("entry_count", 0),
            "bytes_written": record["workspace_seed"].get("bytes_written", 0),
            "deletable": False,
        }
        named = [
            {"workspace_id": workspace_id, **row, "kind": "named", "deletable": True}
            for row in sorted(
                self.store.snapshots(workspace_id), key=lambda r: -float(r["created_at"])
            )
        ]
        return {
            "workspace_id": workspace_id,
            "count": 1 + len(named),
            "snapshots": [baseline, *named],
        }

    def snapshot_delete(self, workspace_id: str, name: str) -> dict[str, Any]:
        self.record(workspace_id)
        if name == "baseline":
            raise ValidationError("cannot delete the baseline snapshot")
        name = self._snapshot_name(name)
        if not self.store.delete_snapshot(workspace_id, name):
            raise NotFoundError(f"snapshot {name!r} does not exist")
        self._snapshot_path(workspace_id, name).unlink(missing_ok=True)
        self.touch(workspace_id)
        return {"workspace_id": workspace_id, "snapshot_name": name, "deleted": True}

    def reset(self, workspace_id: str, snapshot: str = "baseline") -> dict[str, Any]:
        """A fresh sandbox from the pristine environment, /workspace from the snapshot."""
        record = self.record(workspace_id)
        if snapshot == "baseline":
            tar_bytes = self.layout(workspace_id).baseline.read_bytes()
            kind = "baseline"
        else:
            name = self._snapshot_name(snapshot)
            path = self._snapshot_path(workspace_id, name)
            if not path.is_file():
                raise NotFoundError(f"snapshot {name!r} does not exist")
            tar_bytes = path.read_bytes()
            kind = "named"
        # A stopped workspace boots afresh only once the cap admits it, as a start does.
        if record["state"] != "started" and not self.admit_start(workspace_id):
            raise StateError(
                f"workspace {workspace_id!r} is being started by another client; "
                "reset it once it is started"
            )
        try:
            if record["state"] == "started":
                # The supervisor stays; only the sandbox and /workspace are replaced.
                rebooted, _ = self.call(
                    workspace_id,
                    "supervisor_reboot",
                    {"guest_links": kind == "named"},
                    data=tar_bytes,
                    timeout=1200,
                )
                unpacked = rebooted.get("unpacked")
                if unpacked is None:  # a supervisor started by an older pyro ignores the data
                    unpacked, _ = self.call(
                        workspace_id,
                        "tar_in",
                        {"dest": "/workspace", "guest_links": kind == "named"},
                        data=tar_bytes,
                        timeout=600,
                    )
            else:
                fresh = self.record(workspace_id, refresh=False)
                unpacked = self.boot_fresh(fresh, tar_bytes, guest_links=kind == "named")
        except BaseException:
            current = self.store.get(workspace_id)
            if current is not None:
                self.stop_supervisor(current)
                self.store.update(workspace_id, state="stopped", supervisor_pid=None)
            raise
        finally:
            self.store.release(workspace_id)  # the start's owner, if this reset booted it
        now = time.time()
        self.store.clear_commands(workspace_id)
        self.store.update(
            workspace_id,
            command_count=0,
            last_command=None,
            reset_count=record["reset_count"] + 1,
            last_reset_at=now,
            last_activity_at=now,
        )
        payload = records.payload(self.record(workspace_id))
        payload["workspace_reset"] = {
            "snapshot_name": snapshot,
            "kind": kind,
            "destination": "/workspace",
            "entry_count": unpacked.get("entry_count", 0),
            "bytes_written": unpacked.get("bytes_written", 0),
        }
        return payload
