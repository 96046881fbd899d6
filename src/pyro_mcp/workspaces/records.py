"""Workspace record rules: names, labels, network policies, and the public payloads."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..engines.profile import profile_of
from ..errors import ValidationError
from ..lifetime import idle_stop_at
from ..validation import NAME_PATTERN

if TYPE_CHECKING:
    from ..core import Core

NAME_RE = re.compile(NAME_PATTERN)
NETWORK_POLICIES = ("off", "egress", "egress+published-ports")
LIST_FIELDS = (
    "workspace_id",
    "name",
    "labels",
    "environment",
    "state",
    "created_at",
    "last_activity_at",
    "expires_at",
    "command_count",
    "service_count",
    "running_service_count",
)


def workspace_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("workspace name must not be empty")
    name = str(value).strip()
    if len(name) > 120:
        raise ValidationError("workspace name must be at most 120 characters")
    if any(ch in name for ch in "\n\r\0"):
        raise ValidationError("workspace name must be one line")
    return name


def label_key(key: Any) -> str:
    if not isinstance(key, str) or not NAME_RE.match(key):
        raise ValidationError(
            f"label key {key!r} must match {NAME_RE.pattern} (letters, digits, . _ -)"
        )
    return str(key)


def label_value(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"label {key!r} must have a non-empty value")
    text = str(value).strip()
    if len(text) > 120 or "\n" in text or "\r" in text:
        raise ValidationError(f"label {key!r}: value must be one line of at most 120 characters")
    return text


def labels(values: Any) -> dict[str, str]:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValidationError("labels must be an object of key/value strings")
    return {label_key(k): label_value(k, v) for k, v in sorted(values.items())}


def parse_label_args(items: list[str] | None) -> dict[str, str]:
    """CLI ``--label KEY=VALUE`` (repeatable)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValidationError(f"--label expects KEY=VALUE, got {item!r}")
        out[label_key(key)] = label_value(key, value)
    return out


def network_policy(value: Any) -> str:
    if value not in NETWORK_POLICIES:
        raise ValidationError(f"network_policy must be one of: {', '.join(NETWORK_POLICIES)}")
    return str(value)


def execution_mode(engine: str) -> str:
    return profile_of(engine).execution_mode


def core(record: dict[str, Any]) -> Core:
    """The part of a workspace record every VM has too."""
    from ..core import Core

    return Core(
        id=record["workspace_id"],
        kind="workspace",
        engine=record["engine"],
        environment=record["environment"],
        environment_version=record["environment_version"],
        vcpu_count=record["vcpu_count"],
        mem_mib=record["mem_mib"],
        ttl_seconds=record["ttl_seconds"],
        created_at=record["created_at"],
        expires_at=record["expires_at"],
        state=record["state"],
        network=record["network_policy"] != "off",
        allow_host_compat=record["allow_host_compat"],
    )


def payload(record: dict[str, Any]) -> dict[str, Any]:
    """The full workspace payload (PRODUCT_SPEC §2.3): the core's, and the workspace's own."""
    from ..core import payload as core_payload

    return {
        **core_payload(core(record)),
        "name": record["name"],
        "labels": record["labels"],
        "disk_mib": record["disk_mib"],
        "last_activity_at": record["last_activity_at"],
        "idle_stop_seconds": record.get("idle_stop_seconds", 0),
        "idle_stop_at": idle_stop_at(record),
        "network_policy": record["network_policy"],
        "workspace_path": "/workspace",
        "workspace_seed": record["workspace_seed"],
        "secrets": record["secrets"],
        "command_count": record["command_count"],
        "last_command": record["last_command"],
        "reset_count": record["reset_count"],
        "last_reset_at": record["last_reset_at"],
        "service_count": record.get("service_count", 0),
        "running_service_count": record.get("running_service_count", 0),
        "last_error": record["last_error"],
    }


def list_entry(record: dict[str, Any]) -> dict[str, Any]:
    full = payload(record)
    return {key: full[key] for key in LIST_FIELDS}


def sort_key(record: dict[str, Any]) -> tuple[float, float, str]:
    """last_activity_at desc, then created_at desc, then workspace_id asc."""
    return (
        -float(record["last_activity_at"]),
        -float(record["created_at"]),
        record["workspace_id"],
    )
