"""Result shapes of the work inside a workspace: files, patches, diffs, exports, disks,
snapshots, services, shells and the egress log (see results.py for the rules)."""

from typing import Annotated, NotRequired, TypedDict

from .results import EgressTotals, WorkspaceInfo

NextOffset = Annotated[int | None, "Pass as offset for the next page (null: none)."]


class FileEntry(TypedDict):
    path: str
    artifact_type: str
    size_bytes: int
    link_target: Annotated[str | None, "A symlink's target (null for other kinds)."]


class FileList(TypedDict):
    workspace_id: str
    path: str
    recursive: bool
    entries: list[FileEntry]
    truncated: NotRequired[Annotated[bool, "True when the listing stopped at its limit."]]
    total: NotRequired[Annotated[int, "Entries in the whole listing."]]
    offset: NotRequired[Annotated[int, "The index of this page's first entry."]]
    next_offset: NotRequired[NextOffset]
    execution_mode: NotRequired[str]
    warning: NotRequired[str]


class FileRead(TypedDict):
    workspace_id: str
    path: str
    size_bytes: int
    max_bytes: int
    truncated: Annotated[bool, "True when the file is longer than max_bytes."]
    execution_mode: NotRequired[str]
    content: Annotated[str, "The content: text (utf-8) or base64, as encoding says."]
    encoding: str
    binary: Annotated[bool, "True when the bytes are not UTF-8 text."]
    returned_bytes: int
    warning: NotRequired[str]


class FileWritten(TypedDict):
    workspace_id: str
    path: str
    size_bytes: int
    bytes_written: int
    execution_mode: str
    warning: NotRequired[str]


class ChangeSummary(TypedDict):
    total: int
    added: int
    modified: int
    deleted: Annotated[int, "Entries deleted."]
    type_changed: NotRequired[int]
    text_patched: NotRequired[Annotated[int, "Changed entries with a text patch."]]
    non_text: NotRequired[Annotated[int, "Changed files that are not text (no patch)."]]


class PatchEntry(TypedDict):
    path: str
    status: Annotated[str, "added, modified or deleted."]


class PatchResult(TypedDict):
    workspace_id: str
    changed: bool
    summary: ChangeSummary
    entries: list[PatchEntry]
    patch: Annotated[str, "The patch that was applied."]
    execution_mode: str
    warning: NotRequired[str]


class DiffEntry(TypedDict):
    path: str
    status: Annotated[str, "added, modified, deleted or type_changed."]
    artifact_type: str
    text_patch: Annotated[str | None, "This entry's unified diff (null: not text)."]
    patch_truncated: NotRequired[bool]


class DiffResult(TypedDict):
    workspace_id: str
    changed: bool
    summary: ChangeSummary
    entries: list[DiffEntry]
    patch: Annotated[str, "All text changes as one unified diff (empty in a page)."]
    patch_truncated: bool
    patch_omitted: NotRequired[Annotated[bool, "A page: patch is empty, see text_patch."]]
    offset: NotRequired[Annotated[int, "The index of this page's first entry."]]
    next_offset: NotRequired[NextOffset]
    warning: NotRequired[str]


class ExportResult(TypedDict):
    workspace_id: str
    workspace_path: Annotated[str, "What was exported, inside the workspace."]
    output_path: str
    artifact_type: str
    entry_count: int
    bytes_written: int
    execution_mode: str
    warning: NotRequired[str]


class DiskExport(TypedDict):
    workspace_id: str
    output_path: str
    disk_format: Annotated[str, "The image format: ext4."]
    bytes_written: int


class SnapshotInfo(TypedDict):
    workspace_id: str
    snapshot_name: str
    kind: Annotated[str, "baseline (the create-time contents) or named."]
    created_at: float
    entry_count: int
    bytes_written: int
    deletable: bool


class SnapshotCreated(TypedDict):
    workspace_id: str
    snapshot: SnapshotInfo
    execution_mode: str
    warning: NotRequired[str]


