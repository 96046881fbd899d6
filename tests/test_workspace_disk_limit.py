"""The per-workspace disk limit ``disk_mib`` on real sandboxes (issue 10, item 3): writing
past it gives ENOSPC in the guest on every engine, the host's disk use stays bounded, and
nothing (mount, loop device, file) outlives the workspace."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyro_mcp import Pyro
from pyro_mcp.errors import ValidationError
from pyro_mcp.workspaces.store import SCHEMA, Store
from support import ENVIRONMENT, processes_mentioning, short_tmp_dir
from workspace_fixtures import (
    clean_up,
    supervisor_pids,
    wait_for,
    workspace_processes,
)

GIB = 1024**3
MIB = 1024**2
# The watchdog: dd stops here even if the limit does not hold (the test then fails).
DD = "dd if=/dev/zero of=/workspace/big bs=1M count=1400 2>&1; echo rc=$?"


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    path = short_tmp_dir("pyro-disk-")
    yield path
    clean_up(path)


def host_traces(home: Path) -> list[str]:
    """Loop devices and mounts of this home's workspace images (none once a workspace ends)."""
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True)
    lines = loops.stdout.splitlines()
    with open("/proc/mounts") as mounts:
        lines += mounts.read().splitlines()
    return [line for line in lines if str(home) in line]


def allocated(path: Path) -> int:
    """Bytes really allocated on the host under ``path`` (sparse images count what they hold)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


@pytest.mark.guest
@pytest.mark.parametrize("engine", ["gvisor", "qemu"])
def test_disk_limit_holds(engine: str, home: Path) -> None:
    with Pyro(backend_name=engine, base_dir=home) as pyro:
        workspace = pyro.create_workspace(environment=ENVIRONMENT, disk_mib=1024)
        workspace_id = workspace["workspace_id"]
        assert workspace["disk_mib"] == 1024
        assert pyro.status_workspace(workspace_id)["disk_mib"] == 1024
        df = pyro.exec_workspace(workspace_id, "df -P -m /workspace | tail -1")["stdout"]
        assert 900 <= int(df.split()[1]) <= 1024, df  # the guest sees the limit
        free_before = shutil.disk_usage(home).free

        result = pyro.exec_workspace(workspace_id, DD, timeout_seconds=600)
        assert "No space left on device" in result["stdout"], result
        assert "rc=1" in result["stdout"], result
        size = int(pyro.exec_workspace(workspace_id, "stat -c %s /workspace/big")["stdout"])
        assert 900 * MIB <= size <= GIB, size
        pyro.exec_workspace(workspace_id, "sync")
        drop = free_before - shutil.disk_usage(home).free
        assert drop <= 1.1 * GIB, f"the host lost {drop / MIB:.0f} MiB"
        assert allocated(home / "workspaces" / workspace_id) <= 1.1 * GIB
        assert pyro.exec_workspace(workspace_id, "echo next")["stdout"] == "next\n"

        pyro.stop_workspace(workspace_id)
        wait_for(lambda: not host_traces(home), 15, "the mount and loop device to go")
        pyro.start_workspace(workspace_id)
        listing = pyro.exec_workspace(workspace_id, "ls /workspace")["stdout"]
        assert listing == "big\n"  # no lost+found: /workspace starts as the user left it
        pyro.reset_workspace(workspace_id)
        assert pyro.exec_workspace(workspace_id, "ls -A /workspace")["stdout"] == ""
        pyro.delete_workspace(workspace_id)
    wait_for(lambda: not workspace_processes(home, workspace_id), 15, "processes to end")
    assert not (home / "workspaces" / workspace_id).exists()
    assert host_traces(home) == []


@pytest.mark.guest
def test_gvisor_disk_survives_a_killed_supervisor(home: Path) -> None:
    """kill -9 of the supervisor: the sandbox ends, the mount and loop device go with it,
    and the next start mounts the same image with the data intact."""
    with Pyro(backend_name="gvisor", base_dir=home) as pyro:
        workspace_id = pyro.create_workspace(environment=ENVIRONMENT, disk_mib=128)["workspace_id"]
        pyro.exec_workspace(workspace_id, "echo kept > /workspace/f && sync")
        for pid in supervisor_pids(home, workspace_id):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not workspace_processes(home, workspace_id), 30, "processes to end")
        wait_for(lambda: not host_traces(home), 15, "the mount and loop device to go")
        assert pyro.status_workspace(workspace_id)["state"] == "stopped"
        listing = pyro.list_workspace_disk(workspace_id)["entries"]
        assert [e["path"] for e in listing] == ["/workspace/f"]
        pyro.start_workspace(workspace_id)
        assert pyro.exec_workspace(workspace_id, "cat /workspace/f")["stdout"] == "kept\n"
        pyro.delete_workspace(workspace_id)
    assert host_traces(home) == []


@pytest.mark.guest
@pytest.mark.timeout(300)
def test_gvisor_seed_bigger_than_the_disk_fails_the_create_whole(home: Path) -> None:
    """The seed is unpacked into the mounted image while the sandbox boots: when it does
    not fit, the create fails with one clear line and the booted sandbox, its mount and
    every file go (nothing half-made is left). Small: 64 MiB disk, 72 MiB seed."""
    seed = home.parent / f"{home.name}-bigseed"
    (seed / "d").mkdir(parents=True)
    try:
        for index in range(9):
            (seed / "d" / f"part{index}").write_bytes(os.urandom(8 * MIB))
        with Pyro(backend_name="gvisor", base_dir=home) as pyro:
            with pytest.raises(RuntimeError) as caught:
                pyro.create_workspace(environment=ENVIRONMENT, disk_mib=64, seed_path=str(seed))
            message = str(caught.value)
            assert "No space left on device" in message, message
            assert "\n" not in message and str(home) not in message, message
            assert pyro.list_workspaces()["count"] == 0
        wait_for(lambda: not host_traces(home), 15, "the mount and loop device to go")
        wait_for(lambda: not processes_mentioning(str(home)), 15, "its processes to end")
        assert [p.name for p in (home / "workspaces").iterdir()] == []
    finally:
        shutil.rmtree(seed, ignore_errors=True)


@pytest.mark.parametrize("value", [0, 63, 1048577, "8G", True])
def test_disk_mib_out_of_range_is_refused(value: object, tmp_path: Path) -> None:
    with Pyro(base_dir=tmp_path) as pyro, pytest.raises(ValidationError, match="disk_mib"):
        pyro.create_workspace(environment=ENVIRONMENT, disk_mib=value)  # type: ignore[arg-type]


def test_an_older_state_database_gets_disk_mib(tmp_path: Path) -> None:
    """A database made before 3.7 (schema 2, no disk_mib column) gains it with the old
    fixed size, so its workspaces keep working."""
    path = tmp_path / "state.db"
    old_schema = SCHEMA.replace("    disk_mib INTEGER NOT NULL DEFAULT 8192,\n", "")
    assert "disk_mib" not in old_schema
    with sqlite3.connect(path) as db:
        db.executescript(old_schema)
        db.execute("PRAGMA user_version=2")
        db.execute(
            "INSERT INTO workspaces (workspace_id, environment, environment_version, "
            "vcpu_count, mem_mib, ttl_seconds, created_at, last_activity_at, expires_at, "
            "state, network_policy, allow_host_compat, engine) "
            "VALUES ('abc', 'debian:12', '1', 1, 1024, 600, 0, 0, 0, 'stopped', 'off', 0, "
            "'gvisor')"
        )
    record = Store(path).get("abc")
    assert record is not None and record["disk_mib"] == 8192
    assert Store(path).get("abc") == record  # opening it again changes nothing
