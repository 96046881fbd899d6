"""Archives stream (issue 13): no 256 MiB limit on export, diff or sync push, and memory
stays bounded whatever the archive's size (real sandboxes).

Each big operation runs in a child process that reports its peak RSS (VmHWM), and the
workspace's supervisor (which relays every chunk) is measured the same way: both must stay
far below the archive's size."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from pyro_mcp.errors import StateError
from workspace_fixtures import *  # noqa: F403

pytestmark = pytest.mark.guest

MIB = 1024 * 1024
BIG = 512 * MIB
PEAK_LIMIT = 200 * MIB  # far below the archive: nothing holds it whole

CHILD = """
import json, sys
from pyro_mcp import Pyro
home, op, workspace_id, arg = sys.argv[1:5]
with Pyro(base_dir=home) as pyro:
    if op == "export":
        result = pyro.export_workspace(workspace_id, "/workspace", arg)
    elif op == "diff":
        result = pyro.diff_workspace(workspace_id)
    elif op == "reset":
        result = pyro.reset_workspace(workspace_id)
    elif op == "create":
        result = pyro.create_workspace(environment="debian:12", seed_path=arg, disk_mib=1024)
    else:
        result = pyro.push_workspace_sync(workspace_id, arg, "/workspace/in")
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(json.dumps({"result": result, "peak": int(peak) * 1024}))
"""


def run_child(home: Path, op: str, workspace_id: str, arg: str = "") -> dict[str, Any]:
    """``op`` in a fresh process: its result and its peak RSS in bytes."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(home), op, workspace_id, arg],
        capture_output=True,
        text=True,
        timeout=600,  # the watchdog: a stuck stream fails the test
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout))


