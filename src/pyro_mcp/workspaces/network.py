"""A workspace's metadata and egress settings: update (name, labels, allow_hosts), the
network summary in its status, and its egress log."""

from __future__ import annotations

import time
from typing import Any

from ..errors import ValidationError
from ..network import policy
from ..network.egress_log import MAX_ROWS, EgressLog
from . import records
from .lifecycle import WorkspaceLifecycle


class NetworkMixin(WorkspaceLifecycle):
    def allow_hosts_for(self, network_policy: str, value: Any) -> list[str]:
        """A checked allowlist; one is only meaningful for a workspace with a network."""
        hosts = policy.allow_hosts(value)
        if hosts and network_policy == "off":
            raise ValidationError("allow_hosts needs a network: use network_policy 'egress'")
        return hosts

    def save_allow_hosts(self, workspace_id: str, hosts: list[str]) -> None:
        """Saved where the proxy reads it on every connection: takes effect at once."""
        policy.save(policy.network_dir(self.layout(workspace_id).root), hosts)

    def network_info(self, record: dict[str, Any]) -> dict[str, Any]:
        """The allowlist and the egress totals, for the workspace's status."""
        directory = policy.network_dir(self.layout(record["workspace_id"]).root)
        try:
            hosts = policy.load(directory)
        except ValueError as exc:
            hosts = [f"<{exc}>"]
        return {"allow_hosts": hosts, "egress": EgressLog(directory).totals()}

    def network_log(self, workspace_id: str, limit: int = MAX_ROWS) -> dict[str, Any]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_ROWS:
            raise ValidationError(f"limit must be an integer from 1 to {MAX_ROWS}")
        record = self.record(workspace_id)
        info = self.network_info(record)
        log = EgressLog(policy.network_dir(self.layout(workspace_id).root))
        entries = log.entries(limit)
        return {
            "workspace_id": workspace_id,
            "network_policy": record["network_policy"],
            **info,
            "count": len(entries),
            "entries": entries,
        }

    def update(
        self,
        workspace_id: str,
        *,
        name: str | None = None,
        clear_name: bool = False,
        labels: dict[str, str] | None = None,
        clear_labels: list[str] | None = None,
        allow_hosts: list[str] | None = None,
    ) -> dict[str, Any]:
        if name is not None and clear_name:
            raise ValidationError("use either name or clear_name, not both")
        record = self.record(workspace_id)
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = records.workspace_name(name)
        if clear_name:
            changes["name"] = None
        new_labels = dict(record["labels"])
        new_labels.update(self.redactor(workspace_id).value(records.labels(labels)))
        for key in clear_labels or []:
            new_labels.pop(records.label_key(key), None)
        if new_labels != record["labels"]:
            changes["labels"] = dict(sorted(new_labels.items()))
        hosts = None
        if allow_hosts is not None:
            hosts = self.allow_hosts_for(record["network_policy"], allow_hosts)
            if hosts == self.network_info(record)["allow_hosts"]:
                hosts = None
        metadata = {k: v for k, v in changes.items() if record.get(k) != v}
        if not metadata and hosts is None:
            raise ValidationError("workspace update requested no effective metadata change")
        if hosts is not None:
            self.save_allow_hosts(workspace_id, hosts)
        self.store.update(workspace_id, **metadata, last_activity_at=time.time())
        return self.status(workspace_id)

    def status(self, workspace_id: str) -> dict[str, Any]:
        raise NotImplementedError  # the manager's
