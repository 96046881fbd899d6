"""The command history's rows (the ``commands`` table): the one home of its queries.

``Store`` mixes in ``CommandRows``. A page of ``workspace logs`` reads only what it shows:
``history(workspace_id)`` is one read snapshot (a WAL read transaction: an exec appending
meanwhile is not in it), from which the count, one command or the rows from an offset are
read lazily, in order, as far as the page goes.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

ROWS = "SELECT * FROM commands WHERE workspace_id = ? ORDER BY sequence LIMIT ? OFFSET ?"
SQL_MAX = (1 << 63) - 1  # sqlite's largest integer: a larger offset or limit means "all"


def entry_of(row: sqlite3.Row) -> dict[str, Any]:
    """A history entry as results show it (no workspace_id; cancelled a bool)."""
    entry = dict(row)
    entry.pop("workspace_id", None)
    entry["stdout_file"] = entry["stderr_file"] = None
    entry["cancelled"] = bool(entry.get("cancelled"))
    return entry


class HistoryView:
    """One workspace's history as of one read snapshot (``CommandRows.history``)."""

    def __init__(self, db: sqlite3.Connection, workspace_id: str) -> None:
        self.db = db
        self.workspace_id = workspace_id
        self._cursors: list[sqlite3.Cursor] = []

    def total(self) -> int:
        row = self.db.execute(
            "SELECT COUNT(*) FROM commands WHERE workspace_id = ?", (self.workspace_id,)
        ).fetchone()
        return int(row[0])

    def one(self, sequence: int) -> dict[str, Any] | None:
        if sequence > SQL_MAX:
            return None  # no row has it (sqlite cannot even be asked)
        row = self.db.execute(
            "SELECT * FROM commands WHERE workspace_id = ? AND sequence = ?",
            (self.workspace_id, sequence),
        ).fetchone()
        return entry_of(row) if row is not None else None

    def rows(self, offset: int, limit: int | None) -> Iterator[dict[str, Any]]:
        """The entries from ``offset`` (at most ``limit``), each read when it is asked for."""
        cursor = select(self.db, self.workspace_id, offset, limit)
        self._cursors.append(cursor)
        return (entry_of(row) for row in cursor)

    def close(self) -> None:
        for cursor in self._cursors:
            cursor.close()  # a page that stopped early leaves its statement unfinished


def select(
    db: sqlite3.Connection, workspace_id: str, offset: int = 0, limit: int | None = None
) -> sqlite3.Cursor:
    """The rows from ``offset`` in order (skipped ones are stepped over, never decoded)."""
    count = -1 if limit is None else min(limit, SQL_MAX)
    return db.execute(ROWS, (workspace_id, count, min(offset, SQL_MAX)))


class CommandRows:
    """The history queries of ``Store`` (which gives ``connect`` and ``transaction``)."""

    def connect(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def record_command(
        self,
        workspace_id: str,
        entry: dict[str, Any],
        activity: float,
        keep: Callable[[int], None] | None = None,
    ) -> int:
        """Append to the history; returns the new sequence number. Bumps activity.
        ``keep(sequence)`` runs before the commit: if it fails, nothing is recorded."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT COALESCE(MAX(sequence), 0) FROM commands WHERE workspace_id = ?",
                (workspace_id,),
            ).fetchone()
            sequence = int(row[0]) + 1
            db.execute(
                "INSERT INTO commands (workspace_id, sequence, command, cwd, exit_code, "
                "duration_ms, execution_mode, recorded_at, stdout, stderr, cancelled) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    workspace_id,
                    sequence,
                    entry["command"],
                    entry["cwd"],
                    entry["exit_code"],
                    entry["duration_ms"],
                    entry["execution_mode"],
                    activity,
                    entry["stdout"],
                    entry["stderr"],
                    int(bool(entry.get("cancelled"))),
                ),
            )
            last = {
                "sequence": sequence,
                "command": entry["command"],
                "exit_code": entry["exit_code"],
                "recorded_at": activity,
            }
            updated = db.execute(
                "UPDATE workspaces SET command_count = command_count + 1, last_command = ?, "
                "last_activity_at = ? WHERE workspace_id = ?",
                (json.dumps(last), activity, workspace_id),
            )
            if updated.rowcount == 0:  # removed meanwhile (an expiry): no entry outlives it
                raise sqlite3.IntegrityError(f"workspace {workspace_id!r} is gone")
            if keep is not None:
                keep(sequence)
        return sequence

    def commands(self, workspace_id: str) -> list[dict[str, Any]]:
        """The whole history, as stored (logs read pages: ``history``)."""
        with self.connect() as db:
            return [dict(row) for row in select(db, workspace_id)]

    def clear_commands(self, workspace_id: str, forget: Callable[[], None] | None = None) -> None:
        """The history emptied (a reset's); ``forget()`` (removing the kept output) runs in
        the same transaction, so an entry recorded meanwhile is gone with its files or kept
        with them, never kept without them."""
        with self.transaction() as db:
            db.execute("DELETE FROM commands WHERE workspace_id = ?", (workspace_id,))
            db.execute(  # and the record's count with them (record_command's counterpart)
                "UPDATE workspaces SET command_count = 0, last_command = NULL "
                "WHERE workspace_id = ?",
                (workspace_id,),
            )
            if forget is not None:
                forget()

    @contextlib.contextmanager
    def history(self, workspace_id: str) -> Iterator[HistoryView]:
        """The history as of now, read lazily until the block ends (one read transaction:
        the count and the rows agree while execs append)."""
        with self.connect() as db:
            own = not db.in_transaction
            if own:
                db.execute("BEGIN")
            view = HistoryView(db, workspace_id)
            try:
                yield view
            finally:
                view.close()
                if own and db.in_transaction:
                    db.execute("COMMIT")  # a read transaction: nothing to undo
