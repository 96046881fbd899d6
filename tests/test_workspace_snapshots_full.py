"""Full snapshots (issue 13): a named snapshot holds the system layer and /workspace (copies
of both disk images, workspaces/images.py), a reset to it restores both; the baseline is a
fresh system and the baseline /workspace. Real sandboxes on both engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pyro_mcp.workspaces import blank_disk, images
from workspace_fixtures import *  # noqa: F403  (the fixtures)

pytestmark = pytest.mark.guest

# What an `apt-get install` leaves (a file under /usr/local and one under /etc), and a
# /workspace file.
CHANGE = (
    "echo x > /usr/local/bin/pyro-tool && echo y > /etc/pyro-test.conf && "
    "echo w > /workspace/work.txt"
)
PROBE = "cat /usr/local/bin/pyro-tool /etc/pyro-test.conf /workspace/work.txt 2>/dev/null; true"


def clones(directory: Path) -> bool:
    """Whether the file system of ``directory`` makes clones (btrfs, XFS)."""
    (directory / ".probe").write_bytes(b"x")
    try:
        return blank_disk.clone(directory / ".probe", directory / ".probe-clone")
    finally:
        (directory / ".probe").unlink()
        (directory / ".probe-clone").unlink(missing_ok=True)


def probe(pyro: Any, wid: str) -> str:
    return str(pyro.exec_workspace(wid, command=PROBE)["stdout"])


@pytest.mark.parametrize("engine", ("gvisor", "qemu"))
def test_a_snapshot_holds_the_system_layer_and_workspace(
    engine: str, pyro_for: Any, new_workspace: Any
) -> None:
    pyro = pyro_for(engine)
    wid = new_workspace(pyro, disk_mib=256)["workspace_id"]
    assert pyro.exec_workspace(wid, command=CHANGE)["exit_code"] == 0
    pyro.stop_workspace(wid)
    pyro.start_workspace(wid)
    assert probe(pyro, wid) == "x\ny\nw\n"  # stop/start keeps both

    created = pyro.create_snapshot(wid, "installed")["snapshot"]
    assert created["kind"] == "named" and created["entry_count"] >= 1
    snapshot_dir = pyro.manager.runtime.home / "workspaces" / wid / "snapshots" / "installed"
    assert images.has_images(snapshot_dir)
    names = sorted(p.name for p in snapshot_dir.iterdir())
    if clones(snapshot_dir.parent):  # btrfs, XFS: the images, cloned
        assert names == ["snapshot.json", "system.img", "workspace.img"]
    else:  # ext4: as chunks, what the snapshot wrote counted
        assert created["bytes_written"] > 0
        assert names == [
            "snapshot.json",
            "system.img.chunks",
            "system.img.manifest",
            "workspace.img.chunks",
            "workspace.img.manifest",
        ]
    # later changes on top of the snapshot
    pyro.exec_workspace(wid, command="echo later > /etc/pyro-test.conf; rm /workspace/work.txt")

    pyro.reset_workspace(wid)
    assert probe(pyro, wid) == ""  # baseline: a fresh system and the empty /workspace

    reset = pyro.reset_workspace(wid, snapshot="installed")["workspace_reset"]
    assert (reset["snapshot_name"], reset["kind"]) == ("installed", "named")
    assert probe(pyro, wid) == "x\ny\nw\n"  # both back, as of the snapshot
    # the snapshot stays as it was: writes after the reset go to the workspace's own disks
    pyro.exec_workspace(wid, command="echo z > /etc/pyro-test.conf")
    pyro.reset_workspace(wid, snapshot="installed")
    assert probe(pyro, wid) == "x\ny\nw\n"

    deleted = pyro.delete_snapshot(wid, "installed")
    assert deleted["deleted"] is True and not snapshot_dir.exists()


def test_a_second_snapshot_of_an_unchanged_workspace_shares_its_chunks(
    ws_pyro: Any, new_workspace: Any
) -> None:
    """ext4 (where the home cannot clone): the second snapshot links the first's chunks,
    writes only what changed, and outlives the first."""
    wid = new_workspace(disk_mib=512)["workspace_id"]
    snapshots = ws_pyro.manager.runtime.home / "workspaces" / wid / "snapshots"
    if clones(snapshots):
        pytest.skip("this home clones (btrfs/XFS): no chunks")
    fill = "head -c 33554432 /dev/urandom > /workspace/big && md5sum < big && " + CHANGE
    digest = ws_pyro.exec_workspace(wid, command=fill)["stdout"]
    first = ws_pyro.create_snapshot(wid, "first")["snapshot"]
    assert first["bytes_written"] > 32 * 1024 * 1024
    second = ws_pyro.create_snapshot(wid, "second")["snapshot"]
    assert second["bytes_written"] < 4 * 1024 * 1024, second  # superblocks, manifests
    chunks = list((snapshots / "second" / "workspace.img.chunks").iterdir())
    assert len(chunks) > 32 and sum(c.stat().st_nlink == 2 for c in chunks) > 32
    ws_pyro.delete_snapshot(wid, "first")
    ws_pyro.exec_workspace(wid, command="rm /workspace/big /etc/pyro-test.conf")
    reset = ws_pyro.reset_workspace(wid, snapshot="second")["workspace_reset"]
    assert reset["bytes_written"] > 32 * 1024 * 1024  # what the reset restored, not 2 MiB
    assert ws_pyro.exec_workspace(wid, command="md5sum < /workspace/big")["stdout"] == digest
    assert probe(ws_pyro, wid) == "x\ny\nw\n"


def test_a_stopped_workspace_resets_to_a_snapshot_and_to_the_baseline(
    ws_pyro: Any, new_workspace: Any
) -> None:
    wid = new_workspace(disk_mib=256)["workspace_id"]
    ws_pyro.exec_workspace(wid, command=CHANGE)
    ws_pyro.create_snapshot(wid, "s1")
    ws_pyro.stop_workspace(wid)
    ws_pyro.reset_workspace(wid)  # from stopped: a fresh system too
    assert probe(ws_pyro, wid) == ""
    ws_pyro.stop_workspace(wid)
    ws_pyro.reset_workspace(wid, snapshot="s1")
    assert probe(ws_pyro, wid) == "x\ny\nw\n"


def test_snapshot_errors_are_one_line(ws_pyro: Any, new_workspace: Any) -> None:
    wid = new_workspace(disk_mib=256)["workspace_id"]
    ws_pyro.create_snapshot(wid, "one")
    with pytest.raises(ValueError, match="already exists"):
        ws_pyro.create_snapshot(wid, "one")
    with pytest.raises(ValueError, match="does not exist") as caught:
        ws_pyro.reset_workspace(wid, snapshot="nope")
    assert "\n" not in str(caught.value)
    snapshots = ws_pyro.manager.runtime.home / "workspaces" / wid / "snapshots"
    assert sorted(p.name for p in snapshots.iterdir()) == ["one"]  # no partial left
