"""workspace logs reads only the page it shows (history_store.py): a history of 5,000
entries is paged, by offset, tail, sequence and stream, reading a bounded number of rows
(counted by wrapping the connection's row factory), with the result the old path (every row
read, then sliced) gave. No sandbox: the entries go in by the history's own insert path."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp.errors import ValidationError
from pyro_mcp.workspaces.history import INLINE_CHARS, History, kept_dir, page_logs, read_logs
from pyro_mcp.workspaces.secrets import Secret
from pyro_mcp.workspaces.secrets import redactor as load_redactor
from pyro_mcp.workspaces.secrets import store as store_secrets
from pyro_mcp.workspaces.store import Store
from support import workspace_row

WORKSPACE_ID = "0123456789ab"
ENTRIES = 5000
LATER = "added-later-s3cret"  # printed by some commands before it became a secret


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Path]]:
    root = tmp_path_factory.mktemp("paging")
    store = Store(root / "state.db")
    store.insert_admitted(workspace_row(WORKSPACE_ID), lambda active: None)
    recorder = History(store, WORKSPACE_ID, root / "secrets")
    recorder.execution_mode = "guest_vsock"
    store_secrets(root / "secrets", [Secret("FIRST", "first-s3cret", "literal")])
    for n in range(1, ENTRIES + 1):
        long = "x" * (INLINE_CHARS + 1) if n % 1000 == 0 else ""  # some output kept in files
        stdout = f"out {n} {LATER if n % 7 == 0 else ''}\n{long}"
        answer = {"exit_code": n % 3, "duration_ms": n, "stdout": stdout, "stderr": f"e{n}"}
        recorder.record({"command": f"echo {n} first-s3cret {LATER}"}, answer)
    store_secrets(root / "secrets", [Secret("LATER", LATER, "literal")])
    yield store, root
    store.close()


class Counted:
    """The rows the store hands to Python on this thread's connection."""

    def __init__(self, store: Store) -> None:
        self.rows = 0
        with store.connect() as db:
            self.db = db

    def __enter__(self) -> Counted:
        def count(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> sqlite3.Row:
            self.rows += 1
            return sqlite3.Row(cursor, row)

        self.db.row_factory = count
        return self

    def __exit__(self, *exc: Any) -> None:
        self.db.row_factory = sqlite3.Row


def _read(store: Store, root: Path, **options: Any) -> dict[str, Any]:
    redact = load_redactor(root / "secrets").text
    return read_logs(store, WORKSPACE_ID, kept_dir(root), redact, **options)


def _old_path(store: Store, root: Path, **options: Any) -> dict[str, Any]:
    """What 3.6 did: read every row, shape and redact each, then page the list."""
    redactor = load_redactor(root / "secrets")
    entries = []
    for row in store.commands(WORKSPACE_ID):
        row.pop("workspace_id")
        row["stdout_file"] = row["stderr_file"] = None
        row["cancelled"] = bool(row["cancelled"])
        entries.append(row)
    logs = {"workspace_id": WORKSPACE_ID, "count": len(entries), "entries": entries}
    directory = kept_dir(root)
    return page_logs(redactor.value(logs), directory=directory, redact=redactor.text, **options)


@pytest.mark.parametrize(
    ("options", "most_rows"),
    [
        ({"offset": 4990, "limit": 10}, 11),  # the count and the page
        ({"tail": 5}, 6),
        ({"tail": 5, "limit": 2}, 3),
        ({"offset": 1995, "limit": 10, "budget": 7168}, 11),  # 2000 has a kept file
        ({"budget": 7168}, None),  # no limit: as many as fit, and one to see it does not
        ({"offset": 6000}, 1),
        ({"offset": 10**30, "limit": 10**30}, 1),  # beyond sqlite's integers: no traceback
        ({"offset": 4998, "limit": 10**30}, 3),
        ({"sequence": 2800}, 1),
        ({"sequence": 3000, "stream": "stdout", "offset": 100, "limit": 50}, 1),
        ({"sequence": 3000, "stream": "stdout", "budget": 2000}, 1),
    ],
)
def test_a_page_reads_only_its_rows_and_equals_the_whole_read(
    history: tuple[Store, Path], options: dict[str, Any], most_rows: int | None
) -> None:
    store, root = history
    with Counted(store) as counted:
        page = _read(store, root, **options)
    if most_rows is None:  # the count, the page and the entry that did not fit
        most_rows = page["count"] + 2
        assert 1 < page["count"] < 100 and page["next_offset"] == page["count"]
    assert 0 < counted.rows <= most_rows, counted.rows
    with Counted(store) as whole:
        assert page == _old_path(store, root, **options)
    assert whole.rows == ENTRIES  # the counter sees rows: the old path read every one
    assert LATER not in str(page) and "first-s3cret" not in str(page)


def test_pages_say_where_they_are(history: tuple[Store, Path]) -> None:
    store, root = history
    page = _read(store, root, offset=4990, limit=10)
    assert [e["sequence"] for e in page["entries"]] == list(range(4991, 5001))
    assert (page["total"], page["offset"], page["next_offset"]) == (ENTRIES, 4990, None)
    assert page["entries"][-1]["stdout"].startswith("out 5000 \nxxx")  # its kept file
    assert page["entries"][7]["stdout"] == "out 4998 [REDACTED]\n"
    assert page["entries"][0]["command"] == "echo 4991 [REDACTED] [REDACTED]"
    tail = _read(store, root, tail=5)
    assert [e["sequence"] for e in tail["entries"]] == [4996, 4997, 4998, 4999, 5000]
    assert (tail["offset"], tail["next_offset"]) == (4995, None)
    assert _read(store, root, offset=10, limit=10)["next_offset"] == 20


def test_bad_requests_fail_in_one_line(history: tuple[Store, Path]) -> None:
    store, root = history
    for options, message in [
        ({"sequence": ENTRIES + 1}, f"no command with sequence {ENTRIES + 1}"),
        ({"sequence": 10**30}, "no command with sequence 1000000000000000000000000000000"),
        ({"stream": "stdout"}, "stream needs sequence"),
        ({"sequence": 1, "stream": "both"}, "stream must be stdout or stderr"),
    ]:
        with pytest.raises(ValidationError, match=message) as caught:
            _read(store, root, **options)
        assert "\n" not in str(caught.value)
    with store.connect() as db:
        assert not db.in_transaction  # the read snapshot ended with the error


def test_an_exec_appending_meanwhile_does_not_break_the_page(tmp_path: Path) -> None:
    """The count and the rows come from one read snapshot: an entry appended between them
    (by another connection, as a supervisor does) is in neither, and the next page has it."""
    store = Store(tmp_path / "state.db")
    store.insert_admitted(workspace_row(WORKSPACE_ID), lambda active: None)
    entry = {"command": "true", "cwd": "/workspace", "exit_code": 0, "duration_ms": 1}
    entry |= {"execution_mode": "guest_vsock", "stdout": "", "stderr": ""}
    for _ in range(3):
        store.record_command(WORKSPACE_ID, entry, 1.0)

    def append() -> None:
        store.record_command(WORKSPACE_ID, entry, 2.0)  # this thread's own connection
        store.close()

    with store.history(WORKSPACE_ID) as view:
        assert view.total() == 3
        writer = threading.Thread(target=append)
        writer.start()
        writer.join(timeout=30)
        assert not writer.is_alive()  # a reader never blocks the writer (WAL)
        assert [e["sequence"] for e in view.rows(0, None)] == [1, 2, 3]
        assert view.total() == 3 and view.one(4) is None
    page = read_logs(store, WORKSPACE_ID, kept_dir(tmp_path), str, offset=3)
    assert [e["sequence"] for e in page["entries"]] == [4] and page["total"] == 4
    store.close()
