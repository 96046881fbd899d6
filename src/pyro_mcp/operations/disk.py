"""Stopped-workspace disk tools (PRODUCT_SPEC §2.16): secondary, for a stopped workspace."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from .base import OperationsBase
from .params import (
    FileEncoding,
    FileMaxBytes,
    GuestPath,
    ListPath,
    NewHostPath,
    Recursive,
)
from .registry import FULL, HumanOutput, operation
from .render import CONTENT_ONLY, kv_line
from .render_workspaces import render_file_list, render_file_read
from .workspaces import WorkspaceId

if TYPE_CHECKING:  # the shapes are for mypy and the MCP schema: not on the CLI's path
    from .results_work import DiskExport, FileList, FileRead


def _render_export(data: dict[str, Any]) -> HumanOutput:
    return HumanOutput(
        stdout=kv_line(
            "workspace-disk-export",
            data,
            ["workspace_id", "output_path", "disk_format", "bytes_written"],
        )
        + "\n"
    )


class DiskOperations(OperationsBase):
    @operation(
        mcp="workspace_disk_list",
        cli=("workspace", "disk", "list"),
        profiles=FULL,
        read_only=True,
        render=render_file_list,
    )
    def list_workspace_disk(
        self,
        workspace_id: WorkspaceId,
        path: ListPath = "/workspace",
        recursive: Recursive = False,
    ) -> FileList:
        """List a STOPPED workspace's /workspace from its disk, without booting it."""
        from ..workspaces import disk

        return cast("FileList", disk.disk_list(self._ws(workspace_id), path, recursive))

    @operation(
        mcp="workspace_disk_read",
        cli=("workspace", "disk", "read"),
        profiles=FULL,
        read_only=True,
        render=render_file_read,
        cli_outputs=(CONTENT_ONLY,),
    )
    def read_workspace_disk(
        self,
        workspace_id: WorkspaceId,
        path: GuestPath,
        max_bytes: FileMaxBytes = 65536,
        encoding: FileEncoding = "utf-8",
    ) -> FileRead:
        """Read a file of a STOPPED workspace from its disk, without booting it."""
        from ..workspaces import disk

        return cast("FileRead", disk.disk_read(self._ws(workspace_id), path, max_bytes, encoding))

    @operation(
        mcp="workspace_disk_export",
        cli=("workspace", "disk", "export"),
        profiles=FULL,
        render=_render_export,
    )
    def export_workspace_disk(
        self,
        workspace_id: WorkspaceId,
        output_path: NewHostPath,
    ) -> DiskExport:
        """Write a STOPPED workspace's /workspace as an ext4 image to a new host path."""
        from ..workspaces import disk

        return cast("DiskExport", disk.disk_export(self._ws(workspace_id), output_path))
