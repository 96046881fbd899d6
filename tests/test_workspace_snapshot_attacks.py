"""Hostile and careless use of full snapshots, fork and suspend (issue 13 review): kills
mid-copy, names that try to escape, races on one workspace. Real sandboxes (gVisor)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from pyro_mcp.errors import PyroError
from pyro_mcp.workspaces import image_chunks, snapshots
from support import processes_mentioning
from workspace_fixtures import *  # noqa: F403  (the fixtures)

pytestmark = pytest.mark.guest


def snapshot_in_background(pyro: Pyro, wid: str, name: str) -> threading.Thread:
    def create() -> None:
        try:
            pyro.create_snapshot(wid, name)
        except (ValueError, RuntimeError):
            pass  # the supervisor is killed under it

    thread = threading.Thread(target=create, daemon=True)
    thread.start()
    return thread


@pytest.mark.timeout(240)
def test_a_supervisor_killed_mid_copy_leaves_no_frozen_disk(
    ws_pyro: Pyro, new_workspace: Any
) -> None:
    """SIGKILL while both disks are frozen: the next start mounts them again (a disk left
    frozen keeps its loop device for ever: 'still in use by an earlier sandbox')."""
    wid = new_workspace(disk_mib=1024)["workspace_id"]
    big = "head -c 400M /dev/urandom > /workspace/big && sync"  # no zeros: chunks skip them
    assert ws_pyro.exec_workspace(wid, command=big, timeout_seconds=120)["exit_code"] == 0
    pid = ws_pyro.manager.workspaces.store.get(wid)["supervisor_pid"]
    snapshots = ws_pyro.manager.runtime.home / "workspaces" / wid / "snapshots"
    thread = snapshot_in_background(ws_pyro, wid, "s1")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the copy has begun: the disks are frozen
        copies = list(snapshots.glob(".s1.partial-*/workspace.img"))  # a clone's home
        if copies and copies[0].stat().st_blocks > 0:
            break
        if any(snapshots.glob(".s1.partial-*/workspace.img.chunks/*")):  # ext4's chunks
            break
        time.sleep(0.005)
    else:
        pytest.fail("the copy never began")
    os.kill(pid, signal.SIGKILL)
    thread.join(60)
    assert ws_pyro.start_workspace(wid)["state"] == "started"
    assert not list(snapshots.glob(".s1.partial-*"))  # the next boot swept the half copy
    wrote = ws_pyro.exec_workspace(wid, command="echo hi > /workspace/a && cat /workspace/a")
    assert wrote["stdout"] == "hi\n"
    assert ws_pyro.create_snapshot(wid, "s1")["snapshot"]["snapshot_name"] == "s1"


@pytest.mark.timeout(600)
def test_a_suspended_vm_reset_to_a_snapshot_never_resumes_the_old_memory(
    qemu_pyro: Pyro, new_workspace: Any
) -> None:
    """The memory image belongs to the disks it was saved with: a reset to a full snapshot
    (new disks) boots afresh, as a reset to the baseline does; a fork gets none."""
    pyro = qemu_pyro
    wid = new_workspace(pyro, disk_mib=256)["workspace_id"]
    image = pyro.manager.runtime.home / "workspaces" / wid / "memory.state"
    pyro.exec_workspace(wid, command="echo kept > /workspace/f")
    pyro.create_snapshot(wid, "s1")
    pyro.exec_workspace(wid, command="echo in-memory > /run/marker")  # a tmpfs: memory only
    pyro.stop_workspace(wid, suspend=True)
    assert image.is_file()
    child = pyro.fork_workspace(wid, snapshot="s1")["workspace_id"]
    try:
        probe = "cat /workspace/f /run/marker 2>/dev/null; true"
        assert pyro.exec_workspace(child, command=probe)["stdout"] == "kept\n"
    finally:
        pyro.delete_workspace(child)
    reset = pyro.reset_workspace(wid, snapshot="s1")
    assert reset["state"] == "started" and not image.exists()
    assert pyro.exec_workspace(wid, command=probe)["stdout"] == "kept\n"  # a fresh boot


@pytest.mark.timeout(240)
def test_racing_creates_of_one_name_keep_one_snapshot_and_say_so_in_one_line(
    ws_pyro: Pyro, new_workspace: Any
) -> None:
    wid = new_workspace(disk_mib=256)["workspace_id"]
    snapshots = ws_pyro.manager.runtime.home / "workspaces" / wid / "snapshots"
    ws_pyro.exec_workspace(wid, command="echo one > /workspace/f")
    results: list[str] = []

    def create() -> None:
        try:
            ws_pyro.create_snapshot(wid, "dup")
            results.append("ok")
        except Exception as exc:  # whatever it is, it is recorded and checked below
            results.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=create) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(results) == ["ValidationError: snapshot 'dup' already exists"] * 2 + ["ok"]
    assert sorted(p.name for p in snapshots.iterdir()) == ["dup"]  # no partial left
    names = [s["snapshot_name"] for s in ws_pyro.list_snapshots(wid)["snapshots"]]
    assert sorted(names) == ["baseline", "dup"]

    # What a create killed between its move and its record left: not a snapshot, and no
    # obstacle to the next create of that name (which replaces it).
    stale = snapshots / "stale"
    stale.mkdir()
    (stale / "workspace.img").write_bytes(b"junk")
    (stale / "system.img").write_bytes(b"junk")
    ws_pyro.create_snapshot(wid, "stale")
    ws_pyro.exec_workspace(wid, command="rm /workspace/f")
    ws_pyro.reset_workspace(wid, snapshot="stale")
    assert ws_pyro.exec_workspace(wid, command="cat /workspace/f")["stdout"] == "one\n"


def test_the_fork_schema_shows_its_rules_as_create_and_snapshot_create_do() -> None:
    """No sandbox: what a model is told about workspace_fork's arguments."""
    from test_mcp_schema import list_tools

    tools = list_tools("workspace-full")
    fork = tools["workspace_fork"].inputSchema["properties"]
    snapshot_name = tools["snapshot_create"].inputSchema["properties"]["name"]["pattern"]
    assert any(kind.get("pattern") == snapshot_name for kind in fork["snapshot"]["anyOf"])
    assert "120" in fork["name"]["description"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("action", ["fork", "reset of a stopped workspace"])
def test_a_snapshot_deleted_meanwhile_is_said_in_one_line(
    action: str, ws_pyro: Pyro, new_workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot goes between the look-up and the copy (made certain: its system image
    is deleted as the first copy begins): the fork or reset fails as if it had never
    existed, without a host path; a fork leaves nothing, a reset the disks as they were."""
    wid = new_workspace(disk_mib=256)["workspace_id"]
    ws_pyro.exec_workspace(wid, command="echo kept > /workspace/f")
    ws_pyro.create_snapshot(wid, "s1")
    home = ws_pyro.manager.runtime.home
    before = sorted(p.name for p in (home / "workspaces").iterdir())
    snapshot = home / "workspaces" / wid / "snapshots" / "s1"
    restore = image_chunks.restore

    def deleting_copy(directory: Path, name: str, target: Path) -> None:
        (snapshot / "system.img").unlink(missing_ok=True)  # kept whole (a clone's home)
        (snapshot / "system.img.manifest").unlink(missing_ok=True)  # or as chunks (ext4)
        shutil.rmtree(snapshot / "system.img.chunks", ignore_errors=True)
        restore(directory, name, target)

    if action != "fork":
        ws_pyro.stop_workspace(wid)
    monkeypatch.setattr(image_chunks, "restore", deleting_copy)
    with pytest.raises(ValueError) as caught:
        if action == "fork":
            ws_pyro.fork_workspace(wid, snapshot="s1")
        else:
            ws_pyro.reset_workspace(wid, snapshot="s1")
    monkeypatch.undo()
    assert str(caught.value) == "snapshot 's1' does not exist"
    assert sorted(p.name for p in (home / "workspaces").iterdir()) == before
    if action != "fork":
        ws_pyro.start_workspace(wid)
    assert ws_pyro.exec_workspace(wid, command="cat /workspace/f")["stdout"] == "kept\n"


@pytest.mark.timeout(300)
def test_a_secret_value_as_a_label_key_or_name_is_never_shown_or_stored(
    ws_pyro: Pyro, new_workspace: Any
) -> None:
    value = "hunter2-label-key-value"
    secrets = [{"name": "TOK", "value": value}]
    created = new_workspace(disk_mib=256, secrets=secrets, labels={value: "z"}, name=value)
    wid = created["workspace_id"]
    assert value not in str(created)
    forked = ws_pyro.fork_workspace(wid, labels={value: "x", "k": value}, name=f"my {value}")
    try:
        updated = ws_pyro.update_workspace(wid, labels={value: "y"}, name=f"{value}!")
        store = ws_pyro.manager.workspaces.store
        stored = [store.get(w) for w in (wid, forked["workspace_id"])]
        for shown in (forked, updated, ws_pyro.list_workspaces(), stored):
            assert value not in str(shown)
    finally:
        ws_pyro.delete_workspace(forked["workspace_id"])


@pytest.mark.timeout(300)
def test_a_supervisor_killed_mid_reset_leaves_a_disk_the_next_start_mounts(
    ws_pyro: Pyro, new_workspace: Any
) -> None:
    """SIGKILL while a reset copies the snapshot's images: the half-copied image was left in
    place ('cannot mount the workspace disk: Invalid argument' at every start); now the new
    image is put in place whole, so the next start boots the disk as it was before."""
    wid = new_workspace(disk_mib=1024)["workspace_id"]
    fill = "echo before > /workspace/f && head -c 400M /dev/urandom > /workspace/big && sync"
    assert ws_pyro.exec_workspace(wid, command=fill, timeout_seconds=120)["exit_code"] == 0
    ws_pyro.create_snapshot(wid, "s1")
    pid = ws_pyro.manager.workspaces.store.get(wid)["supervisor_pid"]
    root = ws_pyro.manager.runtime.home / "workspaces" / wid

    failed: list[Exception] = []

    def reset() -> None:
        try:
            ws_pyro.reset_workspace(wid, snapshot="s1")
        except (ValueError, RuntimeError) as exc:  # its supervisor is killed
            failed.append(exc)

    thread = threading.Thread(target=reset, daemon=True)
    thread.start()
    old_inode = (root / "workspace.ext4").stat().st_ino
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the copy of /workspace's image has begun
        with contextlib.suppress(FileNotFoundError):  # made in place, or beside it
            copies = [p.stat() for p in root.glob("*workspace.ext4*")]
            if any(c.st_blocks > 0 and c.st_ino != old_inode for c in copies):
                break
        time.sleep(0.002)
    else:
        pytest.fail("the reset's copy never began")
    os.kill(pid, signal.SIGKILL)
    thread.join(60)
    assert failed, "the reset ended before the kill: nothing was tested"
    assert ws_pyro.start_workspace(wid)["state"] == "started"
    probe = ws_pyro.exec_workspace(wid, command="cat /workspace/f && echo x > /workspace/n")
    assert probe["stdout"] == "before\n" and probe["exit_code"] == 0


def test_a_started_workspace_reset_to_a_snapshot_deleted_meanwhile_says_so(
    ws_pyro: Pyro, new_workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot goes after the client found it, before its supervisor restores it:
    one line naming it (not 'reset failed: FileNotFoundError(...)'), the disks as they were."""
    wid = new_workspace(disk_mib=256)["workspace_id"]
    ws_pyro.exec_workspace(wid, command="echo kept > /workspace/f")
    ws_pyro.create_snapshot(wid, "s1")
    found = snapshots.source

    def deleted_after_lookup(ws: Any, name: str) -> snapshots.Source:
        src = found(ws, name)
        assert src.images is not None
        image_chunks.unlist(src.images)  # what a delete does first, then the rest
        shutil.rmtree(src.images)
        return src

    monkeypatch.setattr(snapshots, "source", deleted_after_lookup)
    with pytest.raises(PyroError) as caught:  # the supervisor's answer
        ws_pyro.reset_workspace(wid, snapshot="s1")
    monkeypatch.undo()
    assert str(caught.value) == "snapshot 's1' does not exist"
    if ws_pyro.manager.workspaces.store.get(wid)["state"] != "started":
        # the failed reset stopped it: no sandbox of it is left running
        root = str(ws_pyro.manager.runtime.home / "workspaces" / wid)
        deadline = time.monotonic() + 10
        while [line for line in processes_mentioning(root) if "runsc" in line]:
            assert time.monotonic() < deadline, processes_mentioning(root)
            time.sleep(0.1)
        ws_pyro.start_workspace(wid)
    assert ws_pyro.exec_workspace(wid, command="cat /workspace/f")["stdout"] == "kept\n"


@pytest.mark.timeout(240)
def test_a_snapshot_made_while_the_one_it_links_to_is_deleted_loses_nothing(
    ws_pyro: Pyro, new_workspace: Any
) -> None:
    """s2's copy links s1's chunks while s1 is deleted (from the moment s2's first chunk
    file appears): every link that fails is written instead, and s2 restores whole."""
    wid = new_workspace(disk_mib=512)["workspace_id"]
    fill = "head -c 96M /dev/urandom > /workspace/big && md5sum < /workspace/big"
    digest = ws_pyro.exec_workspace(wid, command=fill, timeout_seconds=120)["stdout"]
    ws_pyro.create_snapshot(wid, "s1")
    snapshots = ws_pyro.manager.runtime.home / "workspaces" / wid / "snapshots"
    thread = snapshot_in_background(ws_pyro, wid, "s2")
    deadline = time.monotonic() + 60
    while not any(snapshots.glob(".s2.partial-*/*.chunks/*")):
        assert time.monotonic() < deadline, "the copy never began"
        time.sleep(0.001)
    ws_pyro.delete_snapshot(wid, "s1")
    thread.join(120)
    assert [s["snapshot_name"] for s in ws_pyro.list_snapshots(wid)["snapshots"]] == [
        "baseline",
        "s2",
    ]
    ws_pyro.exec_workspace(wid, command="rm /workspace/big")
    ws_pyro.reset_workspace(wid, snapshot="s2")
    assert ws_pyro.exec_workspace(wid, command="md5sum < /workspace/big")["stdout"] == digest
