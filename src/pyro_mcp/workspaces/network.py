"""A workspace's egress settings: its allowlist, the network summary in its status, and
its egress log."""

from __future__ import annotations

from typing import Any

from ..errors import ValidationError
from ..network import policy
from ..network.egress_log import MAX_ROWS, EgressLog
from .handle import Handle, operation
from .layout import WorkspaceLayout


def allow_hosts_for(network_policy: str, value: Any) -> list[str]:
    """A checked allowlist; one is only meaningful for a workspace with a network."""
    hosts = policy.allow_hosts(value)
    if hosts and network_policy == "off":
        raise ValidationError("allow_hosts needs a network: use network_policy 'egress'")
    return hosts


def save_allow_hosts(layout: WorkspaceLayout, hosts: list[str]) -> None:
    """Saved where the proxy reads it on every connection: takes effect at once."""
    policy.save(policy.network_dir(layout.root), hosts)


def network_info(layout: WorkspaceLayout) -> dict[str, Any]:
    """The allowlist and the egress totals, for the workspace's status."""
    directory = policy.network_dir(layout.root)
    try:
        hosts = policy.load(directory)
    except ValueError as exc:
        hosts = [f"<{exc}>"]
    return {"allow_hosts": hosts, "egress": EgressLog(directory).totals()}


@operation
def network_log(ws: Handle, limit: int = MAX_ROWS) -> dict[str, Any]:
    record = ws.record()
    info = network_info(ws.layout)
    entries = EgressLog(policy.network_dir(ws.layout.root)).entries(limit)
    return {
        "workspace_id": ws.id,
        "network_policy": record["network_policy"],
        **info,
        "count": len(entries),
        "entries": entries,
    }