def supervisor_peak(pyro: Pyro, workspace_id: str) -> int:
    pid = pyro.manager.workspaces.store.get(workspace_id)["supervisor_pid"]
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def test_a_512_mib_workspace_exports_diffs_and_snapshots(
    ws_pyro: Pyro, ws_home: Path, new_workspace: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    workspace_id = new_workspace(disk_mib=1024)["workspace_id"]
    made = ws_pyro.exec_workspace(
        workspace_id,
        f"head -c {BIG} /dev/urandom > big.bin && mkdir -p src && echo hello > src/a.txt"
        " && printf 'x\\n' > notes.md && sha256sum big.bin",
        timeout_seconds=300,
    )
    assert made["exit_code"] == 0, made["stderr"]
    guest_sha = made["stdout"].split()[0]

    started = time.monotonic()
    exported = run_child(ws_home, "export", workspace_id, str(tmp_path / "out"))
    export_seconds = time.monotonic() - started
    assert exported["result"]["artifact_type"] == "directory"
    assert exported["result"]["bytes_written"] == BIG + 6 + 2
    big = tmp_path / "out" / "big.bin"
    assert big.stat().st_size == BIG
    assert sha256_of(big) == guest_sha
    assert (tmp_path / "out" / "src" / "a.txt").read_text() == "hello\n"
    assert not [p for p in tmp_path.iterdir() if p.name != "out"]  # no staging left
    assert exported["peak"] < PEAK_LIMIT, exported["peak"]

    diffed = run_child(ws_home, "diff", workspace_id)
    summary = diffed["result"]["summary"]
    paths = {e["path"]: e for e in diffed["result"]["entries"]}
    assert set(paths) == {"big.bin", "notes.md", "src/a.txt"}
    assert summary["added"] == 3 and summary["non_text"] == 1
    assert paths["big.bin"]["text_patch"] is None
    assert "+hello" in paths["src/a.txt"]["text_patch"]
    assert diffed["peak"] < PEAK_LIMIT, diffed["peak"]
    assert supervisor_peak(ws_pyro, workspace_id) < PEAK_LIMIT
    peaks = [
        exported["peak"] // MIB,
        diffed["peak"] // MIB,
        supervisor_peak(ws_pyro, workspace_id) // MIB,
    ]
    print(f"512 MiB export {export_seconds:.1f} s; peak MiB (export, diff, supervisor) {peaks}")

    # ... and snapshots: a full snapshot, then the file changed, then a reset back to it.
    ws_pyro.create_snapshot(workspace_id, "big")
    ws_pyro.exec_workspace(workspace_id, "rm big.bin")
    ws_pyro.reset_workspace(workspace_id, snapshot="big")
    again = ws_pyro.exec_workspace(workspace_id, "sha256sum big.bin", timeout_seconds=120)
    assert again["stdout"].split()[0] == guest_sha, again


def big_source(root: Path) -> str:
    """A directory with a 300 MiB random file and a small one; the big one's sha256."""
    root.mkdir()
    digest = hashlib.sha256()
    with (root / "big.bin").open("wb") as handle:
        for _ in range(300):
            chunk = os.urandom(MIB)
            digest.update(chunk)
            handle.write(chunk)
    (root / "small.txt").write_text("small\n")
    return digest.hexdigest()


def test_sync_push_of_300_mib_streams_in(
    ws_pyro: Pyro, ws_home: Path, new_workspace: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    workspace_id = new_workspace(disk_mib=1024)["workspace_id"]
    source = tmp_path / "src"
    sha = big_source(source)
    pushed = run_child(ws_home, "sync", workspace_id, str(source))
    assert pushed["result"]["workspace_sync"]["bytes_written"] == 300 * MIB + 6
    assert pushed["peak"] < PEAK_LIMIT, pushed["peak"]
    check = ws_pyro.exec_workspace(workspace_id, "sha256sum in/big.bin; cat in/small.txt")
    assert check["stdout"].split()[0] == sha
    assert check["stdout"].endswith("small\n")
    assert supervisor_peak(ws_pyro, workspace_id) < PEAK_LIMIT
    # the spool file beside the workspace is gone
    layout = ws_pyro.manager.workspaces.lifecycle.layout(workspace_id)
    assert not [p for p in layout.root.iterdir() if p.name.startswith("tmp")]


def test_a_300_mib_seed_streams_in_at_create(ws_pyro: Pyro, ws_home: Path, tmp_path: Path) -> None:
    source = tmp_path / "seed"
    sha = big_source(source)
    created = run_child(ws_home, "create", "-", str(source))
    workspace_id = created["result"]["workspace_id"]
    try:
        assert created["result"]["workspace_seed"]["bytes_written"] == 300 * MIB + 6
        assert created["peak"] < PEAK_LIMIT, created["peak"]
        check = ws_pyro.exec_workspace(workspace_id, "sha256sum big.bin; rm big.bin")
        assert check["stdout"].split()[0] == sha
        assert supervisor_peak(ws_pyro, workspace_id) < PEAK_LIMIT
        # reset to the 300 MiB baseline: running (the supervisor reads it), then stopped
        for _ in ("started", "stopped"):
            reset = run_child(ws_home, "reset", workspace_id)
            assert reset["result"]["workspace_reset"]["bytes_written"] == 300 * MIB + 6
            assert reset["peak"] < PEAK_LIMIT, reset["peak"]
            assert supervisor_peak(ws_pyro, workspace_id) < PEAK_LIMIT
            check = ws_pyro.exec_workspace(workspace_id, "sha256sum big.bin; rm big.bin")
            assert check["stdout"].split()[0] == sha
            ws_pyro.stop_workspace(workspace_id)
    finally:
        ws_pyro.delete_workspace(workspace_id)


def test_a_full_disk_is_one_line_naming_the_limit(
    ws_pyro: Pyro, new_workspace: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    workspace_id = new_workspace(disk_mib=64)["workspace_id"]
    filled = ws_pyro.exec_workspace(workspace_id, "head -c 40000000 /dev/zero > fill.bin")
    assert filled["exit_code"] == 0
    source = tmp_path / "src"
    source.mkdir()
    (source / "more.bin").write_bytes(os.urandom(40 * MIB))
    with pytest.raises(StateError) as caught:
        ws_pyro.push_workspace_sync(workspace_id, str(source))
    message = str(caught.value)
    print(message)
    assert "\n" not in message
    assert "disk limit is 64 MiB" in message
    # the workspace still answers, and the stream stayed in step
    assert ws_pyro.exec_workspace(workspace_id, "echo ok")["stdout"] == "ok\n"


def test_a_512_mib_export_on_qemu(
    qemu_pyro: Pyro, new_workspace: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    """TCG here: create ~7 s, writing 512 MiB ~14 s, the export ~28 s (its diff takes ~22 s
    more, so it is the gVisor test's)."""
    workspace_id = new_workspace(qemu_pyro, disk_mib=1024)["workspace_id"]
    made = qemu_pyro.exec_workspace(
        workspace_id, f"head -c {BIG} /dev/zero > big.bin", timeout_seconds=300
    )
    assert made["exit_code"] == 0, made["stderr"]
    exported = qemu_pyro.export_workspace(workspace_id, "/workspace", str(tmp_path / "out"))
    assert exported["bytes_written"] == BIG
    zeros = hashlib.sha256()
    for _ in range(BIG // MIB):
        zeros.update(bytes(MIB))
    assert sha256_of(tmp_path / "out" / "big.bin") == zeros.hexdigest()


def test_a_qemu_seed_and_reset_stream_through_the_guest(
    qemu_pyro: Pyro, new_workspace: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    """A VM has no host-side /workspace: a seed over 8 MiB (more than one upload's buffers)
    is uploaded in chunks at create and again by the supervisor on reset."""
    seed = tmp_path / "seed"
    seed.mkdir()
    data = os.urandom(20 * MIB)
    (seed / "blob.bin").write_bytes(data)
    workspace_id = new_workspace(qemu_pyro, seed_path=str(seed))["workspace_id"]
    sha = hashlib.sha256(data).hexdigest()
    for _ in range(2):
        check = qemu_pyro.exec_workspace(workspace_id, "sha256sum blob.bin; rm blob.bin")
        assert check["stdout"].split()[0] == sha
        reset = qemu_pyro.reset_workspace(workspace_id)
        assert reset["workspace_reset"]["bytes_written"] == 20 * MIB


def test_an_archive_past_twice_the_disk_limit_is_refused_without_a_trace(
    ws_pyro: Pyro, new_workspace: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    """The guest is not trusted to end its stream: a sparse 300 MiB file on a 64 MiB disk
    packs to more than twice the disk limit, and the host stops reading there."""
    workspace_id = new_workspace(disk_mib=64)["workspace_id"]
    ws_pyro.exec_workspace(workspace_id, "truncate -s 300M sparse.bin")
    with pytest.raises(StateError, match="larger than twice the workspace's disk limit"):
        ws_pyro.export_workspace(workspace_id, "/workspace", str(tmp_path / "out"))
    assert list(tmp_path.iterdir()) == []  # no output, no staging
    with pytest.raises(StateError, match="larger than twice"):
        ws_pyro.diff_workspace(workspace_id)
    assert ws_pyro.exec_workspace(workspace_id, "echo ok")["stdout"] == "ok\n"
