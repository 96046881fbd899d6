"""Named snapshots of /workspace (PRODUCT_SPEC §2.11)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, cast

from ..validation import NAME_PATTERN
from .base import OperationsBase
from .params import MaxResultBytes, PageLimit, PageOffset
from .registry import FULL, HumanOutput, Param, operation
from .workspaces import WorkspaceId

if TYPE_CHECKING:  # the shapes are for mypy and the MCP schema: not on the CLI's path
    from .results_work import SnapshotCreated, SnapshotDeleted, SnapshotList

SnapshotName = Annotated[
    str,
    Param(
        "Snapshot name (letters, digits, . _ -; at most 64).",
        cli_help="Snapshot name ([A-Za-z0-9][A-Za-z0-9._-]{0,63}).",
        cli="positional",
        metavar="NAME",
        pattern=NAME_PATTERN,
    ),
]


def _render_snapshot(data: dict[str, Any]) -> HumanOutput:
    snap = data["snapshot"]
    return HumanOutput(
        stdout=f"[workspace-snapshot] workspace_id={data['workspace_id']} "
        f"snapshot_name={snap['snapshot_name']} entry_count={snap['entry_count']} "
        f"bytes_written={snap['bytes_written']}\n"
    )


def _render_list(data: dict[str, Any]) -> HumanOutput:
    lines = [
        f"{s['snapshot_name']} kind={s['kind']} created_at={s['created_at']:.3f} "
        f"entries={s['entry_count']} bytes={s['bytes_written']}"
        for s in data["snapshots"]
    ]
    return HumanOutput(stdout="\n".join(lines) + "\n")


def _render_delete(data: dict[str, Any]) -> HumanOutput:
    return HumanOutput(stdout=f"Deleted snapshot {data['snapshot_name']}.\n")


class SnapshotOperations(OperationsBase):
    @operation(
        mcp="snapshot_create",
        cli=("workspace", "snapshot", "create"),
        profiles=FULL,
        render=_render_snapshot,
    )
    def create_snapshot(self, workspace_id: WorkspaceId, name: SnapshotName) -> SnapshotCreated:
        """Save /workspace and the system layer as a named snapshot reset can return to."""
        from ..workspaces import snapshots

        return cast("SnapshotCreated", snapshots.snapshot_create(self._ws(workspace_id), name))

    @operation(
        mcp="snapshot_list",
        cli=("workspace", "snapshot", "list"),
        profiles=FULL,
        read_only=True,
        render=_render_list,
    )
    def list_snapshots(
        self,
        workspace_id: WorkspaceId,
        offset: PageOffset = 0,
        limit: PageLimit = None,
        max_result_bytes: MaxResultBytes = None,
    ) -> SnapshotList:
        """List snapshots: the implicit baseline first, then named ones, newest first.

        Paged: total, offset and next_offset say where the page is."""
        from ..workspaces import snapshots

        ws = self._ws(workspace_id)
        result = snapshots.snapshot_list(ws, offset, limit, max_result_bytes)
        return cast("SnapshotList", result)

    @operation(
        mcp="snapshot_delete",
        cli=("workspace", "snapshot", "delete"),
        profiles=FULL,
        destructive=True,
        render=_render_delete,
    )
    def delete_snapshot(self, workspace_id: WorkspaceId, name: SnapshotName) -> SnapshotDeleted:
        """Delete a named snapshot (the baseline cannot be deleted)."""
        from ..workspaces import snapshots

        return cast("SnapshotDeleted", snapshots.snapshot_delete(self._ws(workspace_id), name))
