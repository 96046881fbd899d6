"""Workspace records in one SQLite database (WAL): safe for the CLI and a long-lived MCP
server changing the same workspaces at once."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .history_store import CommandRows

SCHEMA = """
CREATE TABLE IF NOT EXISTS workspaces (
    workspace_id TEXT PRIMARY KEY,
    name TEXT,
    labels TEXT NOT NULL DEFAULT '{}',
    environment TEXT NOT NULL,
    environment_version TEXT NOT NULL,
    vcpu_count INTEGER NOT NULL,
    mem_mib INTEGER NOT NULL,
    disk_mib INTEGER NOT NULL DEFAULT 8192,
    idle_stop_seconds INTEGER NOT NULL DEFAULT 0,
    ttl_seconds INTEGER NOT NULL,
    created_at REAL NOT NULL,
    last_activity_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    state TEXT NOT NULL,
    network_policy TEXT NOT NULL,
    allow_host_compat INTEGER NOT NULL,
    engine TEXT NOT NULL,
    workspace_seed TEXT NOT NULL DEFAULT '{}',
    secrets TEXT NOT NULL DEFAULT '[]',
    command_count INTEGER NOT NULL DEFAULT 0,
    last_command TEXT,
    reset_count INTEGER NOT NULL DEFAULT 0,
    last_reset_at REAL,
    last_error TEXT,
    supervisor_pid INTEGER
);
CREATE TABLE IF NOT EXISTS commands (
    workspace_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    command TEXT NOT NULL,
    cwd TEXT NOT NULL,
    exit_code INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    execution_mode TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    stdout TEXT NOT NULL,
    stderr TEXT NOT NULL,
    cancelled INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, sequence)
);
CREATE TABLE IF NOT EXISTS expired (
    workspace_id TEXT PRIMARY KEY,
    expired_at REAL NOT NULL,
    ttl_seconds INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    workspace_id TEXT NOT NULL,
    snapshot_name TEXT NOT NULL,
    created_at REAL NOT NULL,
    entry_count INTEGER NOT NULL,
    bytes_written INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, snapshot_name)
);
CREATE TABLE IF NOT EXISTS owners (
    workspace_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    owner TEXT NOT NULL
);
"""
# Bumped when SCHEMA changes; a database at this version needs no set-up on open.
SCHEMA_VERSION = 5
# Columns added to the workspaces table since it was first made: (name, definition).
ADDED_COLUMNS = (
    ("disk_mib", "INTEGER NOT NULL DEFAULT 8192"),
    ("idle_stop_seconds", "INTEGER NOT NULL DEFAULT 0"),
)
# The same for the commands table (the history).
ADDED_COMMAND_COLUMNS = (("cancelled", "INTEGER NOT NULL DEFAULT 0"),)
JSON_COLUMNS = ("labels", "workspace_seed", "secrets", "last_command")
# Raises to refuse one more running workspace, given how many run (lifetime.Lifetime).
Admit = Callable[[int], None]


class Store(CommandRows):
    """The records; the command history's queries are ``CommandRows``' (history_store.py)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # WAL is a property of the database file: switch it once, here. Switching can answer
        # "database is locked" without waiting while another process holds it, so retry.
        deadline = time.monotonic() + 30
        while True:
            try:
                with self.connect() as db:
                    if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                        break  # set up already (the common case: one cheap read)
                    if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        db.execute("PRAGMA journal_mode=WAL")
                    db.executescript(SCHEMA)
                    _add_columns(db)
                    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, opened once and kept: opening one per call (and the WAL
        checkpoint that closing the last one runs) cost about 1.3 ms per query."""
        local = self._local
        db: sqlite3.Connection | None = getattr(local, "db", None)
        if db is None or getattr(local, "pid", None) != os.getpid():
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across crashes of ours
            local.db, local.pid = db, os.getpid()
        yield db

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            self._local.db = None
            db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                # The connection is kept: it must never stay inside a transaction (holding
                # the write lock) after a failed statement or COMMIT.
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        self.close()
                raise

    @staticmethod
    def _decode(row: sqlite3.Row) -> dict[str, Any]:
        record = dict(row)
        for key in JSON_COLUMNS:
            if key in record and record[key] is not None:
                record[key] = json.loads(record[key])
        if "allow_host_compat" in record:
            record["allow_host_compat"] = bool(record["allow_host_compat"])
        return record

    @staticmethod
    def _encode(values: dict[str, Any]) -> dict[str, Any]:
        out = dict(values)
        for key in JSON_COLUMNS:
            if key in out and out[key] is not None:
                out[key] = json.dumps(out[key], sort_keys=True)
        return out

    def _active(self, db: sqlite3.Connection, besides: str = "") -> int:
        row = db.execute(
            "SELECT COUNT(*) FROM workspaces WHERE state IN ('started', 'starting') "
            "AND workspace_id != ?",
            (besides,),
        ).fetchone()
        return int(row[0])

    def insert_admitted(self, record: dict[str, Any], admit: Admit) -> None:
        """Insert once ``admit`` (given the running and starting workspaces) allows: the
        count and the insert are one transaction, so racing creates cannot overshoot."""
        values = self._encode(record)
        columns = ", ".join(values)
        marks = ", ".join(f":{k}" for k in values)
        with self.transaction() as db:
            admit(self._active(db))
            db.execute(f"INSERT INTO workspaces ({columns}) VALUES ({marks})", values)  # noqa: S608

    def mark_starting_admitted(self, workspace_id: str, admit: Admit, owner: str) -> bool:
        """Move a stopped workspace to 'starting' once ``admit`` allows, atomically, with
        ``owner`` as the start's owner. False when it is not stopped any more (another
        client is starting it) or a fork is copying its disks (fork_copy.py)."""
        with self.transaction() as db:
            current = db.execute(
                "SELECT state FROM workspaces WHERE workspace_id = ?", (workspace_id,)
            ).fetchone()
            held = db.execute(
                "SELECT 1 FROM owners WHERE workspace_id = ? AND kind = 'copy'", (workspace_id,)
            ).fetchone()
            if current is None or current[0] != "stopped" or held:
                return False
            admit(self._active(db, besides=workspace_id))
            db.execute(
                "UPDATE workspaces SET state = 'starting', supervisor_pid = NULL, "
                "last_error = NULL WHERE workspace_id = ?",
                (workspace_id,),
            )
            self._claim(db, workspace_id, "start", owner)
        return True

    # -- owners: the process creating or starting a workspace, until it is done -------------
    @staticmethod
    def _claim(db: sqlite3.Connection, workspace_id: str, kind: str, owner: str) -> None:
        db.execute(
            "INSERT OR REPLACE INTO owners (workspace_id, kind, owner) VALUES (?, ?, ?)",
            (workspace_id, kind, owner),
        )

    def claim(self, workspace_id: str, kind: str, owner: str) -> None:
        with self.connect() as db:
            self._claim(db, workspace_id, kind, owner)

    def release(self, workspace_id: str) -> None:
        with self.connect() as db:
            db.execute("DELETE FROM owners WHERE workspace_id = ?", (workspace_id,))

    def owners(self, workspace_id: str | None = None) -> list[dict[str, Any]]:
        """Unfinished creates and starts (all, or one workspace's)."""
        with self.connect() as db:
            if workspace_id is None:
                rows = db.execute("SELECT * FROM owners").fetchall()
            else:
                rows = db.execute(
                    "SELECT * FROM owners WHERE workspace_id = ?", (workspace_id,)
                ).fetchall()
        return [dict(row) for row in rows]

    def get(self, workspace_id: str) -> dict[str, Any] | None:
        with self.connect() as db:
            row = db.execute(
                "SELECT * FROM workspaces WHERE workspace_id = ?", (workspace_id,)
            ).fetchone()
        return self._decode(row) if row else None

    def all(self) -> list[dict[str, Any]]:
        with self.connect() as db:
            rows = db.execute("SELECT * FROM workspaces").fetchall()
        return [self._decode(r) for r in rows]

    def update(self, workspace_id: str, **values: Any) -> None:
        if not values:
            return
        encoded = self._encode(values)
        sets = ", ".join(f"{k} = :{k}" for k in encoded)
        encoded["_id"] = workspace_id
        with self.connect() as db:
            db.execute(f"UPDATE workspaces SET {sets} WHERE workspace_id = :_id", encoded)  # noqa: S608

    def delete(self, workspace_id: str) -> None:
        with self.transaction() as db:
            for table in ("workspaces", "commands", "snapshots", "owners"):
                db.execute(f"DELETE FROM {table} WHERE workspace_id = ?", (workspace_id,))  # noqa: S608

    def mark_expired(self, workspace_id: str, ttl_seconds: int, when: float) -> None:
        """Remember that a workspace expired, so later calls can say so (not 'unknown')."""
        with self.connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO expired (workspace_id, expired_at, ttl_seconds) "
                "VALUES (?, ?, ?)",
                (workspace_id, when, ttl_seconds),
            )
            db.execute("DELETE FROM expired WHERE expired_at < ?", (when - 7 * 86400,))

    def expired(self, workspace_id: str) -> dict[str, Any] | None:
        with self.connect() as db:
            row = db.execute(
                "SELECT * FROM expired WHERE workspace_id = ?", (workspace_id,)
            ).fetchone()
        return dict(row) if row else None

    def count_active(self) -> int:
        with self.connect() as db:
            return self._active(db)

    # -- snapshots ---------------------------------------------------------------------------
    def add_snapshot(
        self,
        workspace_id: str,
        name: str,
        created_at: float,
        entry_count: int,
        bytes_written: int,
    ) -> None:
        with self.connect() as db:
            db.execute(
                "INSERT INTO snapshots (workspace_id, snapshot_name, created_at, entry_count, "
                "bytes_written) VALUES (?, ?, ?, ?, ?)",
                (workspace_id, name, created_at, entry_count, bytes_written),
            )

    def snapshots(self, workspace_id: str) -> list[dict[str, Any]]:
        with self.connect() as db:
            rows = db.execute(
                "SELECT snapshot_name, created_at, entry_count, bytes_written FROM snapshots "
                "WHERE workspace_id = ?",
                (workspace_id,),
            ).fetchall()
        return [dict(r) for r in rows]

    def delete_snapshot(self, workspace_id: str, name: str) -> bool:
        with self.connect() as db:
            cur = db.execute(
                "DELETE FROM snapshots WHERE workspace_id = ? AND snapshot_name = ?",
                (workspace_id, name),
            )
        return cur.rowcount > 0


def _add_columns(db: sqlite3.Connection) -> None:
    """A database made by an older version gets the newer columns (with their defaults)."""
    for table, columns in (("workspaces", ADDED_COLUMNS), ("commands", ADDED_COMMAND_COLUMNS)):
        _add_table_columns(db, table, columns)


def _add_table_columns(
    db: sqlite3.Connection, table: str, columns: tuple[tuple[str, str], ...]
) -> None:
    have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    for name, definition in columns:
        if name not in have:
            try:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")
            except sqlite3.OperationalError as exc:  # another process added it just now
                if "duplicate column" not in str(exc):
                    raise
