"""A fork's copy of a stopped source (workspaces/fork_copy.py), without a sandbox: the source
is held under the owner mechanism so no start or reset runs meanwhile, and only its two disk
images are copied (never a suspended VM's memory)."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from pyro_mcp.manager import PyroRuntime
from pyro_mcp.workspaces import fork_copy, owners
from pyro_mcp.workspaces.layout import SYSTEM_IMAGE, WORKSPACE_IMAGE, WorkspaceLayout
from support import workspace_row

WID = "0123456789ab"


def test_only_the_two_images_are_copied_never_the_memory(tmp_path: Path) -> None:
    source = WorkspaceLayout(tmp_path, WID)
    source.create()
    source.disk.write_bytes(b"workspace" * 1000)
    source.system_disk.write_bytes(b"system" * 1000)
    source.memory_image.write_bytes(b"suspended memory")
    dest = tmp_path / "dest"
    dest.mkdir()
    fork_copy.copy_stopped(source, dest)
    assert sorted(p.name for p in dest.iterdir()) == sorted([WORKSPACE_IMAGE, SYSTEM_IMAGE])
    assert (dest / WORKSPACE_IMAGE).read_bytes() == source.disk.read_bytes()
    assert (dest / SYSTEM_IMAGE).read_bytes() == source.system_disk.read_bytes()
    assert source.memory_image.read_bytes() == b"suspended memory"  # the source keeps it


def test_a_source_without_a_system_image_yet_gives_its_disk_alone(tmp_path: Path) -> None:
    source = WorkspaceLayout(tmp_path, WID)
    source.create()
    source.disk.write_bytes(b"workspace")
    dest = tmp_path / "dest"
    dest.mkdir()
    fork_copy.copy_stopped(source, dest)
    assert [p.name for p in dest.iterdir()] == [WORKSPACE_IMAGE]


def test_a_copy_holds_the_source_and_a_start_waits_for_it(tmp_path: Path) -> None:
    with contextlib.closing(PyroRuntime(base_dir=tmp_path)) as runtime:
        lifecycle = runtime.workspaces.lifecycle
        store = lifecycle.store
        store.insert_admitted(workspace_row(WID, "stopped"), lambda active: None)
        assert fork_copy.claim(store, WID)
        assert not fork_copy.claim(store, WID), "two copies held it at once"
        assert fork_copy.copying(store, WID)
        admitted: list[bool] = []
        start = threading.Thread(target=lambda: admitted.append(lifecycle.admit_start(WID)))
        start.start()
        time.sleep(0.3)
        assert admitted == [] and store.get(WID)["state"] == "stopped"  # type: ignore[index]
        store.release(WID)  # the copy is done
        start.join(timeout=10)
        assert admitted == [True] and store.get(WID)["state"] == "starting"  # type: ignore[index]
        assert [o["kind"] for o in store.owners(WID)] == ["start"]
        assert not fork_copy.claim(store, WID), "a fork copied a source being started"


def test_a_copier_that_died_is_swept_and_the_start_goes_on(tmp_path: Path) -> None:
    with contextlib.closing(PyroRuntime(base_dir=tmp_path)) as runtime:
        lifecycle = runtime.workspaces.lifecycle
        store = lifecycle.store
        store.insert_admitted(workspace_row(WID, "stopped"), lambda active: None)
        store.claim(WID, fork_copy.COPY, "1:0")  # pid 1 never started at tick 0: gone
        assert not owners.alive("1:0")
        assert lifecycle.admit_start(WID)
        assert store.get(WID)["state"] == "starting"  # type: ignore[index]
