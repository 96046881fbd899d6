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
from ..errors import SandboxError, ValidationError
from . import records
from . import secrets as secret_store
from .bounds import STREAMS, bound_streams, byte_page, json_size, take_page
from .store import Store

ALL = 1 << 62  # a page limit that takes everything
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
        }
        try:
            sequence = self.store.record_command(self.workspace_id, entry, time.time())
        except sqlite3.Error as exc:
            message = f"the command ran but its history entry was not saved: {exc}"
            raise SandboxError(message) from None
        return {**result, **entry, "sequence": sequence}


def page_logs(
    logs: dict[str, Any],
    *,
    sequence: int | None = None,
    stream: str | None = None,
    offset: int = 0,
    limit: int | None = None,
    tail: int | None = None,
    budget: int | None = None,
) -> dict[str, Any]:
    """One page of a workspace's history (``logs``: the whole of it, as the manager reads
    it): entries from ``offset`` (or the last ``tail``), at most ``limit`` and within
    ``budget``; or with ``stream``, bytes ``offset`` .. ``offset + limit`` of that stream of
    command ``sequence``. ``total`` counts the entries; ``next_offset`` is where to go on."""
    entries = logs["entries"]
    if sequence is not None:
        entries = [e for e in entries if e["sequence"] == sequence]
        if not entries:
            raise ValidationError(f"the history has no command with sequence {sequence}")
    if stream is not None:
        return _stream_page(logs, entries, sequence, stream, offset, limit, budget)
    if tail is not None:
        offset = max(len(entries) - tail, 0)
    each = None if budget is None else max(budget // 4, 768)
    end = len(entries) if limit is None else offset + limit
    shown = [bound_streams(dict(e), each) for e in entries[offset:end]]
    page, _ = take_page(shown, 0, None, budget)
    after = offset + len(page)
    return {
        **logs,
        "count": len(page),
        "entries": page,
        "total": len(entries),
        "offset": offset,
        "next_offset": after if after < len(entries) else None,
    }


def _stream_page(
    logs: dict[str, Any],
    entries: list[dict[str, Any]],
    sequence: int | None,
    stream: str,
    offset: int,
    limit: int | None,
    budget: int | None,
) -> dict[str, Any]:
    if sequence is None:
        raise ValidationError("stream needs sequence: the command whose output to read")
    if stream not in STREAMS:
        raise ValidationError(f"stream must be stdout or stderr, not {stream!r}")
    entry = dict(entries[0])
    other = STREAMS[1 - STREAMS.index(stream)]
    text, entry[stream], entry[other] = entry[stream], "", ""
    room = None if budget is None else max(budget - json_size(entry) - 512, 256)
    page = byte_page(text, offset, ALL if limit is None else limit, room)
    entry[stream] = page.pop("text")
    return {
        **logs,
        "count": 1,
        "entries": [entry],
        "total": 1,
        "page": {"sequence": sequence, "stream": stream, **page},
    }
