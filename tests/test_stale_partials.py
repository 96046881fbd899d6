"""Partial copies a crash left: a snapshot directory still named ``.NAME.partial-XXXX``
(images.remove_partials) is removed by the workspace's next supervisor boot; a fork's
staging directory by the child's (fork_copy.before_boot, tests/test_fork_copy.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from pyro_mcp.workspaces import images
from pyro_mcp.workspaces.layout import SYSTEM_IMAGE, WORKSPACE_IMAGE, WorkspaceLayout
from workspace_fixtures import *  # noqa: F403  (the fixtures)


def stale_copy(layout: WorkspaceLayout, name: str) -> Path:
    partial = images.partial(layout.snapshots_dir, name)
    partial.mkdir()
    (partial / WORKSPACE_IMAGE).write_bytes(b"half a copy")
    return partial


def test_only_partial_snapshot_directories_are_removed(tmp_path: Path) -> None:
    layout = WorkspaceLayout(tmp_path, "0123456789ab")
    layout.create()
    first, second = stale_copy(layout, "s1"), stale_copy(layout, "s2")
    whole = layout.snapshots_dir / "s3"
    whole.mkdir()
    for image in (WORKSPACE_IMAGE, SYSTEM_IMAGE):
        (whole / image).write_bytes(b"a whole snapshot")
    (layout.snapshots_dir / "old.tar").write_bytes(b"a 3.6 snapshot")
    tar_partial = images.partial(layout.snapshots_dir, "t1")  # a tar's: its client's file
    tar_partial.write_bytes(b"tar being written")
    assert images.remove_partials(layout) == sorted([first.name, second.name])
    left = sorted(p.name for p in layout.snapshots_dir.iterdir())
    assert left == sorted(["old.tar", "s3", tar_partial.name])
    assert images.remove_partials(layout) == []
    assert images.remove_partials(WorkspaceLayout(tmp_path, "nosuchdir000")) == []


@pytest.mark.guest
def test_a_start_removes_what_a_crashed_snapshot_left(ws_pyro: Pyro, new_workspace: Any) -> None:
    wid = new_workspace(disk_mib=256)["workspace_id"]
    ws_pyro.create_snapshot(wid, "kept")
    ws_pyro.stop_workspace(wid)
    layout = WorkspaceLayout(ws_pyro.manager.runtime.home, wid)
    partial = stale_copy(layout, "crashed")
    ws_pyro.start_workspace(wid)
    assert not partial.exists()
    assert images.has_images(layout.snapshots_dir / "kept")
    names = [s["snapshot_name"] for s in ws_pyro.list_snapshots(wid)["snapshots"]]
    assert names == ["baseline", "kept"]
