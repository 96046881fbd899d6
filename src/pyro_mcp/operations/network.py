"""A workspace's egress log (issue 11): what its guest reached through the proxy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, cast

from ..network.egress_log import MAX_ROWS
from .base import OperationsBase
from .registry import FULL, HumanOutput, Param, operation
from .render import kv_line
from .workspaces import WorkspaceId

if TYPE_CHECKING:  # the shapes are for mypy and the MCP schema: not on the CLI's path
    from .results_work import NetworkLog

MCP_LOG_ROWS = 25  # a logged connection is at most ~400 bytes of JSON
LOG_FIELDS = ["at", "allowed", "method", "host", "port", "address", "bytes_up", "bytes_down"]


def render_network_log(data: dict[str, Any]) -> HumanOutput:
    egress = data["egress"]
    head = kv_line(
        "workspace-network",
        {**data, **egress, "allow_hosts": ",".join(data["allow_hosts"]) or "(any public host)"},
        ["workspace_id", "network_policy", "allow_hosts", "allowed", "denied"],
    )
    lines = [head]
    for entry in data["entries"]:
        line = kv_line("egress", {**entry, "at": round(entry["at"], 3)}, LOG_FIELDS)
        if entry["reason"]:
            line += f" reason={entry['reason']!r}"
        lines.append(line)
    return HumanOutput(stdout="\n".join(lines) + "\n")


class NetworkOperations(OperationsBase):
    @operation(
        mcp="workspace_network_log",
        cli=("workspace", "network", "log"),
        profiles=FULL,
        read_only=True,
        render=render_network_log,
    )
    def network_log_workspace(
        self,
        workspace_id: WorkspaceId,
        limit: Annotated[
            int,
            Param(
                f"The newest connections to show (1-{MAX_ROWS}; MCP calls default to "
                f"{MCP_LOG_ROWS}, a reply under 16 KiB).",
                ge=1,
                le=MAX_ROWS,
                mcp_default=MCP_LOG_ROWS,
            ),
        ] = 100,
    ) -> NetworkLog:
        """The workspace's egress log, oldest first: each connection through its proxy
        (host, port, allowed or why refused, bytes each way, duration), with the totals."""
        from ..workspaces import network

        return cast("NetworkLog", network.network_log(self._ws(workspace_id), limit))