class SnapshotList(TypedDict):
    workspace_id: str
    count: Annotated[int, "Snapshots in this result (a page of total)."]
    snapshots: Annotated[list[SnapshotInfo], "The baseline first, then named ones, newest first."]
    total: Annotated[int, "Snapshots in all, the baseline included."]
    offset: Annotated[int, "The index of this page's first snapshot."]
    next_offset: Annotated[int | None, "Where the next page starts (null: no more)."]


class SnapshotDeleted(TypedDict):
    workspace_id: str
    snapshot_name: str
    deleted: bool


class Readiness(TypedDict):
    type: Annotated[str, "file, tcp, http or command."]
    path: NotRequired[str]
    address: NotRequired[str]
    url: NotRequired[str]
    command: NotRequired[str]


class PublishedPort(TypedDict):
    host: Annotated[str, "The host address it is published on: 127.0.0.1."]
    host_port: int
    guest_port: int
    protocol: Annotated[str, "tcp."]


class ServiceInfo(TypedDict):
    workspace_id: str
    service_name: str
    state: Annotated[str, "starting, running, stopped or failed."]
    command: str
    cwd: str
    started_at: float
    ended_at: float | None
    exit_code: int | None
    pid: int | None
    readiness: Readiness | None
    ready_at: float | None
    stop_reason: Annotated[str | None, "Why it ended, e.g. sigterm, process_exited."]
    execution_mode: str
    published_ports: list[PublishedPort]
    restarted: NotRequired[
        Annotated[
            bool,
            "Present after a start: true if the start ran the service again, false if it did "
            "not come back (stop_reason says why).",
        ]
    ]
    warning: NotRequired[str]


class ServiceList(TypedDict):
    workspace_id: str
    count: int
    running_count: int
    services: list[ServiceInfo]


class ServiceLogs(ServiceInfo):
    stdout: str
    stderr: str
    tail_lines: Annotated[int | None, "The lines asked for (null: everything)."]
    truncated: Annotated[bool, "True when older output was left out."]
    stdout_truncated: NotRequired[
        Annotated[bool, "True when stdout was cut in the middle to fit max_result_bytes."]
    ]
    stderr_truncated: NotRequired[
        Annotated[bool, "True when stderr was cut in the middle to fit max_result_bytes."]
    ]


class ShellInfo(TypedDict):
    workspace_id: str
    shell_id: str
    cwd: str
    cols: int
    rows: int
    state: Annotated[str, "running or stopped."]
    started_at: float
    ended_at: float | None
    exit_code: int | None
    execution_mode: str
    input_length: NotRequired[Annotated[int, "Characters typed (shell_write)."]]
    append_newline: NotRequired[bool]
    signal: NotRequired[Annotated[str, "The signal sent (shell_signal)."]]
    closed: NotRequired[bool]
    warning: NotRequired[str]


class ShellOutput(ShellInfo):
    cursor: int
    next_cursor: Annotated[int, "Pass as cursor to read on from here."]
    output: str
    truncated: Annotated[bool, "True when output before cursor was dropped from the buffer."]
    plain: bool
    wait_for_idle_ms: int | None


class EgressEntry(TypedDict):
    at: float
    host: str
    port: int
    method: Annotated[str, "CONNECT (HTTPS) or the HTTP method."]
    allowed: bool
    reason: Annotated[str | None, "Why it was refused (null: allowed)."]
    address: Annotated[str | None, "The address connected to."]
    bytes_up: int
    bytes_down: int
    duration_ms: int


class NetworkLog(TypedDict):
    workspace_id: str
    network_policy: str
    allow_hosts: list[str]
    egress: EgressTotals
    count: int
    entries: Annotated[list[EgressEntry], "Connections through the proxy, oldest first."]


class ForkSource(TypedDict):
    workspace_id: Annotated[str, "The workspace this one was forked from."]
    snapshot_name: Annotated[str | None, "The snapshot it was forked from (null: live state)."]


class WorkspaceForked(WorkspaceInfo):
    forked_from: Annotated[ForkSource, "Where the new workspace's disks came from."]
