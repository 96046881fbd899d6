"""Workspace lifecycle operations (PRODUCT_SPEC §2.3–2.4)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, cast

from ..environments.catalog import DEFAULT_ENVIRONMENT
from ..validation import ID_PATTERN, NAME_PATTERN
from ..workspaces.records import NETWORK_POLICIES, parse_label_args
from ..workspaces.secrets import NAME_RE as SECRET_NAME_RE
from ..workspaces.secrets import parse_cli
from .base import OperationsBase
from .params import (
    AllowHostCompat,
    DiskMib,
    IdleStopChange,
    IdleStopSeconds,
    MaxResultBytes,
    MemMib,
    PageLimit,
    PageOffset,
    TtlExtension,
    TtlSeconds,
    VcpuCount,
)
from .registry import CORE, FULL, Param, operation
from .render import id_only
from .render_workspaces import render_delete, render_list, render_logs, render_workspace

if TYPE_CHECKING:  # the shapes are for mypy and the MCP schema: not on the CLI's path
    from .results import WorkspaceDeleted, WorkspaceInfo, WorkspaceList, WorkspaceLogs
    from .results_work import WorkspaceForked

AllowHosts = Annotated[
    list[str] | None,
    Param(
        "Hosts the guest may reach through its egress proxy: exact names or *.suffix. "
        "Unset: any public host. Loopback, private, link-local and the host's own addresses "
        "are refused whatever this says.",
        cli_help="Hosts the guest may reach through its egress proxy: exact names or *.suffix "
        "(CLI: --allow-host NAME, repeatable). Unset: any public host. Loopback, private, "
        "link-local and the host's own addresses are refused whatever this says.",
        cli="--allow-host",
        cli_append=True,
        in_core=False,
        metavar="HOST",
        mcp_role="allow_hosts",  # over MCP: within pyro mcp serve --allow-host
    ),
]
WorkspaceId = Annotated[
    str,
    Param(
        "The workspace's id (12 hex characters).",
        cli="positional",
        metavar="WORKSPACE_ID",
        pattern=ID_PATTERN,
    ),
]
ForkSource = Annotated[
    str,
    Param(
        "The id of the workspace to fork (12 hex characters).",
        cli="positional",
        metavar="WORKSPACE_ID",
        pattern=ID_PATTERN,
        mcp_role="network_source",  # the new one gets its network: held to a server's ceiling
    ),
]
Labels = Annotated[
    dict[str, str] | None,
    Param(
        "Labels as key/value strings (keys: letters, digits, . _ -; values: one line).",
        cli_help="Labels as key/value strings (CLI: --label KEY=VALUE, repeatable).",
        cli="--label",
        cli_append=True,
        cli_convert=lambda v: parse_label_args(v) or None,
        metavar="KEY=VALUE",
    ),
]

NetworkPolicy = Annotated[
    str,
    Param(
        "off (no network), egress, or egress+published-ports.",
        choices=NETWORK_POLICIES,
        in_core=False,
        mcp_role="network_policy",  # over MCP: at most pyro mcp serve --network-ceiling
    ),
]
Secrets = Annotated[
    list[dict[str, str]] | None,
    Param(
        "Secrets as [{name, value | file_path, hosts?, header?, format?}]. With hosts a "
        "secret is brokered (recommended): the guest holds a placeholder and the egress proxy "
        "adds the value (header, default Authorization; format, default 'Bearer {value}') "
        "for those hosts only. Without, it is plain: the value is in the guest. Values are "
        "never shown; map them into commands with secret_env.",
        cli_help="Secrets as [{name, value | file_path, hosts?, header?, format?}] (CLI: "
        "--secret NAME=VALUE|@PATH, --secret-file NAME=PATH, --secret-host NAME=HOST, "
        "--secret-header NAME=HEADER). With hosts a secret is brokered (recommended): "
        "the guest holds a placeholder and the egress proxy adds the value (header, "
        "default Authorization: format, default 'Bearer {value}') for those hosts only. "
        "Without, it is plain: the value is in the guest. Values are never shown; map "
        "them into commands with secret_env.",
        items={"type": "string", "pattern": SECRET_NAME_RE.pattern},
        cli="--secret",
        cli_append=True,
        in_core=False,
        metavar="NAME=VALUE",
        cli_convert=lambda v: parse_cli(v, "value"),
        cli_also=(
            ("--secret-file", lambda v: parse_cli(v, "file_path")),
            ("--secret-host", lambda v: parse_cli(v, "hosts")),
            ("--secret-header", lambda v: parse_cli(v, "header")),
        ),
        mcp_role="secret_names",
    ),
]


class WorkspaceOperations(OperationsBase):
    @operation(
        mcp="workspace_create",
        cli=("workspace", "create"),
        profiles=CORE,
        render=render_workspace,
        reaches_network=True,
        cli_outputs=(id_only("workspace_id", "workspace"),),
    )
    def create_workspace(
        self,
        environment: Annotated[
            str,
            Param("Environment name from the catalog.", cli="positional", metavar="ENVIRONMENT"),
        ] = DEFAULT_ENVIRONMENT,
        vcpu_count: VcpuCount = 1,
        mem_mib: MemMib = 1024,
        ttl_seconds: TtlSeconds = 600,
        network_policy: NetworkPolicy = "off",
        allow_hosts: AllowHosts = None,
        allow_host_compat: AllowHostCompat = False,
        seed_path: Annotated[
            str | None,
            Param(
                "Host directory or .tar/.tar.gz/.tgz whose contents become /workspace (and the "
                "baseline for diff and reset).",
                metavar="PATH",
                mcp_role="host_path",
            ),
        ] = None,
        name: Annotated[str | None, Param("A name for humans and models (≤120 chars).")] = None,
        labels: Labels = None,
        secrets: Secrets = None,
        disk_mib: DiskMib = 8192,
        idle_stop_seconds: IdleStopSeconds = 0,
    ) -> WorkspaceInfo:
        """Create and start a persistent workspace, optionally seeded from the host.

        Returns once the sandbox has booted and the seed is in /workspace. On any failure
        everything is rolled back.
        """
        return cast(
            "WorkspaceInfo",
            self._manager.workspaces.create(
                environment=environment,
                vcpu_count=vcpu_count,
                mem_mib=mem_mib,
                disk_mib=disk_mib,
                ttl_seconds=ttl_seconds,
                idle_stop_seconds=idle_stop_seconds,
                network_policy=network_policy,
                allow_host_compat=allow_host_compat,
                seed_path=seed_path,
                name=name,
                labels=labels,
                secrets=secrets,
                allow_hosts=allow_hosts,
                progress=self._manager.progress,
                notify=self._manager.notify,
            ),
        )

    @operation(
        mcp="workspace_fork",
        cli=("workspace", "fork"),
        profiles=CORE,
        render=render_workspace,
        cli_outputs=(id_only("workspace_id", "workspace"),),
    )
    def fork_workspace(
        self,
        workspace_id: ForkSource,
        snapshot: Annotated[
            str | None,
            Param(
                "Fork from this snapshot of the source (baseline too) instead of its live state.",
                metavar="NAME",
                pattern=NAME_PATTERN,  # shown to a model as snapshot_create's name is
                in_core=False,  # workspace-core has no snapshot tools: a live fork there
            ),
        ] = None,
        name: Annotated[
            str | None, Param("The new workspace's name (≤120 chars; default: the source's).")
        ] = None,
        labels: Labels = None,
    ) -> WorkspaceForked:
        """Fork a workspace: a new, started workspace from its live state or a snapshot.

        The new one gets copies of the source's /workspace and system layer (a started
        source keeps running; a stopped one stays stopped), and its environment, limits,
        network policy, secrets, labels and baseline; labels given here are added over the
        source's. Services and shells are not copied. On any failure nothing is left behind.
        """
        from ..workspaces import fork

        manager = self._manager.workspaces
        result = fork.fork(manager, workspace_id, snapshot=snapshot, name=name, labels=labels)
        return cast("WorkspaceForked", result)

    @operation(
        mcp="workspace_list",
        cli=("workspace", "list"),
        profiles=CORE,
        read_only=True,
        render=render_list,
    )
    def list_workspaces(
        self,
        offset: PageOffset = 0,
        limit: PageLimit = None,
        max_result_bytes: MaxResultBytes = None,
    ) -> WorkspaceList:
        """List workspaces, most recently active first.

        Paged: total, offset and next_offset say where the page is."""
        result = self._manager.workspaces.list_all(offset, limit, max_result_bytes)
        return cast("WorkspaceList", result)

    @operation(
        mcp="workspace_update", cli=("workspace", "update"), profiles=CORE, render=render_workspace
    )
    def update_workspace(
        self,
        workspace_id: WorkspaceId,
        name: Annotated[str | None, Param("New name.")] = None,
        clear_name: Annotated[bool, Param("Remove the name.")] = False,
        labels: Labels = None,
        clear_labels: Annotated[
            list[str] | None,
            Param(
                "Label keys to remove.",
                cli_help="Label keys to remove (CLI: --clear-label KEY, repeatable).",
                cli="--clear-label",
                cli_append=True,
                metavar="KEY",
            ),
        ] = None,
        allow_hosts: AllowHosts = None,
        ttl_seconds: TtlExtension = None,
        idle_stop_seconds: IdleStopChange = None,
    ) -> WorkspaceInfo:
        """Change a workspace's name, labels (merged; clear_labels removes), allow_hosts
        (replaced; takes effect for the next connection; [] allows any public host), its
        lifetime (ttl_seconds: expire that long from now) or idle_stop_seconds."""
        return cast(
            "WorkspaceInfo",
            self._manager.workspaces.update(
                workspace_id,
                name=name,
                clear_name=clear_name,
                labels=labels,
                clear_labels=clear_labels,
                allow_hosts=allow_hosts,
                ttl_seconds=ttl_seconds,
                idle_stop_seconds=idle_stop_seconds,
            ),
        )

    @operation(
        mcp="workspace_status",
        cli=("workspace", "status"),
        profiles=CORE,
        read_only=True,
        render=render_workspace,
    )
    def status_workspace(self, workspace_id: WorkspaceId) -> WorkspaceInfo:
        """Show a workspace (state refreshed: a crashed sandbox shows as stopped)."""
        return cast("WorkspaceInfo", self._manager.workspaces.status(workspace_id))

    @operation(
        mcp="workspace_logs",
        cli=("workspace", "logs"),
        profiles=CORE,
        read_only=True,
        render=render_logs,
    )
    def logs_workspace(
        self,
        workspace_id: WorkspaceId,
        sequence: Annotated[int | None, Param("Only this command (its sequence).", ge=1)] = None,
        stream: Annotated[
            str | None,
            Param(
                "Read this stream of command `sequence` page by page: offset and limit "
                "count its bytes (UTF-8; pages end on a character, join them byte-exact).",
                choices=("stdout", "stderr"),
            ),
        ] = None,
        offset: Annotated[
            int,
            Param("Start at this entry, or this byte with stream; pass next_offset.", ge=0),
        ] = 0,
        limit: Annotated[
            int | None,
            Param("At most this many entries, or bytes with stream (null: all that fit).", ge=1),
        ] = None,
        tail: Annotated[int | None, Param("Only the last this many entries.", ge=1)] = None,
        max_result_bytes: MaxResultBytes = None,
    ) -> WorkspaceLogs:
        """The workspace's command history (exec calls), oldest first; cleared by reset.

        Paged: total, offset and next_offset say where the page is. Long output is cut in
        the middle (marked); read a whole stream with sequence and stream.
        """
        page = self._manager.workspaces.logs(
            workspace_id,
            sequence=sequence,
            stream=stream,
            offset=offset,
            limit=limit,
            tail=tail,
            budget=max_result_bytes,
        )
        return cast("WorkspaceLogs", page)

    @operation(
        mcp="workspace_delete",
        cli=("workspace", "delete"),
        profiles=CORE,
        destructive=True,
        render=render_delete,
    )
    def delete_workspace(self, workspace_id: WorkspaceId) -> WorkspaceDeleted:
        """Stop the workspace and delete everything it had."""
        return cast("WorkspaceDeleted", self._manager.workspaces.delete(workspace_id))

    @operation(
        mcp="workspace_stop",
        cli=("workspace", "stop"),
        profiles=FULL,
        destructive=True,  # its services and shells end
        render=render_workspace,
    )
    def stop_workspace(
        self,
        workspace_id: WorkspaceId,
        suspend: Annotated[
            bool,
            Param(
                "Keep the memory too (qemu engine only): start resumes the VM with its "
                "processes, services and shells as they were. An idle stop never does."
            ),
        ] = False,
    ) -> WorkspaceInfo:
        """Stop the sandbox; /workspace, history and snapshots are kept.

        Its running services and open shells end (and what they had in memory), unless
        suspend keeps a qemu VM's memory; a plain start restarts the services.
        """
        return cast("WorkspaceInfo", self._manager.workspaces.stop(workspace_id, suspend))

    @operation(
        mcp="workspace_start", cli=("workspace", "start"), profiles=FULL, render=render_workspace
    )
    def start_workspace(self, workspace_id: WorkspaceId) -> WorkspaceInfo:
        """Start a stopped workspace again with its /workspace as it was."""
        return cast("WorkspaceInfo", self._manager.workspaces.start(workspace_id))
