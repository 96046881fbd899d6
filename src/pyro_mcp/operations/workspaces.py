"""Workspace lifecycle operations (PRODUCT_SPEC §2.3–2.4)."""

from __future__ import annotations

from typing import Annotated, Any

from ..environments.catalog import DEFAULT_ENVIRONMENT
from ..workspaces.records import NETWORK_POLICIES, parse_label_args
from ..workspaces.secrets import parse_cli
from .base import OperationsBase
from .params import AllowHostCompat, DiskMib, MemMib, TtlSeconds, VcpuCount
from .registry import CORE, FULL, Param, operation
from .render_workspaces import render_delete, render_list, render_logs, render_workspace

AllowHosts = Annotated[
    list[str] | None,
    Param(
        "Hosts the guest may reach through its egress proxy: exact names or *.suffix "
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
    str, Param("The workspace's id (12 hex characters).", cli="positional", metavar="WORKSPACE_ID")
]
Labels = Annotated[
    dict[str, str] | None,
    Param(
        "Labels as key/value strings (CLI: --label KEY=VALUE, repeatable).",
        cli="--label",
        cli_append=True,
        cli_convert=lambda v: parse_label_args(v) or None,
        metavar="KEY=VALUE",
    ),
]


class WorkspaceOperations(OperationsBase):
    @operation(
        mcp="workspace_create", cli=("workspace", "create"), profiles=CORE, render=render_workspace
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
        network_policy: Annotated[
            str,
            Param(
                "off (no network), egress, or egress+published-ports.",
                choices=NETWORK_POLICIES,
                in_core=False,
                mcp_role="network_policy",  # over MCP: at most pyro mcp serve --network-ceiling
            ),
        ] = "off",
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
        secrets: Annotated[
            list[dict[str, str]] | None,
            Param(
                "Secrets as [{name, value | file_path, hosts?, header?, format?}] (CLI: "
                "--secret NAME=VALUE|@PATH, --secret-file NAME=PATH, --secret-host NAME=HOST, "
                "--secret-header NAME=HEADER). With hosts a secret is brokered (recommended): "
                "the guest holds a placeholder and the egress proxy adds the value (header, "
                "default Authorization: format, default 'Bearer {value}') for those hosts only. "
                "Without, it is plain: the value is in the guest. Values are never shown; map "
                "them into commands with secret_env.",
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
        ] = None,
        disk_mib: DiskMib = 8192,
    ) -> dict[str, Any]:
        """Create and start a persistent workspace, optionally seeded from the host.

        Returns once the sandbox has booted and the seed is in /workspace. On any failure
        everything is rolled back.
        """
        return self._manager.workspaces.create(
            environment=environment,
            vcpu_count=vcpu_count,
            mem_mib=mem_mib,
            disk_mib=disk_mib,
            ttl_seconds=ttl_seconds,
            network_policy=network_policy,
            allow_host_compat=allow_host_compat,
            seed_path=seed_path,
            name=name,
            labels=labels,
            secrets=secrets,
            allow_hosts=allow_hosts,
            progress=self._manager.progress,
            notify=self._manager.notify,
        )

    @operation(
        mcp="workspace_list",
        cli=("workspace", "list"),
        profiles=CORE,
        read_only=True,
        render=render_list,
    )
    def list_workspaces(self) -> dict[str, Any]:
        """List workspaces, most recently active first."""
        return self._manager.workspaces.list_all()

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
                "Label keys to remove (CLI: --clear-label KEY, repeatable).",
                cli="--clear-label",
                cli_append=True,
                metavar="KEY",
            ),
        ] = None,
        allow_hosts: AllowHosts = None,
    ) -> dict[str, Any]:
        """Change a workspace's name, labels (merged; clear_labels removes) or allow_hosts
        (replaced; takes effect for the next connection; [] allows any public host)."""
        return self._manager.workspaces.update(
            workspace_id,
            name=name,
            clear_name=clear_name,
            labels=labels,
            clear_labels=clear_labels,
            allow_hosts=allow_hosts,
        )

    @operation(
        mcp="workspace_status",
        cli=("workspace", "status"),
        profiles=CORE,
        read_only=True,
        render=render_workspace,
    )
    def status_workspace(self, workspace_id: WorkspaceId) -> dict[str, Any]:
        """Show a workspace (state refreshed: a crashed sandbox shows as stopped)."""
        return self._manager.workspaces.status(workspace_id)

    @operation(
        mcp="workspace_logs",
        cli=("workspace", "logs"),
        profiles=CORE,
        read_only=True,
        render=render_logs,
    )
    def logs_workspace(self, workspace_id: WorkspaceId) -> dict[str, Any]:
        """The workspace's command history (exec calls), oldest first; cleared by reset."""
        return self._manager.workspaces.logs(workspace_id)

    @operation(
        mcp="workspace_delete",
        cli=("workspace", "delete"),
        profiles=CORE,
        destructive=True,
        render=render_delete,
    )
    def delete_workspace(self, workspace_id: WorkspaceId) -> dict[str, Any]:
        """Stop the workspace and delete everything it had."""
        return self._manager.workspaces.delete(workspace_id)

    @operation(
        mcp="workspace_stop", cli=("workspace", "stop"), profiles=FULL, render=render_workspace
    )
    def stop_workspace(self, workspace_id: WorkspaceId) -> dict[str, Any]:
        """Stop the sandbox; /workspace, history and snapshots are kept."""
        return self._manager.workspaces.stop(workspace_id)

    @operation(
        mcp="workspace_start", cli=("workspace", "start"), profiles=FULL, render=render_workspace
    )
    def start_workspace(self, workspace_id: WorkspaceId) -> dict[str, Any]:
        """Start a stopped workspace again with its /workspace as it was."""
        return self._manager.workspaces.start(workspace_id)
