"""PTY shells in a workspace (PRODUCT_SPEC §2.13): open, read, write, signal, close."""

from __future__ import annotations

import time
from typing import Any

from .. import validation
from ..errors import ValidationError
from . import records
from . import secrets as secret_store
from .lifecycle import WorkspaceLifecycle
from .paths import normalize_workspace_path

POLL_SECONDS = 0.05
MAX_IDLE_MS = 10000
SIGNAL_NAMES = ("HUP", "INT", "TERM", "KILL")


class ShellMixin(WorkspaceLifecycle):
    def _shell_payload(
        self, workspace_id: str, engine: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        keys = ("shell_id", "cwd", "cols", "rows", "state", "started_at", "ended_at", "exit_code")
        out = {"workspace_id": workspace_id, **{k: data.get(k) for k in keys}}
        out["execution_mode"] = records.execution_mode(engine)
        return out

    def _shell_record(self, workspace_id: str, action: str) -> dict[str, Any]:
        record = self.require_started(workspace_id, action)
        if record["engine"] == "host":
            raise ValidationError("shells are unavailable for host_compat workspaces")
        return record

    def shell_open(
        self,
        workspace_id: str,
        cwd: str = "/workspace",
        cols: int = 120,
        rows: int = 30,
        secret_env: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        cols = validation.int_in_range("cols", cols, 1, 1000)
        rows = validation.int_in_range("rows", rows, 1, 1000)
        record = self._shell_record(workspace_id, "shell_open")
        env_map = secret_store.env_mapping(secret_env, [s["name"] for s in record["secrets"]])
        args = {
            "shell_id": validation.new_id(),
            "cwd": normalize_workspace_path(cwd),
            "cols": cols,
            "rows": rows,
            "secret_env": env_map,
        }
        result, _ = self.call(workspace_id, "shell_open", args)
        self.touch(workspace_id)
        return self._shell_payload(workspace_id, record["engine"], result)

    def shell_read(
        self,
        workspace_id: str,
        shell_id: str,
        cursor: int = 0,
        max_chars: int = 65536,
        plain: bool = False,
        wait_for_idle_ms: int | None = None,
    ) -> dict[str, Any]:
        if isinstance(cursor, bool) or not isinstance(cursor, int) or cursor < 0:
            raise ValidationError("cursor must be a non-negative integer")
        max_chars = validation.int_in_range("max_chars", max_chars, 1, 1024 * 1024)
        if wait_for_idle_ms is not None:
            validation.int_in_range("wait_for_idle_ms", wait_for_idle_ms, 1, MAX_IDLE_MS)
        record = self._shell_record(workspace_id, "shell_read")
        args = {"shell_id": shell_id, "cursor": cursor, "max_chars": max_chars}
        result, _ = self.call(workspace_id, "shell_read", args)
        start = result["cursor"]
        output = result["output"]
        if wait_for_idle_ms is not None:
            idle = wait_for_idle_ms / 1000.0
            last_change = time.monotonic()
            while result["state"] == "running" and len(output) < max_chars:
                if time.monotonic() - last_change >= idle:
                    break
                time.sleep(min(POLL_SECONDS, idle))
                more, _ = self.call(
                    workspace_id,
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
        output = self.redact(workspace_id, output)
        if plain:
            from .terminal import render_plain  # pyte: ~65 ms of imports, when needed

            output = render_plain(output, result["cols"], result["rows"])
            if len(output) > max_chars:
                output, truncated = output[:max_chars], True
        return {
            **self._shell_payload(workspace_id, record["engine"], result),
            "cursor": start,
            "next_cursor": next_cursor,
            "output": output,
            "truncated": truncated,
            "plain": bool(plain),
            "wait_for_idle_ms": wait_for_idle_ms,
        }

    def shell_write(
        self, workspace_id: str, shell_id: str, input: str, append_newline: bool = True
    ) -> dict[str, Any]:
        validation.text("input", input, allow_nul=True)
        record = self._shell_record(workspace_id, "shell_write")
        text = input + ("\n" if append_newline else "")
        result, _ = self.call(
            workspace_id, "shell_write", {"shell_id": shell_id}, data=text.encode("utf-8")
        )
        self.touch(workspace_id)
        return {
            **self._shell_payload(workspace_id, record["engine"], result),
            "input_length": len(input),
            "append_newline": bool(append_newline),
        }

    def shell_signal(
        self, workspace_id: str, shell_id: str, signal_name: str = "INT"
    ) -> dict[str, Any]:
        if signal_name not in SIGNAL_NAMES:
            raise ValidationError(f"signal must be one of: {', '.join(SIGNAL_NAMES)}")
        record = self._shell_record(workspace_id, "shell_signal")
        result, _ = self.call(
            workspace_id, "shell_signal", {"shell_id": shell_id, "signal": signal_name}
        )
        self.touch(workspace_id)
        return {
            **self._shell_payload(workspace_id, record["engine"], result),
            "signal": signal_name,
        }

    def shell_close(self, workspace_id: str, shell_id: str) -> dict[str, Any]:
        record = self._shell_record(workspace_id, "shell_close")
        result, _ = self.call(workspace_id, "shell_close", {"shell_id": shell_id}, timeout=30)
        self.touch(workspace_id)
        return {**self._shell_payload(workspace_id, record["engine"], result), "closed": True}
