"""A command in a workspace (PRODUCT_SPEC §2.5): run by its supervisor, which records it
in the history."""

from __future__ import annotations

from typing import Any

from .. import validation
from ..core import exec_result
from ..guest.protocol import split_output
from . import records
from . import secrets as secret_store
from .handle import Handle, operation
from .history import History

EXEC_SLACK_SECONDS = 30.0


@operation
def exec(
    ws: Handle,
    command: str,
    timeout_seconds: float,
    on_output: Any = None,
    secret_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    command = validation.command(command)
    timeout = float(timeout_seconds)  # its range: the Param (operations/params.py)
    record = ws.started("workspace_exec")
    env_map = secret_store.env_mapping(secret_env, [s["name"] for s in record["secrets"]])
    args = {
        "command": command,
        "timeout_seconds": timeout,
        "cwd": "/workspace",
        "mkdir_cwd": True,
        "stream": on_output is not None,
        "secret_env": env_map,
    }
    result = split_output(
        *ws.call("exec", args, timeout=timeout + EXEC_SLACK_SECONDS, on_event=on_output)
    )
    # The supervisor recorded the entry (redacted) before answering: see history.py.
    if "sequence" not in result:  # a supervisor started by an older version does not
        history = History(ws.store, ws.id, ws.layout.secrets_dir)
        result = history.record(args, result)
    extra = {"cwd": result["cwd"], "sequence": result["sequence"]}
    return exec_result(records.core(record), result["command"], result, **extra)
