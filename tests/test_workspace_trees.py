"""A guest-made tree deeper than Python's stack, on every engine: diff, snapshot, export,
reset and delete all work and leave nothing behind; a 10,000-deep seed is refused at once
(issue 10 items 6 and 7). The module's state dir must be clean at the end (ws_home)."""

from __future__ import annotations

import gzip
import io
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from pyro_mcp.guest.tree import remove_tree
from support import ENVIRONMENT
from workspace_fixtures import *  # noqa: F403  (the fixtures)

pytestmark = pytest.mark.guest

ENGINES = ("gvisor", "qemu")
DEPTH = 1100  # over CPython's recursion limit (1000); 'd/' * 1100 stays under PATH_MAX
# The tree of `mkdir d; cd d` in a loop, made by one process: 1,100 forks of mkdir take
# over two minutes under QEMU/TCG on a busy host. Directory fds also go past PATH_MAX.
MAKE_DEEP = """python3 - <<'EOF'
import os
fd = os.open(".", os.O_RDONLY)
for _ in range(DEPTH):
    os.mkdir("d", dir_fd=fd)
    fd, parent = os.open("d", os.O_RDONLY, dir_fd=fd), fd
    os.close(parent)
os.write(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), b"bottom\\n")
EOF"""
BOTTOM = "/".join(["d"] * DEPTH + ["f"])


def leftovers(home: Path) -> list[str]:
    """Everything under ``<home>/workspaces`` that is no live workspace's own entry."""
    root = home / "workspaces"
    found = [p.name for p in root.glob(".trash-*")] if root.exists() else []
    return found + [str(p.relative_to(root)) for p in root.glob("*/volume.old-*")]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("engine", ENGINES)
def test_a_deep_tree_diffs_snapshots_exports_resets_and_deletes(
    engine: str, pyro_for: Any, ws_home: Path, host_dir: Path, new_workspace: Any
) -> None:
    pyro = pyro_for(engine)
    wid = new_workspace(pyro, seed_path=None)["workspace_id"]
    make = MAKE_DEEP.replace("range(DEPTH)", f"range({DEPTH})")
    made = pyro.exec_workspace(wid, command=make, timeout_seconds=120)
    assert made["exit_code"] == 0, made

    diff = pyro.diff_workspace(wid)
    entries = {e["path"]: e for e in diff["entries"]}
    assert list(entries) == [BOTTOM]  # the directories above it are not empty
    assert entries[BOTTOM]["status"] == "added" and "+bottom" in entries[BOTTOM]["text_patch"]

    snapshot = pyro.create_snapshot(wid, "deep")["snapshot"]
    assert snapshot["entry_count"] == DEPTH + 1

    out = host_dir / "out"
    try:
        exported = pyro.export_workspace(wid, "d", output_path=str(out))
        assert (exported["artifact_type"], exported["entry_count"]) == ("directory", DEPTH)
        assert (out / BOTTOM.partition("/")[2]).read_text() == "bottom\n"
    finally:
        remove_tree(str(out))  # host_dir's own clean-up is shutil.rmtree: recursive

    reset = pyro.reset_workspace(wid)  # the baseline: empty
    assert reset["workspace_reset"]["entry_count"] == 0
    assert pyro.diff_workspace(wid)["changed"] is False
    assert leftovers(ws_home) == []

    back = pyro.reset_workspace(wid, snapshot="deep")
    assert back["workspace_reset"]["entry_count"] == DEPTH + 1
    assert pyro.read_workspace_file(wid, BOTTOM)["content"] == "bottom\n"
    assert leftovers(ws_home) == []

    pyro.stop_workspace(wid)  # a stopped one keeps its deep /workspace on the host (gVisor)
    assert pyro.delete_workspace(wid)["deleted"] is True
    assert not (ws_home / "workspaces" / wid).exists()
    assert leftovers(ws_home) == []


def test_a_10000_deep_seed_is_refused_at_once(ws_pyro: Pyro, ws_home: Path, host_dir: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        name = ""
        for _ in range(10_000):
            name += "d/"
            info = tarfile.TarInfo(name[:-1])
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
    seed = host_dir / "deep.tar.gz"
    seed.write_bytes(gzip.compress(buffer.getvalue(), compresslevel=1))
    before = ws_pyro.list_workspaces()["count"]
    started = time.monotonic()
    with pytest.raises(ValueError, match=r"path is longer than 4096 bytes") as caught:
        ws_pyro.create_workspace(environment=ENVIRONMENT, seed_path=str(seed))
    assert time.monotonic() - started < 10
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300
    assert ws_pyro.list_workspaces()["count"] == before


@pytest.mark.timeout(600)
def test_a_tree_past_the_path_limit_is_refused_in_one_line_and_still_deletes(
    ws_pyro: Pyro, ws_home: Path, new_workspace: Any
) -> None:
    wid = new_workspace(seed_path=None)["workspace_id"]
    deep = MAKE_DEEP.replace("range(DEPTH)", "range(3000)")  # past PATH_MAX
    assert ws_pyro.exec_workspace(wid, command=deep, timeout_seconds=120)["exit_code"] == 0
    with pytest.raises(ValueError, match=r"path is longer than 4096 bytes") as caught:
        ws_pyro.diff_workspace(wid)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300
    # A full snapshot copies the disk images, not paths: the deep tree is kept whole.
    depth = "find /workspace -mindepth 2990 | wc -l"
    kept = int(ws_pyro.exec_workspace(wid, command=depth, timeout_seconds=120)["stdout"])
    ws_pyro.create_snapshot(wid, "s")
    ws_pyro.exec_workspace(wid, command="rm -rf /workspace/*", timeout_seconds=120)
    ws_pyro.reset_workspace(wid, snapshot="s")
    again = ws_pyro.exec_workspace(wid, command=depth, timeout_seconds=120)["stdout"]
    assert kept > 0 and int(again) == kept
    assert ws_pyro.reset_workspace(wid)["workspace_reset"]["entry_count"] == 0
    assert ws_pyro.exec_workspace(wid, command=deep, timeout_seconds=120)["exit_code"] == 0
    assert ws_pyro.delete_workspace(wid)["deleted"] is True
    assert not (ws_home / "workspaces" / wid).exists()
    assert leftovers(ws_home) == []
