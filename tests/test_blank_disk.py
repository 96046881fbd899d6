"""Blank workspace disks copied from a template made once per size (workspaces/blank_disk.py).

No sandbox: real mkfs.ext4 and dumpe2fs on small images here; mounting them is covered by
the guest-backed workspace tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pyro_mcp.errors import PyroError
from pyro_mcp.workspaces import blank_disk
from pyro_mcp.workspaces.layout import WorkspaceLayout

pytestmark = pytest.mark.skipif(
    shutil.which("mkfs.ext4") is None or shutil.which("dumpe2fs") is None,
    reason="needs e2fsprogs",
)
MIB = 1024 * 1024


def superblock(image: Path) -> dict[str, str]:
    out = subprocess.run(
        ["dumpe2fs", "-h", str(image)], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)


def test_copy_is_the_template_hole_for_hole_and_a_valid_ext4(tmp_path: Path) -> None:
    disk = tmp_path / "disk.ext4"
    blank_disk.make(tmp_path, disk, 256)
    template = blank_disk.template(tmp_path, 256)
    assert disk.stat().st_size == template.stat().st_size == 256 * MIB
    assert disk.read_bytes() == template.read_bytes()
    assert disk.stat().st_blocks * 512 <= template.stat().st_blocks * 512 + MIB  # still sparse
    assert disk.stat().st_blocks * 512 < 32 * MIB
    info = superblock(disk)
    assert info["Filesystem volume name"].strip() == "workspace"
    assert info["Reserved block count"].strip() == "0"
    fsck = subprocess.run(["e2fsck", "-fn", str(disk)], capture_output=True, check=False)
    assert fsck.returncode == 0, fsck.stdout


def test_template_is_made_once_per_size(tmp_path: Path) -> None:
    blank_disk.make(tmp_path, tmp_path / "a.ext4", 64)
    template = blank_disk.template(tmp_path, 64)
    made = template.stat()
    blank_disk.make(tmp_path, tmp_path / "b.ext4", 64)
    blank_disk.make(tmp_path, tmp_path / "c.ext4", 128)
    again = blank_disk.template(tmp_path, 64).stat()
    assert (again.st_ino, again.st_mtime_ns) == (made.st_ino, made.st_mtime_ns)
    names = sorted(p.name for p in template.parent.iterdir())
    assert [n.split("-")[0] for n in names] == ["128", "64"]  # no partial file left
    assert (tmp_path / "c.ext4").stat().st_size == 128 * MIB


def test_a_written_disk_never_changes_the_template(tmp_path: Path) -> None:
    disk = tmp_path / "disk.ext4"
    blank_disk.make(tmp_path, disk, 64)
    template = blank_disk.template(tmp_path, 64)
    before = template.read_bytes()
    with disk.open("r+b") as handle:
        handle.write(b"\xff" * 4096)
    assert template.read_bytes() == before
    assert disk.read_bytes() != before


def test_data_extents_skip_holes(tmp_path: Path) -> None:
    path = tmp_path / "holes"
    with path.open("wb") as handle:
        handle.write(b"a" * 4096)
        handle.seek(8 * MIB)
        handle.write(b"b" * 4096)
        handle.truncate(16 * MIB)
    with path.open("rb") as handle:
        extents = blank_disk.data_extents(handle.fileno(), 16 * MIB)
    assert [start for start, _ in extents] == [0, 8 * MIB]
    assert sum(length for _, length in extents) < MIB


def test_without_copy_file_range_the_disk_is_made_by_mkfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> int:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    disk = tmp_path / "disk.ext4"
    blank_disk.make(tmp_path, disk, 64)
    assert superblock(disk)["Filesystem volume name"].strip() == "workspace"
    assert disk.stat().st_size == 64 * MIB


def test_mkfs_failure_is_one_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    disk = tmp_path / "disk.ext4"
    with pytest.raises(PyroError, match=r"^cannot create the workspace disk: ") as caught:
        blank_disk.make(tmp_path, disk, 0)
    assert "\n" not in str(caught.value).strip()
    assert not disk.exists()
    assert list((tmp_path / "runtime" / blank_disk.TEMPLATE_DIR).iterdir()) == []


def test_fresh_volume_replaces_a_disk_in_use_without_touching_it(tmp_path: Path) -> None:
    layout = WorkspaceLayout(tmp_path / "home", "ws1")
    layout.create()
    layout.fresh_volume(True, 64)
    with layout.disk.open("r+b") as old:  # as a sandbox still running on it would
        old.write(b"x" * 4096)
        layout.fresh_volume(True, 64)
        old.seek(0)
        assert old.read(4096) == b"x" * 4096
    assert layout.disk.read_bytes() == blank_disk.template(tmp_path / "home", 64).read_bytes()


def test_a_copy_never_takes_the_hosts_last_free_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blank_disk, "clone", lambda source, target: False)  # as on ext4
    source = tmp_path / "source.img"
    source.write_bytes(os.urandom(1 << 20))
    free_mib = shutil.disk_usage(tmp_path).free >> 20
    monkeypatch.setenv("PYRO_MIN_FREE_MIB", str(free_mib + 1))  # the reserve is all there is
    with pytest.raises(PyroError, match=r"^not enough free disk on the host for this copy: "):
        blank_disk.copy_image(source, tmp_path / "copy.img")
    assert not (tmp_path / "copy.img").exists()
    monkeypatch.setenv("PYRO_MIN_FREE_MIB", "x")
    with pytest.raises(PyroError, match="PYRO_MIN_FREE_MIB must be a whole number of MiB"):
        blank_disk.copy_image(source, tmp_path / "copy.img")
    monkeypatch.setenv("PYRO_MIN_FREE_MIB", "0")
    blank_disk.copy_image(source, tmp_path / "copy.img")
    assert (tmp_path / "copy.img").read_bytes() == source.read_bytes()


def test_a_reserve_in_other_digits_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    fullwidth_12 = "\uff11\uff12"  # int() takes it: 12, but no operator means that
    for raw in ("\u00b2", fullwidth_12, "-1", "1.5", "12 MiB"):  # "\u00b2".isdigit() is true
        monkeypatch.setenv("PYRO_MIN_FREE_MIB", raw)
        with pytest.raises(PyroError, match=r"^PYRO_MIN_FREE_MIB must be a whole number of MiB"):
            blank_disk.min_free_mib()
    monkeypatch.setenv("PYRO_MIN_FREE_MIB", " 7 ")
    assert blank_disk.min_free_mib() == 7
