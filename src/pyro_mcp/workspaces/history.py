"""Command history, written by the workspace's supervisor as each exec finishes.

The supervisor outlives its clients, so a command whose client died (a killed MCP server or
CLI) is still recorded once it completes; the client reads the entry back from the result
and never writes it itself, so nothing is recorded twice. Nothing is stored before its
secret values are redacted.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from ..engines.profile import GUEST_EXECUTION
from ..errors import SandboxError, ValidationError
from ..paths import private_dir
from . import records
from . import secrets as secret_store
from .bounds import (
    STREAMS,
    bound_streams,
    byte_page,
    cut_command,
    json_size,
    next_offset,
    take_page,
)
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
            "cancelled": bool(result.get("cancelled")),
        }
        row = {**entry, "stdout": "", "stderr": ""}  # the streams are kept in files
        try:
            sequence = self.store.record_command(self.workspace_id, row, time.time())
            keep_streams(kept_dir(self.secrets_dir.parent), sequence, entry)
        except (sqlite3.Error, OSError) as exc:
            message = f"the command ran but its history entry was not saved: {exc}"
            raise SandboxError(message) from None
        return {**result, **entry, "sequence": sequence}


def kept_dir(workspace_dir: Path) -> Path:
    """Where a workspace's command output is kept: ``history/<sequence>.stdout|stderr``
    in its private directory (each stream at most the exec's own cap, 1 MiB; redacted; gone
    with the workspace, emptied by reset)."""
    return workspace_dir / "history"


def keep_streams(directory: Path, sequence: int, entry: dict[str, Any]) -> None:
    private_dir(directory)
    for name in STREAMS:
        path = directory / f"{sequence}.{name}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(entry[name].encode("utf-8", "surrogatepass"))


def forget_streams(workspace_dir: Path) -> None:
    """Reset: the history is cleared, its kept output too."""
    shutil.rmtree(kept_dir(workspace_dir), ignore_errors=True)


def _stream(entry: dict[str, Any], name: str, directory: Path | None) -> str:
    """A stream of a history entry: from its file (an entry stored before 3.7 holds it)."""
    if entry[name] or directory is None:
        return str(entry[name])
    try:
        data = (directory / f"{entry['sequence']}.{name}").read_bytes()
    except FileNotFoundError:
        return ""
    return data.decode("utf-8", "surrogatepass")


def _loaded(entry: dict[str, Any], directory: Path | None) -> dict[str, Any]:
    return {**entry, **{name: _stream(entry, name, directory) for name in STREAMS}}


def page_logs(
    logs: dict[str, Any],
    *,
    sequence: int | None = None,
    stream: str | None = None,
    offset: int = 0,
    limit: int | None = None,
    tail: int | None = None,
    budget: int | None = None,
    directory: Path | None = None,
) -> dict[str, Any]:
    """One page of a workspace's history (``logs``: the whole of it, as the manager reads
    it): entries from ``offset`` (or the last ``tail``), at most ``limit`` and within
    ``budget``; or with ``stream``, bytes ``offset`` .. ``offset + limit`` of that stream of
    command ``sequence``. ``total`` counts the entries; ``next_offset`` is where to go on.
    ``directory``: where the output is kept (kept_dir)."""
    entries = logs["entries"]
    if stream is not None and sequence is None:
        raise ValidationError("stream needs sequence: the command whose output to read")
    if stream is not None and stream not in STREAMS:
        raise ValidationError(f"stream must be stdout or stderr, not {stream!r}")
    if sequence is not None:
        entries = [e for e in entries if e["sequence"] == sequence]
        if not entries:
            raise ValidationError(f"the history has no command with sequence {sequence}")
    if stream is not None and sequence is not None:
        entry = _loaded(entries[0], directory)
        return _stream_page(logs, entry, sequence, stream, offset, limit, budget)
    if tail is not None:
        offset = max(len(entries) - tail, 0)
    each = None if budget is None else max(budget // 4, 768)
    shown = (bound_streams(_loaded(e, directory), each) for e in entries[offset:])
    page = take_page(shown, limit, budget)  # reads the kept output of these entries only
    return {
        **logs,
        "count": len(page),
        "entries": page,
        "total": len(entries),
        "offset": offset,
        "next_offset": next_offset(offset, len(page), len(entries)),
    }


def _stream_page(
    logs: dict[str, Any],
    entry: dict[str, Any],
    sequence: int,
    stream: str,
    offset: int,
    limit: int | None,
    budget: int | None,
) -> dict[str, Any]:
    other = STREAMS[1 - STREAMS.index(stream)]
    text, entry[stream], entry[other] = entry[stream], "", ""
    if budget is not None:
        cut_command(entry, budget)
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
