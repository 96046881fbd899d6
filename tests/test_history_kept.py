"""The kept output of a workspace's history (history/<sequence>.stdout|stderr): an entry
and its files are saved together or not at all, and never hold a secret value."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from pyro_mcp.errors import SandboxError
from pyro_mcp.workspaces.history import INLINE_CHARS, History
from pyro_mcp.workspaces.secrets import Secret
from pyro_mcp.workspaces.secrets import store as store_secrets
from pyro_mcp.workspaces.store import Store
from support import workspace_row
from workspace_fixtures import *  # noqa: F403 - the fixtures

SECRET = "kept-s3cret-value-42"
WORKSPACE_ID = "0123456789ab"


def test_an_entry_whose_output_cannot_be_kept_is_not_saved(tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"
    store_secrets(secrets_dir, [Secret("T", SECRET, "literal")])
    store = Store(tmp_path / "state.db")
    store.insert_admitted(workspace_row(WORKSPACE_ID), lambda active: None)
    history = History(store, WORKSPACE_ID, secrets_dir)
    request = {"command": "echo hi", "cwd": "/workspace"}
    long = "x" * (INLINE_CHARS + 1)  # long output is kept in files, short in the row
    answer = {"exit_code": 0, "duration_ms": 3, "stdout": f"a{SECRET}b\n{long}", "stderr": long}
    (tmp_path / "history").write_text("not a directory")  # the kept files cannot be written
    with pytest.raises(SandboxError, match="its history entry was not saved"):
        history.record(request, answer)
    assert store.commands(WORKSPACE_ID) == []  # no entry whose output is missing
    (tmp_path / "history").unlink()
    entry = history.record(request, answer)
    assert entry["sequence"] == 1 and entry["stdout"] == f"a[REDACTED]b\n{long}"
    kept = sorted(p.name for p in (tmp_path / "history").iterdir())
    assert kept == ["1.stderr", "1.stdout"]
    assert (tmp_path / "history" / "1.stdout").read_text() == f"a[REDACTED]b\n{long}"
    assert [e["sequence"] for e in store.commands(WORKSPACE_ID)] == [1]
    store.close()


@pytest.mark.guest
def test_logs_mask_a_secret_added_after_its_value_was_printed(
    ws_pyro: Pyro, new_workspace: Any
) -> None:
    """The kept output was written before the secret existed: reading it back, whole or by
    page, masks the workspace's secrets of now, as every result does."""
    workspace_id = new_workspace()["workspace_id"]
    value = "later-s3cret-7f3a"
    ws_pyro.exec_workspace(workspace_id, f"echo x{value}y; echo {value} >&2")
    ws_pyro.set_workspace_secret(workspace_id, "LATER", value=value)
    entry = ws_pyro.logs_workspace(workspace_id)["entries"][0]
    assert (entry["stdout"], entry["stderr"]) == ("x[REDACTED]y\n", "[REDACTED]\n")
    text, offset, pages = "", 0, 0
    while offset is not None and pages < 20:  # pages of 4 bytes, joined
        page = ws_pyro.logs_workspace(
            workspace_id, sequence=1, stream="stdout", offset=offset, limit=4
        )
        text += page["entries"][0]["stdout"]
        offset, pages = page["page"]["next_offset"], pages + 1
    assert text == "x[REDACTED]y\n"


def test_an_exec_ending_after_its_workspace_was_removed_leaves_nothing(tmp_path: Path) -> None:
    """An expiry removes the workspace while an exec's entry is being saved: its output is
    not kept in a directory made anew, and no entry outlives the workspace."""
    workspace_dir = tmp_path / "workspaces" / WORKSPACE_ID
    secrets_dir = workspace_dir / "secrets"
    workspace_dir.mkdir(parents=True)
    store_secrets(secrets_dir, [Secret("T", SECRET, "literal")])
    store = Store(tmp_path / "state.db")
    history = History(store, WORKSPACE_ID, secrets_dir)
    history.execution_mode = "guest_vsock"  # the record is gone with the workspace
    shutil.rmtree(workspace_dir)
    answer = {"exit_code": 0, "duration_ms": 3, "stdout": "out\n", "stderr": ""}
    with pytest.raises(SandboxError):
        history.record({"command": "true"}, answer)
    assert not workspace_dir.exists() and store.commands(WORKSPACE_ID) == []
    store.close()


