"""A command in a workspace (PRODUCT_SPEC §2.5): run by its supervisor, which records it
in the history."""

from __future__ import annotations

from typing import Any

from .. import calls, validation
from ..core import exec_result
from ..guest.protocol import split_output
from . import records
from . import secrets as secret_store
from .exec_input import WORKSPACE, exec_env, exec_stdin
from .handle import Handle, operation
from .history import History
from .paths import normalize_workspace_path

EXEC_SLACK_SECONDS = 30.0


@operation
def exec(
    ws: Handle,
    command: str,
    timeout_seconds: float,
    on_output: Any = None,
    secret_env: dict[str, str] | None = None,
    cwd: str = WORKSPACE,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> dict[str, Any]:
    command = validation.command(command)
    timeout = float(timeout_seconds)  # its range: the Param (operations/params.py)
    cwd = normalize_workspace_path(cwd)
    record = ws.started("workspace_exec")
    env_map = secret_store.env_mapping(secret_env, [s["name"] for s in record["secrets"]])
    args = {
        "command": command,
        "timeout_seconds": timeout,
        "cwd": cwd,
        "mkdir_cwd": cwd == WORKSPACE,
        "env": exec_env(env, env_map),
        "secret_env": env_map,
    }
    data = exec_stdin(stdin)
    # What a surface's call reports as progress goes to a model: redacted like results.
    on_event = calls.listen(on_output, ws.redactor.text if calls.current() else None)
    with calls.cancellable(ws.call) as cancel_key:
        args.update(stream=on_event is not None, cancel_key=cancel_key)
        reply = ws.call("exec", args, data, timeout=timeout + EXEC_SLACK_SECONDS, on_event=on_event)
    result = split_output(*reply)
    # The supervisor recorded the entry (redacted) before answering: see history.py.
    if "sequence" not in result:  # a supervisor started by an older version does not
        history = History(ws.store, ws.id, ws.layout.secrets_dir)
        result = history.record(args, result)
    extra = {"cwd": result["cwd"], "sequence": result["sequence"]}
    return exec_result(records.core(record), result["command"], result, **extra)
