"""The result shape of every operation, declared once (issue 12c).

The SDK methods return these (mypy checks callers); the MCP server turns them into each
tool's ``outputSchema`` (mcp/schema.py). A field's description is ``Annotated[T, "text"]``
where it says something particular to that shape, otherwise the shared entry for its name
in ``result_fields.FIELDS`` (a test checks that every field has one).

``NotRequired`` marks fields present only in some results (a network, host compat, a
named snapshot…). No ``from __future__ import annotations`` here: TypedDict reads
``NotRequired`` from evaluated annotations.
"""

from typing import Annotated, Any, NotRequired, TypedDict


class EngineMetadata(TypedDict):
    engine: str
    isolation: str


class VmInfo(TypedDict):
    vm_id: str
    environment: str
    environment_version: str
    vcpu_count: int
    mem_mib: int
    ttl_seconds: int
    created_at: float
    expires_at: float
    state: Annotated[str, "created, started or stopped."]
    network_enabled: bool
    allow_host_compat: bool
    guest_ip: str | None
    tap_name: Annotated[None, "Always null (no host TAP device is used)."]
    execution_mode: str
    engine: str
    isolation: str
    metadata: EngineMetadata
    warning: NotRequired[str]


class VmDeleted(TypedDict):
    vm_id: str
    deleted: bool
    reason: Annotated[str, "Why it was deleted: explicit_delete, ttl_expired or exec_done."]


StdoutBytes = Annotated[int, "The whole stdout's length in bytes (kept: 1 MiB at most)."]
StderrBytes = Annotated[int, "The whole stderr's length in bytes (kept: 1 MiB at most)."]
StdoutCut = Annotated[bool, "True when stdout was cut (at 1 MiB, or here: marked)."]
StderrCut = Annotated[bool, "True when stderr was cut (at 1 MiB, or here: marked)."]


class VmExecResult(TypedDict):
    vm_id: str
    environment: str
    environment_version: str
    command: str
    stdout: str
    stderr: str
    exit_code: int
    duration_ms: int
    execution_mode: str
    engine: str
    timed_out: bool
    cancelled: bool
    stdout_truncated: StdoutCut
    stderr_truncated: StderrCut
    stdout_bytes: StdoutBytes
    stderr_bytes: StderrBytes
    warning: NotRequired[str]


class VmRunResult(VmExecResult):
    cleanup: Annotated[VmDeleted, "The sandbox's deletion, which always follows the run."]


class VmNetworkInfo(TypedDict):
    vm_id: str
    network_enabled: bool
    reason: NotRequired[Annotated[str, "Why the VM has no network."]]
    tap_name: NotRequired[Annotated[None, "Always null (no host TAP device is used)."]]
    guest_ip: NotRequired[str]
    gateway_ip: NotRequired[str | None]
    subnet_cidr: NotRequired[str]
    mac_address: NotRequired[str | None]
    dns_servers: NotRequired[list[str]]
    proxy: NotRequired[str]
    outbound_connectivity_expected: NotRequired[bool]


class VmReaped(TypedDict):
    deleted_vm_ids: list[str]
    count: int


class SeedInfo(TypedDict):
    mode: Annotated[str, "empty, directory or tar: what /workspace started from."]
    seed_path: Annotated[str | None, "The host path it was seeded from (null: empty)."]
    destination: NotRequired[str]
    entry_count: NotRequired[int]
    bytes_written: NotRequired[int]


class SecretInfo(TypedDict):
    name: str
    source_kind: Annotated[str, "How the secret was given: value or file_path (never shown)."]
    hosts: NotRequired[Annotated[list[str], "Brokered: the hosts the egress proxy adds it for."]]


class SecretSet(TypedDict):
    workspace_id: str
    secret: Annotated[SecretInfo, "The secret as records show it (never its value)."]
    replaced: Annotated[bool, "True when a secret of this name existed before."]
    mode: Annotated[str, "brokered (added by the egress proxy) or plain (in the guest)."]
    installed_in_guest: Annotated[bool, "True when the running guest got it now."]


class LastCommand(TypedDict):
    sequence: int
    command: str
    exit_code: int
    recorded_at: float


class EgressTotals(TypedDict):
    allowed: Annotated[int, "Connections the egress proxy let through."]
    denied: Annotated[int, "Connections the egress proxy refused."]


class ResetInfo(TypedDict):
    snapshot_name: str
    kind: str
    destination: str
    entry_count: int
    bytes_written: int


class WorkspaceInfo(TypedDict):
    workspace_id: str
    name: str | None
    labels: dict[str, str]
    environment: str
    environment_version: str
    vcpu_count: int
    mem_mib: int
    disk_mib: int
    ttl_seconds: Annotated[
        int, "Lifetime in seconds, as last set (create, or an update counting from then)."
    ]
    created_at: float
    last_activity_at: float
    expires_at: float
    idle_stop_seconds: int
    idle_stop_at: float | None
    state: Annotated[str, "started or stopped."]
    network_policy: str
    network_enabled: bool
    allow_host_compat: bool
    guest_ip: str | None
    tap_name: Annotated[None, "Always null (no host TAP device is used)."]
    execution_mode: str
    engine: str
    isolation: str
    workspace_path: Annotated[str, "Where the workspace is inside the guest: /workspace."]
    workspace_seed: SeedInfo
    secrets: Annotated[list[SecretInfo], "The workspace's secrets (names only)."]
    command_count: int
    last_command: Annotated[LastCommand | None, "The latest exec (null: none since reset)."]
    reset_count: int
    last_reset_at: float | None
    service_count: int
    running_service_count: int
    last_error: Annotated[
        str | None, "Why the sandbox stopped on its own (a crash, a limit, an idle stop)."
    ]
    metadata: EngineMetadata
    disk_used_bytes: NotRequired[int | None]
    disk_limit_bytes: NotRequired[int | None]
    memory_used_bytes: NotRequired[int | None]
    cpu_time_seconds: NotRequired[float | None]
    suspended: NotRequired[
        Annotated[bool, "Stopped with its memory saved (stop --suspend, qemu): start resumes it."]
    ]
    allow_hosts: NotRequired[list[str]]
    egress: NotRequired[EgressTotals]
    workspace_reset: NotRequired[Annotated[ResetInfo, "What reset restored."]]
    warning: NotRequired[str]


