"""A fork's copy of a stopped source (workspaces/fork_copy.py), without a sandbox: the source
is held under the owner mechanism so no start or reset runs meanwhile, and only its two disk
images are copied (never a suspended VM's memory)."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest

from pyro_mcp.errors import SandboxError
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


def test_a_supervisor_waits_for_the_fork_copying_its_images(tmp_path: Path) -> None:
    layout = WorkspaceLayout(tmp_path, WID)
    layout.create()
    fork_copy.before_boot(layout)  # no fork: nothing to wait for
    staging = fork_copy.Staging(layout)
    booted = threading.Event()

    def boot() -> None:
        fork_copy.before_boot(layout)
        booted.set()

    waiter = threading.Thread(target=boot, daemon=True)
    waiter.start()
    staging.images.mkdir()
    (staging.images / WORKSPACE_IMAGE).write_bytes(b"workspace")
    (staging.images / SYSTEM_IMAGE).write_bytes(b"system")
    assert not booted.wait(0.3), "the supervisor went on before the images were in place"
    staging.done()
    assert booted.wait(10)
    assert layout.disk.read_bytes() == b"workspace"
    assert layout.system_disk.read_bytes() == b"system"
    assert not (layout.root / fork_copy.STAGING).exists()


def test_a_fork_that_died_mid_copy_fails_the_boot_and_leaves_no_staging(tmp_path: Path) -> None:
    layout = WorkspaceLayout(tmp_path, WID)
    layout.create()
    staging = fork_copy.Staging(layout)
    staging.images.mkdir()
    (staging.images / WORKSPACE_IMAGE).write_bytes(b"half")
    staging.close()  # the lock goes as it does when the fork's process dies
    with pytest.raises(SandboxError, match="ended before its disks were copied"):
        fork_copy.before_boot(layout)
    assert not (layout.root / fork_copy.STAGING).exists() and not layout.disk.exists()
