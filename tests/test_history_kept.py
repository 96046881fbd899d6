"""The kept output of a workspace's history (history/<sequence>.stdout|stderr): an entry
and its files are saved together or not at all, and never hold a secret value."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyro_mcp.errors import SandboxError
from pyro_mcp.workspaces.history import History
from pyro_mcp.workspaces.secrets import Secret
from pyro_mcp.workspaces.secrets import store as store_secrets
from pyro_mcp.workspaces.store import Store

SECRET = "kept-s3cret-value-42"
WORKSPACE_ID = "0123456789ab"


def test_an_entry_whose_output_cannot_be_kept_is_not_saved(tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"
    store_secrets(secrets_dir, [Secret("T", SECRET, "literal")])
    store = Store(tmp_path / "state.db")
    history = History(store, WORKSPACE_ID, secrets_dir)
    request = {"command": "echo hi", "cwd": "/workspace"}
    answer = {"exit_code": 0, "duration_ms": 3, "stdout": f"a{SECRET}b\n", "stderr": "e\n"}
    (tmp_path / "history").write_text("not a directory")  # the kept files cannot be written
    with pytest.raises(SandboxError, match="its history entry was not saved"):
        history.record(request, answer)
    assert store.commands(WORKSPACE_ID) == []  # no entry whose output is missing
    (tmp_path / "history").unlink()
    entry = history.record(request, answer)
    assert entry["sequence"] == 1 and entry["stdout"] == "a[REDACTED]b\n"
    kept = sorted(p.name for p in (tmp_path / "history").iterdir())
    assert kept == ["1.stderr", "1.stdout"]
    assert (tmp_path / "history" / "1.stdout").read_text() == "a[REDACTED]b\n"
    assert [e["sequence"] for e in store.commands(WORKSPACE_ID)] == [1]
    store.close()