class WorkspaceSummary(TypedDict):
    workspace_id: str
    name: str | None
    labels: dict[str, str]
    environment: str
    state: str
    created_at: float
    last_activity_at: float
    expires_at: float
    command_count: int
    service_count: int
    running_service_count: int


class WorkspaceList(TypedDict):
    count: Annotated[int, "Workspaces in this result (a page of total)."]
    workspaces: list[WorkspaceSummary]
    total: Annotated[int, "Workspaces in all."]
    offset: Annotated[int, "The index of this page's first workspace."]
    next_offset: Annotated[int | None, "Where the next page starts (null: no more)."]


class WorkspaceDeleted(TypedDict):
    workspace_id: str
    deleted: bool
    reason: Annotated[str, "Why it was deleted: explicit_delete or ttl_expired."]


class CommandEntry(TypedDict):
    sequence: int
    command: str
    cwd: str
    exit_code: int
    duration_ms: int
    execution_mode: str
    recorded_at: float
    stdout: str
    stderr: str
    stdout_file: Annotated[str | None, "Where the full stdout was kept, if elsewhere."]
    stderr_file: Annotated[str | None, "Where the full stderr was kept, if elsewhere."]
    cancelled: bool
    stdout_bytes: NotRequired[StdoutBytes]
    stderr_bytes: NotRequired[StderrBytes]
    stdout_truncated: NotRequired[Annotated[bool, "True when stdout was cut here (marked)."]]
    stderr_truncated: NotRequired[Annotated[bool, "True when stderr was cut here (marked)."]]


class LogPage(TypedDict):
    sequence: int
    stream: Annotated[str, "stdout or stderr."]
    offset: Annotated[int, "The page's first byte in the stream."]
    returned_bytes: int
    total_bytes: Annotated[int, "The stream's length in bytes, as the history keeps it."]
    next_offset: Annotated[int | None, "Pass as offset for the next page (null: the end)."]


class WorkspaceLogs(TypedDict):
    workspace_id: str
    count: Annotated[int, "Entries in this result."]
    entries: Annotated[list[CommandEntry], "The exec calls, oldest first."]
    total: NotRequired[Annotated[int, "Entries in the history (of sequence, if given)."]]
    offset: NotRequired[Annotated[int, "The index of this page's first entry."]]
    next_offset: NotRequired[
        Annotated[int | None, "Pass as offset for the next page (null: none)."]
    ]
    page: NotRequired[Annotated[LogPage, "With stream: which bytes of it the entry holds."]]


class WorkspaceExecResult(TypedDict):
    workspace_id: str
    environment: str
    environment_version: str
    command: str
    cwd: str
    exit_code: int
    duration_ms: int
    execution_mode: str
    stdout: str
    stderr: str
    sequence: Annotated[int, "The command's number in the workspace's history."]
    timed_out: bool
    cancelled: bool
    stdout_truncated: StdoutCut
    stderr_truncated: StderrCut
    stdout_bytes: StdoutBytes
    stderr_bytes: StderrBytes
    warning: NotRequired[str]


class SyncInfo(TypedDict):
    mode: Annotated[str, "directory or tar: what was copied in."]
    source_path: str
    destination: str
    entry_count: int
    bytes_written: int


class SyncResult(TypedDict):
    workspace_id: str
    execution_mode: str
    workspace_sync: SyncInfo
    warning: NotRequired[str]


class ArtifactInfo(TypedDict):
    sha256: str
    size_bytes: int


class InstallManifest(TypedDict):
    source: str | None
    source_digest: str | None
    suite: str | None
    kernel_package: str | None
    kernel_release: str | None
    installed_at: float | None
    build_seconds: float | None
    artifacts: Annotated[dict[str, ArtifactInfo] | None, "The installed files by name."]
    package_count: int


class CaCertificate(TypedDict):
    name: str
    sha256: str


class EnvironmentInfo(TypedDict):
    name: str
    version: str
    description: str
    default_packages: list[str]
    distribution: str
    distribution_version: str
    platform: str
    oci_registry: None
    oci_repository: str
    oci_reference: str
    source_profile: str
    source_digest: str | None
    compatibility: str
    catalog_version: str
    installed: bool
    cache_dir: str
    install_dir: str
    install_manifest: NotRequired[InstallManifest]
    host_ca_certificates: NotRequired[list[CaCertificate]]
    host_ca_note: NotRequired[str]
    kernel_image: NotRequired[str]
    rootfs_image: NotRequired[str]
    source: NotRequired[str | None]


class PruneResult(TypedDict):
    deleted_environment_dirs: list[str]
    count: int
    deleted_cache_dirs: list[str]


class DoctorReport(TypedDict):
    platform: str
    version: str
    runtime_ok: bool
    kvm: dict[str, Any]
    engines: dict[str, dict[str, Any]]
    chosen_engine: str | None
    engine_request: str
    environment_cache: dict[str, Any]
    networking: dict[str, Any]
    catalog_version: str
    issues: list[str]
    state_dir: str
