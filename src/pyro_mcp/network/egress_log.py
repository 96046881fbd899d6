"""The per-sandbox egress log: one row per proxied connection, bounded, in SQLite.

The proxy (in the supervisor) writes it; ``workspace status`` reads the totals and
``workspace network log`` the rows. Only the newest ``MAX_ROWS`` rows are kept; the totals
count every connection ever made.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

MAX_ROWS = 1000
LOG_FILE = "egress.db"
FIELDS = (
    "at",
    "host",
    "port",
    "method",
    "allowed",
    "reason",
    "address",
    "bytes_up",
    "bytes_down",
    "duration_ms",
)
SCHEMA = """
CREATE TABLE IF NOT EXISTS egress (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL, method TEXT NOT NULL,
    allowed INTEGER NOT NULL, reason TEXT, address TEXT,
    bytes_up INTEGER NOT NULL, bytes_down INTEGER NOT NULL, duration_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS totals (allowed INTEGER NOT NULL, denied INTEGER NOT NULL);
"""
_INSERT = """INSERT INTO egress
    (at, host, port, method, allowed, reason, address, bytes_up, bytes_down, duration_ms)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_SELECT = """SELECT
    at, host, port, method, allowed, reason, address, bytes_up, bytes_down, duration_ms
    FROM egress ORDER BY id DESC LIMIT ?"""
_BUMP = {
    True: "UPDATE totals SET allowed = allowed + 1",
    False: "UPDATE totals SET denied = denied + 1",
}


class EgressLog:
    def __init__(self, directory: Path, max_rows: int = MAX_ROWS) -> None:
        self.path = directory / LOG_FILE
        self.max_rows = max_rows
        self.lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10)
        db.executescript(SCHEMA)
        return db

    def record(self, entry: dict[str, Any]) -> None:
        row = {"bytes_up": 0, "bytes_down": 0, "duration_ms": 0, "at": time.time(), **entry}
        values = [int(row[k]) if k == "allowed" else row.get(k) for k in FIELDS]
        with self.lock, self._connect() as db:
            db.execute(_INSERT, values)
            db.execute(
                "DELETE FROM egress WHERE id <= (SELECT MAX(id) FROM egress) - ?",
                (self.max_rows,),
            )
            if db.execute("SELECT COUNT(*) FROM totals").fetchone()[0] == 0:
                db.execute("INSERT INTO totals VALUES (0, 0)")
            db.execute(_BUMP[bool(row["allowed"])])
        db.close()

    def totals(self) -> dict[str, int]:
        if not self.path.exists():
            return {"allowed": 0, "denied": 0}
        db = self._connect()
        try:
            row = db.execute("SELECT allowed, denied FROM totals").fetchone()
        finally:
            db.close()
        return {"allowed": row[0], "denied": row[1]} if row else {"allowed": 0, "denied": 0}

    def entries(self, limit: int = MAX_ROWS) -> list[dict[str, Any]]:
        """The newest ``limit`` connections, oldest first."""
        if not self.path.exists():
            return []
        db = self._connect()
        try:
            rows = db.execute(_SELECT, (limit,)).fetchall()
        finally:
            db.close()
        out = [dict(zip(FIELDS, row, strict=True)) for row in reversed(rows)]
        for item in out:
            item["allowed"] = bool(item["allowed"])
        return out