def test_output_reads_back_byte_exact_inline_or_kept_and_stale_files_are_not_read(
    tmp_path: Path,
) -> None:
    """Lone surrogates (undecodable guest bytes), NUL, exactly INLINE_CHARS characters and
    one more of 4 bytes each come back as printed; a file a killed attempt left for the
    same sequence is never read as the new entry's."""
    from pyro_mcp.workspaces.history import kept_dir, page_logs

    secrets_dir = tmp_path / "secrets"
    store_secrets(secrets_dir, [Secret("T", SECRET, "literal")])
    store = Store(tmp_path / "state.db")
    store.insert_admitted(workspace_row(WORKSPACE_ID), lambda active: None)
    history = History(store, WORKSPACE_ID, secrets_dir)
    outputs = [
        "bad \udcff byte\n",
        "nul\0inside",
        "é" * INLINE_CHARS,
        "\U0001f600" * (INLINE_CHARS + 1),
        "",
    ]
    directory = kept_dir(tmp_path)
    directory.mkdir()
    for sequence, text in enumerate(outputs, start=1):  # a killed attempt's leftovers
        (directory / f"{sequence}.stdout").write_text("STALE")
        (directory / f"{sequence}.stderr").write_text("STALE")
        history.record({"command": "x"}, {"exit_code": 0, "duration_ms": 1, "stdout": text})
    logs = {"workspace_id": WORKSPACE_ID, "entries": store.commands(WORKSPACE_ID)}
    read = page_logs(logs, directory=directory)["entries"]
    assert [(e["stdout"], e["stderr"]) for e in read] == [(t, "") for t in outputs]
    for sequence, text in enumerate(outputs, start=1):
        whole = page_logs(logs, sequence=sequence, stream="stdout", directory=directory)
        assert whole["entries"][0]["stdout"] == text
    store.close()


def test_a_reset_racing_records_never_keeps_an_entry_without_its_output(tmp_path: Path) -> None:
    """Entries with long output (kept in files) recorded while resets clear the history:
    right after each reset, every entry left has its files (rows and files used to be
    cleared in two steps, so an entry recorded between them kept its row, not its output)."""
    import threading
    import time

    from pyro_mcp.workspaces.history import forget_streams, kept_dir

    store = Store(tmp_path / "state.db")
    store.insert_admitted(workspace_row(WORKSPACE_ID), lambda active: None)
    history = History(store, WORKSPACE_ID, tmp_path / "secrets")
    answer = {"exit_code": 0, "duration_ms": 1, "stdout": "y" * (INLINE_CHARS + 1), "stderr": ""}
    done = threading.Event()

    recorded: list[int] = []

    def record() -> None:
        while not done.is_set():
            recorded.append(history.record({"command": "x"}, answer)["sequence"])
            time.sleep(0.0005)
        store.close()

    def forget() -> None:
        time.sleep(0.002)  # a reset's removal takes a while: records come meanwhile
        forget_streams(tmp_path)

    def lost() -> list[int]:
        here = kept_dir(tmp_path)
        with store.transaction():  # the rows and the record's count as of one moment
            entries = store.commands(WORKSPACE_ID)
            count = store.get(WORKSPACE_ID)["command_count"]
        assert count == len(entries)  # the record counts what the history holds
        return [e["sequence"] for e in entries if not (here / f"{e['sequence']}.stdout").exists()]

    thread = threading.Thread(target=record)
    thread.start()
    missing: list[int] = []
    try:
        for _ in range(60):
            store.clear_commands(WORKSPACE_ID, forget)
            missing += lost()  # before a later reset clears them
            time.sleep(0.003)  # the recorder's turn (sqlite's busy wait would starve it)
    finally:
        done.set()
        thread.join(30)
    assert len(recorded) > 30, "the recorder never got a turn: nothing was tested"
    assert missing == [], f"{len(missing)} entries lost their output"
    store.close()
