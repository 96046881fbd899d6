"""PTY shells in a workspace (PRODUCT_SPEC §2.13): open, read, write, signal, close."""

from __future__ import annotations

import time
from typing import Any

from .. import validation
from ..engines.profile import profile_of
from ..errors import ValidationError
from . import secrets as secret_store
from .handle import Handle, operation
from .paths import normalize_workspace_path

POLL_SECONDS = 0.05
SIGNAL_NAMES = ("HUP", "INT", "TERM", "KILL")


def _payload(ws: Handle, record: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    keys = ("shell_id", "cwd", "cols", "rows", "state", "started_at", "ended_at", "exit_code")
    out = {"workspace_id": ws.id, **{k: data.get(k) for k in keys}}
    out["execution_mode"] = ws.execution_mode(record)
    return out


def _started(ws: Handle, action: str) -> dict[str, Any]:
    record = ws.started(action)
    if not profile_of(record["engine"]).has_guest_workspace:
        raise ValidationError("shells are unavailable for host_compat workspaces")
    return record


@operation
def shell_open(
    ws: Handle,
    cwd: str = "/workspace",
    cols: int = 120,
    rows: int = 30,
    secret_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    record = _started(ws, "shell_open")
    env_map = secret_store.env_mapping(secret_env, [s["name"] for s in record["secrets"]])
    args = {
        "shell_id": validation.new_id(),
        "cwd": normalize_workspace_path(cwd),
        "cols": cols,
        "rows": rows,
        "secret_env": env_map,
    }
    result, _ = ws.call("shell_open", args)
    ws.touch()
    return _payload(ws, record, result)


@operation
def shell_read(
    ws: Handle,
    shell_id: str,
    cursor: int = 0,
    max_chars: int = 65536,
    plain: bool = False,
    wait_for_idle_ms: int | None = None,
) -> dict[str, Any]:
    record = _started(ws, "shell_read")
    args = {"shell_id": shell_id, "cursor": cursor, "max_chars": max_chars}
    result, _ = ws.call("shell_read", args)
    start = result["cursor"]
    output = result["output"]
    if wait_for_idle_ms is not None:
        idle = wait_for_idle_ms / 1000.0
        last_change = time.monotonic()
        while result["state"] == "running" and len(output) < max_chars:
            if time.monotonic() - last_change >= idle:
                break
            time.sleep(min(POLL_SECONDS, idle))
            more, _ = ws.call(
                "shell_read",
                {
                    "shell_id": shell_id,
                    "cursor": result["next_cursor"],
                    "max_chars": max_chars - len(output),
                },
            )
            if more["output"]:
                output += more["output"]
                last_change = time.monotonic()
            result = more
    next_cursor = start + len(output)
    truncated = next_cursor < result["length"]
    output = ws.redact(output)
    if plain:
        from .terminal import render_plain  # pyte: ~65 ms of imports, when needed

        output = render_plain(output, result["cols"], result["rows"])
        if len(output) > max_chars:
            output, truncated = output[:max_chars], True
    return {
        **_payload(ws, record, result),
        "cursor": start,
        "next_cursor": next_cursor,
        "output": output,
        "truncated": truncated,
        "plain": bool(plain),
        "wait_for_idle_ms": wait_for_idle_ms,
    }


@operation
def shell_write(
    ws: Handle, shell_id: str, input: str, append_newline: bool = True
) -> dict[str, Any]:
    validation.text("input", input, allow_nul=True)
    record = _started(ws, "shell_write")
    text = input + ("\n" if append_newline else "")
    result, _ = ws.call("shell_write", {"shell_id": shell_id}, data=text.encode("utf-8"))
    ws.touch()
    return {
        **_payload(ws, record, result),
        "input_length": len(input),
        "append_newline": bool(append_newline),
    }


@operation
def shell_signal(ws: Handle, shell_id: str, signal_name: str = "INT") -> dict[str, Any]:
    if signal_name not in SIGNAL_NAMES:
        raise ValidationError(f"signal must be one of: {', '.join(SIGNAL_NAMES)}")
    record = _started(ws, "shell_signal")
    result, _ = ws.call("shell_signal", {"shell_id": shell_id, "signal": signal_name})
    ws.touch()
    return {
        **_payload(ws, record, result),
        "signal": signal_name,
    }


@operation
def shell_close(ws: Handle, shell_id: str) -> dict[str, Any]:
    record = _started(ws, "shell_close")
    result, _ = ws.call("shell_close", {"shell_id": shell_id}, timeout=30)
    ws.touch()
    return {**_payload(ws, record, result), "closed": True}
