"""Services in a workspace (PRODUCT_SPEC §2.12): start with readiness, list, status, logs,
stop. The guest agent runs them; this side validates and shapes the results."""

from __future__ import annotations

from typing import Any

from .. import validation
from ..engines.profile import profile_of
from ..errors import ValidationError
from . import records
from . import secrets as secret_store
from .handle import Handle, operation
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


def _name(name: Any) -> str:
    if not isinstance(name, str) or not records.NAME_RE.match(name):
        raise ValidationError(f"service name {name!r} must match {records.NAME_RE.pattern}")
    return name


def _payload(ws: Handle, record: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    out = {
        "workspace_id": ws.id,
        "published_ports": [],
        **data,
        "execution_mode": ws.execution_mode(record),
    }
    for key in ("stdout", "stderr"):
        if key in out:
            out[key] = ws.redact(out[key])
    return out


@operation
def service_start(
    ws: Handle,
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
    name = _name(name)
    command = validation.command(command)
    timeout = float(ready_timeout_seconds)  # its range: the Param (operations/services.py)
    interval = ready_interval_ms
    ports = validate_ports(published_ports)
    record = ws.started("service_start")
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
    result, _ = ws.call("service_start", args, timeout=timeout + 60)
    ws.touch()
    return _payload(ws, record, result)


@operation
def service_list(ws: Handle) -> dict[str, Any]:
    record = ws.record()
    items: list[dict[str, Any]] = []
    if record["state"] == "started":
        result, _ = ws.call("service_list")
        items = [_payload(ws, record, s) for s in result["services"]]
    running = sum(1 for s in items if s["state"] == "running")
    return {
        "workspace_id": ws.id,
        "count": len(items),
        "running_count": running,
        "services": items,
    }


@operation
def service_status(ws: Handle, name: str) -> dict[str, Any]:
    record = ws.started("service_status")
    result, _ = ws.call("service_status", {"name": _name(name)})
    return _payload(ws, record, result)


@operation
def service_logs(
    ws: Handle, name: str, tail_lines: int = 200, all: bool = False, budget: int | None = None
) -> dict[str, Any]:
    record = ws.started("service_logs")
    args = {"name": _name(name), "tail_lines": None if all else tail_lines}
    result, _ = ws.call("service_logs", args)
    payload = _payload(ws, record, result)
    if budget is not None:
        from .bounds import shrink

        shrink(payload, ("stdout", "stderr"), budget, lambda _: LOGS_HINT)
    return payload


LOGS_HINT = "ask for fewer tail_lines or a larger max_result_bytes"


@operation
def service_stop(ws: Handle, name: str) -> dict[str, Any]:
    record = ws.started("service_stop")
    result, _ = ws.call("service_stop", {"name": _name(name)}, timeout=60)
    ws.touch()
    return _payload(ws, record, result)


def service_counts(ws: Handle, record: dict[str, Any]) -> tuple[int, int]:
    """How many services a started workspace has, and how many run (0, 0 if unknown)."""
    if record["state"] != "started":
        return 0, 0
    try:
        result, _ = ws.call("service_list", timeout=10)
    except Exception:
        return 0, 0
    services = result["services"]
    return len(services), sum(1 for s in services if s["state"] == "running")
