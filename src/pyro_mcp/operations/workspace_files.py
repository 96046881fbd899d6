"""Working inside a workspace: exec, sync, files, patch, export, diff, reset (§2.5–2.11)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, cast

from ..validation import MAX_TEXT_BYTES
from ..workspaces.exec_input import parse_env_args, read_stdin_file
from ..workspaces.secrets import parse_secret_env
from .base import OperationsBase
from .params import (
    FileEncoding,
    FileMaxBytes,
    GuestPath,
    ListPath,
    MaxResultBytes,
    NewHostPath,
    PageLimit,
    PageOffset,
    Recursive,
    ShellCommand,
    TimeoutSeconds,
)
from .registry import CORE, Param, operation
from .render import CONTENT_ONLY
from .render_workspaces import (
    render_diff,
    render_exec,
    render_export,
    render_file_list,
    render_file_read,
    render_file_write,
    render_patch,
    render_sync,
    render_workspace,
)
from .workspaces import WorkspaceId

if TYPE_CHECKING:  # the shapes are for mypy and the MCP schema: not on the CLI's path
    from .results import SyncResult, WorkspaceExecResult, WorkspaceInfo
    from .results_work import DiffResult, ExportResult, FileList, FileRead, FileWritten, PatchResult

SecretEnv = Annotated[
    dict[str, str] | None,
    Param(
        "Map secrets into the command's environment: {SECRET: ENV_VAR}.",
        cli_help="Map secrets into the environment: {SECRET: ENV_VAR} (CLI: --secret-env "
        "SECRET[=ENV], repeatable).",
        cli="--secret-env",
        cli_append=True,
        in_core=False,
        metavar="SECRET[=ENV]",
        cli_convert=parse_secret_env,
    ),
]
ExecCwd = Annotated[
    str, Param("Directory to run in (inside /workspace; relative paths are under it).")
]
ExecEnv = Annotated[
    dict[str, str] | None,
    Param(
        "Extra environment variables {NAME: VALUE} (not secrets: they are recorded nowhere "
        "but may show in output; a variable secret_env sets cannot be overridden).",
        cli_help="Extra environment variables (CLI: --env NAME=VALUE, repeatable).",
        cli="--env",
        cli_append=True,
        metavar="NAME=VALUE",
        cli_convert=parse_env_args,
    ),
]
ExecStdin = Annotated[
    str | None,
    Param(
        "Text given to the command on its stdin (at most 1 MiB; default: empty).",
        cli_help="Give the command this file on stdin ('-': the CLI's own stdin; 1 MiB max).",
        cli="--stdin-file",
        metavar="PATH",
        cli_convert=read_stdin_file,
    ),
]


class WorkspaceFileOperations(OperationsBase):
    @operation(
        mcp="workspace_exec",
        cli=("workspace", "exec"),
        profiles=CORE,
        destructive=True,
        render=render_exec,
        cli_runner="workspace_exec",
        reaches_network=True,
    )
    def exec_workspace(
        self,
        workspace_id: WorkspaceId,
        command: ShellCommand,
        timeout_seconds: TimeoutSeconds = 30,
        secret_env: SecretEnv = None,
        cwd: ExecCwd = "/workspace",
        env: ExecEnv = None,
        stdin: ExecStdin = None,
        max_result_bytes: MaxResultBytes = None,
        *,
        on_output: Any = None,
    ) -> WorkspaceExecResult:
        """Run a command in /workspace (/bin/sh -lc); recorded in the history.

        exit_code is the command's (124 after timeout_seconds, keeping the output so far;
        130 with cancelled=true when the client cancelled the call).
        Output, history and errors never show a secret's value. Long output is cut in the
        middle (marked); the history keeps each stream whole up to 1 MiB: read it page by
        page with workspace logs (sequence, stream, offset).
        """
        from ..workspaces import commands
        from ..workspaces.bounds import bound_streams

        ws = self._ws(workspace_id)
        result = commands.exec(
            ws,
            command,
            timeout_seconds,
            on_output,
            secret_env=secret_env,
            cwd=cwd,
            env=env,
            stdin=stdin,
        )
        return cast("WorkspaceExecResult", bound_streams(result, max_result_bytes))

    @operation(
        mcp="workspace_sync_push",
        cli=("workspace", "sync", "push"),
        profiles=CORE,
        destructive=True,  # it overwrites files
        render=render_sync,
    )
    def push_workspace_sync(
        self,
        workspace_id: WorkspaceId,
        source_path: Annotated[
            str,
            Param(
                "Host directory or .tar/.tar.gz/.tgz to copy in.",
                cli="positional",
                metavar="SOURCE_PATH",
                mcp_role="host_path",
            ),
        ],
        dest: Annotated[str, Param("Destination under /workspace.")] = "/workspace",
    ) -> SyncResult:
        """Copy host files into the workspace (overwrite files, merge dirs, delete nothing)."""
        from ..workspaces import files

        return cast("SyncResult", files.sync_push(self._ws(workspace_id), source_path, dest))

    @operation(
        mcp="workspace_file_list",
        cli=("workspace", "file", "list"),
        profiles=CORE,
        read_only=True,
        render=render_file_list,
    )
    def list_workspace_files(
        self,
        workspace_id: WorkspaceId,
        path: ListPath = "/workspace",
        recursive: Recursive = False,
        offset: PageOffset = 0,
        limit: PageLimit = None,
        max_result_bytes: MaxResultBytes = None,
    ) -> FileList:
        """List files under /workspace (symlinks are shown, never followed).

        Paged: total, offset and next_offset say where the page is."""
        from ..workspaces import files

        ws = self._ws(workspace_id)
        result = files.file_list(ws, path, recursive, offset, limit, max_result_bytes)
        return cast("FileList", result)

    @operation(
        mcp="workspace_file_read",
        cli=("workspace", "file", "read"),
        profiles=CORE,
        read_only=True,
        render=render_file_read,
        cli_outputs=(CONTENT_ONLY,),
    )
    def read_workspace_file(
        self,
        workspace_id: WorkspaceId,
        path: GuestPath,
        max_bytes: FileMaxBytes = 65536,
        encoding: FileEncoding = "utf-8",
    ) -> FileRead:
        """Read a regular file as UTF-8 text (truncated=true when it is longer than max_bytes)."""
        from ..workspaces import files

        return cast("FileRead", files.file_read(self._ws(workspace_id), path, max_bytes, encoding))

    @operation(
        mcp="workspace_file_write",
        cli=("workspace", "file", "write"),
        profiles=CORE,
        destructive=True,  # it replaces a file's content
        render=render_file_write,
    )
    def write_workspace_file(
        self,
        workspace_id: WorkspaceId,
        path: GuestPath,
        text: Annotated[
            str,
            Param(
                "The whole new content (UTF-8, at most 1 MiB).",
                max_length=MAX_TEXT_BYTES,
                cli_file="--text-file",
            ),
        ],
    ) -> FileWritten:
        """Create or replace a file atomically; parents are created, the mode is kept."""
        from ..workspaces import files

        return cast("FileWritten", files.file_write(self._ws(workspace_id), path, text))

    @operation(
        mcp="workspace_patch_apply",
        cli=("workspace", "patch", "apply"),
        profiles=CORE,
        destructive=True,  # a patch can delete files
        render=render_patch,
    )
    def apply_workspace_patch(
        self,
        workspace_id: WorkspaceId,
        patch: Annotated[
            str,
            Param(
                "A unified diff (one or more files, at most 1 MiB); +++ /dev/null deletes a file.",
                max_length=MAX_TEXT_BYTES,
                cli_file="--patch-file",
            ),
        ],
    ) -> PatchResult:
        """Apply a unified diff strictly: every file is checked before anything is written."""
        from ..workspaces import files

        return cast("PatchResult", files.patch_apply(self._ws(workspace_id), patch))

    @operation(
        mcp="workspace_export", cli=("workspace", "export"), profiles=CORE, render=render_export
    )
    def export_workspace(
        self,
        workspace_id: WorkspaceId,
        path: GuestPath,
        output_path: NewHostPath,
    ) -> ExportResult:
        """Copy a file, directory or symlink out of the workspace to a new host path."""
        from ..workspaces import files

        return cast("ExportResult", files.export(self._ws(workspace_id), path, output_path))

    @operation(
        mcp="workspace_diff",
        cli=("workspace", "diff"),
        profiles=CORE,
        read_only=True,
        render=render_diff,
    )
    def diff_workspace(
        self,
        workspace_id: WorkspaceId,
        offset: PageOffset = 0,
        limit: PageLimit = None,
        max_result_bytes: MaxResultBytes = None,
    ) -> DiffResult:
        """Compare /workspace with its create-time baseline: counts and text patches.

        A page (limit or max_result_bytes) has each entry's text_patch and no joined patch
        (patch_omitted); offset and next_offset say where it is."""
        from ..workspaces import files

        ws = self._ws(workspace_id)
        return cast("DiffResult", files.diff(ws, offset, limit, max_result_bytes))

    @operation(
        mcp="workspace_reset",
        cli=("workspace", "reset"),
        profiles=CORE,
        destructive=True,
        render=render_workspace,
    )
    def reset_workspace(
        self,
        workspace_id: WorkspaceId,
        snapshot: Annotated[
            str,
            Param("Snapshot to restore (baseline: the create-time contents).", in_core=False),
        ] = "baseline",
    ) -> WorkspaceInfo:
        """Recreate the sandbox from the pristine environment and restore /workspace.

        Command history is cleared; the id, name, labels and expiry are kept.
        """
        from ..workspaces import snapshots

        return cast("WorkspaceInfo", snapshots.reset(self._ws(workspace_id), snapshot))
