"""Command history, written by the workspace's supervisor as each exec finishes.

The supervisor outlives its clients, so a command whose client died (a killed MCP server or
CLI) is still recorded once it completes; the client reads the entry back from the result
and never writes it itself, so nothing is recorded twice. Nothing is stored before its
secret values are redacted.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from ..engines.profile import GUEST_EXECUTION
from ..errors import SandboxError
from . import records
from . import secrets as secret_store
from .store import Store

FIELDS = ("command", "cwd", "exit_code", "duration_ms", "execution_mode", "stdout", "stderr")


class History:
    def __init__(self, store: Store, workspace_id: str, secrets_dir: Path) -> None:
        self.store = store
        self.workspace_id = workspace_id
        self.secrets_dir = secrets_dir  # read at each record: a secret may be added later
        self.execution_mode: str | None = None

    def record(self, request: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        """Store the entry of a finished exec (``request``: its arguments as the client sent
        them); return ``result`` with the entry's fields and its ``sequence``."""
        if self.execution_mode is None:
            record = self.store.get(self.workspace_id)
            mode = records.execution_mode(record["engine"]) if record else GUEST_EXECUTION
            self.execution_mode = mode
        redactor = secret_store.redactor(self.secrets_dir)
        entry = {
            "command": redactor.text(str(request.get("command", ""))),
            "cwd": str(request.get("cwd") or "/workspace"),
            "exit_code": int(result["exit_code"]),
            "duration_ms": int(result["duration_ms"]),
            "execution_mode": self.execution_mode,
            "stdout": redactor.text(str(result.get("stdout", ""))),
            "stderr": redactor.text(str(result.get("stderr", ""))),
            "cancelled": bool(result.get("cancelled")),
        }
        try:
            sequence = self.store.record_command(self.workspace_id, entry, time.time())
        except sqlite3.Error as exc:
            message = f"the command ran but its history entry was not saved: {exc}"
            raise SandboxError(message) from None
        return {**result, **entry, "sequence": sequence}
