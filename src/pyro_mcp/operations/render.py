"""Human renderings shared by operation declarations (the CLI's non-JSON output)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from .registry import CliOutput


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


def _field_line(key: str) -> Callable[[dict[str, Any]], bytes]:
    def show(data: dict[str, Any]) -> bytes:
        return f"{data[key]}\n".encode()

    return show


def _content_bytes(data: dict[str, Any]) -> bytes:
    if data.get("encoding") == "base64":
        return base64.b64decode(data["content"])
    return str(data["content"]).encode("utf-8", "surrogateescape")


def id_only(key: str, what: str) -> CliOutput:
    """``--id-only``: the new object's id alone on stdout (``ws=$(pyro … --id-only)``)."""
    return CliOutput("--id-only", f"Print just the new {what}'s id.", _field_line(key))


# ``--content-only``: the file's exact bytes alone on stdout (read as base64, decoded).
CONTENT_ONLY = CliOutput(
    "--content-only",
    "Print just the file's content, its exact bytes (binary too): no summary line.",
    _content_bytes,
    call_with=(("encoding", "base64"),),
)
