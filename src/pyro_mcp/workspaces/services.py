"""Services in a workspace (PRODUCT_SPEC §2.12): start with readiness, list, status, logs,
stop. The guest agent runs them; this side validates and shapes the results."""

from __future__ import annotations

from typing import Any

from .. import validation
from ..engines.profile import profile_of
from ..errors import ValidationError
from . import records
from . import secrets as secret_store
from .lifecycle import WorkspaceLifecycle
from .paths import normalize_workspace_path
from .ports import validate_ports

READINESS_TYPES = {"file": "path", "tcp": "address", "http": "url", "command": "command"}


def readiness_from(
    readiness: dict[str, Any] | None,
    ready_file: str | None,
    ready_tcp: str | None,
    ready_http: str | None,
    ready_command: str | None,
) -> dict[str, Any] | None:
    """One readiness check from the SDK dict or the flat ready_* arguments."""
    flat = [
        (k, v)
        for k, v in (
            ("file", ready_file),
            ("tcp", ready_tcp),
            ("http", ready_http),
            ("command", ready_command),
        )
        if v is not None
    ]
    if readiness is not None and flat:
        raise ValidationError("give readiness or ready_* arguments, not both")
    if readiness is None and not flat:
        return None
    if readiness is None:
        kind, first = flat[0]  # file > tcp > http > command (PRODUCT_SPEC §2.12)
        readiness = {"type": kind, READINESS_TYPES[kind]: first}
    if not isinstance(readiness, dict) or readiness.get("type") not in READINESS_TYPES:
        raise ValidationError(f"readiness type must be one of: {', '.join(READINESS_TYPES)}")
    key = READINESS_TYPES[readiness["type"]]
    value = readiness.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{readiness['type']} readiness needs a non-empty {key!r}")
    if readiness["type"] == "tcp":
        _host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValidationError("tcp readiness address must be HOST:PORT")
    if readiness["type"] == "http" and not value.startswith(("http://", "https://")):
        raise ValidationError("http readiness url must start with http:// or https://")
    return {"type": readiness["type"], key: value}


class ServiceMixin(WorkspaceLifecycle):
    def _service_name(self, name: Any) -> str:
        if not isinstance(name, str) or not records.NAME_RE.match(name):
            raise ValidationError(f"service name {name!r} must match {records.NAME_RE.pattern}")
        return name

    def _service_payload(
        self, workspace_id: str, engine: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        out = {
            "workspace_id": workspace_id,
            "published_ports": [],
            **data,
            "execution_mode": records.execution_mode(engine),
        }
        for key in ("stdout", "stderr"):
            if key in out:
                out[key] = self.redact(workspace_id, out[key])
        return out

    def service_start(
        self,
        workspace_id: str,
        name: str,
        *,
        command: str,
        cwd: str = "/workspace",
        readiness: dict[str, Any] | None = None,
        ready_timeout_seconds: float = 30,
        ready_interval_ms: int = 500,
        secret_env: dict[str, str] | None = None,
        published_ports: list[dict[str, int]] | None = None,
    ) -> dict[str, Any]:
        name = self._service_name(name)
        command = validation.command(command)
        timeout = validation.timeout_seconds(ready_timeout_seconds)
        interval = validation.int_in_range("ready_interval_ms", ready_interval_ms, 10, 60000)
        ports = validate_ports(published_ports)
        record = self.require_started(workspace_id, "service_start")
        if not profile_of(record["engine"]).has_guest_workspace:  # nor isolation
            raise ValidationError("services are unavailable for host_compat workspaces")
        if ports and record["network_policy"] != "egress+published-ports":
            raise ValidationError(
                "published ports need network_policy 'egress+published-ports' (this workspace "
                f"has {record['network_policy']!r})"
            )
        env_map = secret_store.env_mapping(secret_env, [s["name"] for s in record["secrets"]])
        args = {
            "name": name,
            "command": command,
            "cwd": normalize_workspace_path(cwd),
            "readiness": readiness,
            "ready_timeout_seconds": timeout,
            "ready_interval_ms": interval,
            "secret_env": env_map,
            "published_ports": ports,
        }
        result, _ = self.call(workspace_id, "service_start", args, timeout=timeout + 60)
        self.touch(workspace_id)
        return self._service_payload(workspace_id, record["engine"], result)

    def service_list(self, workspace_id: str) -> dict[str, Any]:
        record = self.record(workspace_id)
        items: list[dict[str, Any]] = []
        if record["state"] == "started":
            result, _ = self.call(workspace_id, "service_list")
            items = [
                self._service_payload(workspace_id, record["engine"], s) for s in result["services"]
            ]
        running = sum(1 for s in items if s["state"] == "running")
        return {
            "workspace_id": workspace_id,
            "count": len(items),
            "running_count": running,
            "services": items,
        }

    def service_status(self, workspace_id: str, name: str) -> dict[str, Any]:
        record = self.require_started(workspace_id, "service_status")
        result, _ = self.call(workspace_id, "service_status", {"name": self._service_name(name)})
        return self._service_payload(workspace_id, record["engine"], result)

    def service_logs(
        self, workspace_id: str, name: str, tail_lines: int = 200, all: bool = False
    ) -> dict[str, Any]:
        if not all:
            tail_lines = validation.int_in_range("tail_lines", tail_lines, 1, 1_000_000)
        record = self.require_started(workspace_id, "service_logs")
        result, _ = self.call(
            workspace_id,
            "service_logs",
            {"name": self._service_name(name), "tail_lines": None if all else tail_lines},
        )
        return self._service_payload(workspace_id, record["engine"], result)

    def service_stop(self, workspace_id: str, name: str) -> dict[str, Any]:
        record = self.require_started(workspace_id, "service_stop")
        result, _ = self.call(
            workspace_id, "service_stop", {"name": self._service_name(name)}, timeout=60
        )
        self.touch(workspace_id)
        return self._service_payload(workspace_id, record["engine"], result)

    def service_counts(self, record: dict[str, Any]) -> tuple[int, int]:
        if record["state"] != "started":
            return 0, 0
        try:
            result, _ = self.call(record["workspace_id"], "service_list", timeout=10)
        except Exception:
            return 0, 0
        services = result["services"]
        return len(services), sum(1 for s in services if s["state"] == "running")
