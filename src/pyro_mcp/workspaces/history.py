"""Command history, written by the workspace's supervisor as each exec finishes.

The supervisor outlives its clients, so a command whose client died (a killed MCP server or
CLI) is still recorded once it completes; the client reads the entry back from the result
and never writes it itself, so nothing is recorded twice. Nothing is stored before its
secret values are redacted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from ..engines.profile import GUEST_EXECUTION
from ..errors import SandboxError, ValidationError
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
INLINE_CHARS = 16 * 1024  # a stream this short is kept in the history row itself
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
        try:
            redactor = secret_store.redactor(self.secrets_dir)
        except OSError as exc:  # the workspace is gone (an expiry): nothing to record in
            raise _not_saved(exc) from None
        entry: dict[str, Any] = {
            "command": redactor.text(str(request.get("command", ""))),
            "cwd": str(request.get("cwd") or "/workspace"),
            "exit_code": int(result["exit_code"]),
            "duration_ms": int(result["duration_ms"]),
            "execution_mode": self.execution_mode,
            "stdout": redactor.text(str(result.get("stdout", ""))),
            "stderr": redactor.text(str(result.get("stderr", ""))),
            "cancelled": bool(result.get("cancelled")),
        }
        # Short output goes in the row itself; long (or not UTF-8-clean) output in files.
        row = {**entry, **{name: inline(entry[name]) for name in STREAMS}}
        try:
            # The output is kept before the entry commits: never an entry without it (a
            # kill between leaves only files the next entry's sequence overwrites).
            directory = kept_dir(self.secrets_dir.parent)
            sequence = self.store.record_command(
                self.workspace_id,
                row,
                time.time(),
                lambda n: keep_streams(directory, n, entry, row),
            )
        except (sqlite3.Error, OSError) as exc:
            raise _not_saved(exc) from None
        return {**result, **entry, "sequence": sequence}


def _not_saved(exc: Exception) -> SandboxError:
    return SandboxError(f"the command ran but its history entry was not saved: {exc}")


def kept_dir(workspace_dir: Path) -> Path:
    """Where a workspace's command output is kept: ``history/<sequence>.stdout|stderr``
    in its private directory (each stream at most the exec's own cap, 1 MiB; redacted; gone
    with the workspace, emptied by reset)."""
    return workspace_dir / "history"


def inline(text: str) -> str:
    """What of a stream the history row holds itself: all of a short, UTF-8-clean one (no
    file to create: creating two files cost each exec ~1 ms of the host's CPU); nothing of
    a long one, or one with undecodable bytes (sqlite stores UTF-8 only), which goes to a file."""
    if len(text) > INLINE_CHARS:
        return ""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return ""
    return text


def keep_streams(
    directory: Path, sequence: int, entry: dict[str, Any], row: dict[str, Any]
) -> None:
    """The files of the streams ``row`` does not hold; a file left for this sequence by an
    entry that never committed (a kill) is removed, so it is never read as this one's."""
    for name in STREAMS:
        path = directory / f"{sequence}.{name}"
        if row[name] or not entry[name]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        data = entry[name].encode("utf-8", "surrogatepass")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:
            # Never its parents: a workspace removed meanwhile (an expiry) is not made anew.
            directory.mkdir(mode=0o700, exist_ok=True)
            os.chmod(directory, 0o700)
            fd = os.open(path, flags, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)


def forget_streams(workspace_dir: Path) -> None:
    """Reset: the history is cleared, its kept output too."""
    shutil.rmtree(kept_dir(workspace_dir), ignore_errors=True)


def _stream(entry: dict[str, Any], name: str, directory: Path | None) -> str:
    """A stream of a history entry: from the row (short output, or an entry stored before
    3.7) or else its file (none: the stream was empty)."""
    if entry[name] or directory is None:
        return str(entry[name])
    try:
        data = (directory / f"{entry['sequence']}.{name}").read_bytes()
    except FileNotFoundError:
        return ""
    return data.decode("utf-8", "surrogatepass")


Redact = Callable[[str], str]


def _loaded(entry: dict[str, Any], directory: Path | None, redact: Redact) -> dict[str, Any]:
    """An entry with its streams, its text masked with the workspace's secrets of now (the
    file was redacted when written, but a secret added since must not show either)."""
    streams = {name: _stream(entry, name, directory) for name in STREAMS}
    return {k: redact(v) if isinstance(v, str) else v for k, v in {**entry, **streams}.items()}


class Rows(Protocol):
    """A workspace's history to page (history_store.HistoryView, or a list: ``Entries``)."""

    def total(self) -> int: ...

    def one(self, sequence: int) -> dict[str, Any] | None: ...

    def rows(self, offset: int, limit: int | None) -> Iterable[dict[str, Any]]: ...


class Entries:
    """A history held whole in a list."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries

    def total(self) -> int:
        return len(self.entries)

    def one(self, sequence: int) -> dict[str, Any] | None:
        return next((e for e in self.entries if e["sequence"] == sequence), None)

    def rows(self, offset: int, limit: int | None) -> Iterable[dict[str, Any]]:
        return self.entries[offset:] if limit is None else self.entries[offset : offset + limit]


def read_logs(
    store: Store, workspace_id: str, directory: Path, redact: Redact, **options: Any
) -> dict[str, Any]:
    """One page of the workspace's history as ``page_history`` cuts it, reading from the
    store only the rows it shows (one read snapshot: an exec appending meanwhile is not in
    it)."""
    with store.history(workspace_id) as view:
        header = {"workspace_id": workspace_id}
        return page_history(view, header, directory=directory, redact=redact, **options)


def page_logs(logs: dict[str, Any], **options: Any) -> dict[str, Any]:
    """``page_history`` of a history held whole: ``logs["entries"]``."""
    return page_history(Entries(logs["entries"]), logs, **options)


def page_history(
    history: Rows,
    header: dict[str, Any],
    *,
    sequence: int | None = None,
    stream: str | None = None,
    offset: int = 0,
    limit: int | None = None,
    tail: int | None = None,
    budget: int | None = None,
    directory: Path | None = None,
    redact: Redact = str,
) -> dict[str, Any]:
    """One page of a workspace's history (``header``: the result's other fields): entries
    from ``offset`` (or the last ``tail``), at most ``limit`` and within ``budget``; or
    with ``stream``, bytes ``offset`` .. ``offset + limit`` of that stream of command
    ``sequence``. ``total`` counts the entries; ``next_offset`` is where to go on. Only the
    entries shown are read. ``directory``: where the output is kept (kept_dir);
    ``redact``: the workspace's redaction (the result's own comes too late: pages are cut
    from the masked text)."""
    if stream is not None and sequence is None:
        raise ValidationError("stream needs sequence: the command whose output to read")
    if stream is not None and stream not in STREAMS:
        raise ValidationError(f"stream must be stdout or stderr, not {stream!r}")
    if sequence is not None:
        found = history.one(sequence)
        if found is None:
            raise ValidationError(f"the history has no command with sequence {sequence}")
        if stream is not None:
            entry = _loaded(found, directory, redact)
            return _stream_page(header, entry, sequence, stream, offset, limit, budget)
        history = Entries([found])
    total = history.total()
    if tail is not None:
        offset = max(total - tail, 0)
    each = None if budget is None else max(budget // 4, 768)
    rows = history.rows(offset, limit)
    shown = (bound_streams(_loaded(e, directory, redact), each) for e in rows)
    page = take_page(shown, limit, budget)  # reads (and loads) the entries it shows only
    return {
        **header,
        "count": len(page),
        "entries": page,
        "total": total,
        "offset": offset,
        "next_offset": next_offset(offset, len(page), total),
    }


def _stream_page(
    header: dict[str, Any],
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
        **header,
        "count": 1,
        "entries": [entry],
        "total": 1,
        "page": {"sequence": sequence, "stream": stream, **page},
    }
