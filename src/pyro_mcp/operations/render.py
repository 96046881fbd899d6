"""Human renderings shared by operation declarations (the CLI's non-JSON output)."""

from __future__ import annotations

from typing import Any

from .registry import HumanOutput


def kv_line(tag: str, data: dict[str, Any], keys: list[str]) -> str:
    parts = []
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and (" " in value or not value):
            value = repr(value)
        parts.append(f"{key}={value}")
    return f"[{tag}] " + " ".join(parts)


def details(data: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    lines = []
    for key, value in data.items():
        if key in skip:
            continue
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines.extend(f"  {k}: {v}" for k, v in value.items())
        elif isinstance(value, list):
            lines.append(f"{key}: {', '.join(str(v) for v in value) if value else '-'}")
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


def render_details(data: dict[str, Any]) -> HumanOutput:
    return HumanOutput(stdout=details(data))
