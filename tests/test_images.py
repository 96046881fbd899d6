"""The image copy and the host-side freeze of full snapshots and forks (workspaces/images.py,
blank_disk.copy_image), on real file systems: a btrfs loop image (the copy is a reflink there:
no extra space) and an ext4 one (a freeze that outlives its watchdog is thawed). No sandbox."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyro_mcp.workspaces import blank_disk, images

MIB = 1024 * 1024
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


@pytest.fixture
def mounted(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh loop-mounted file system (``request.param``: btrfs or ext4) of 512 MiB."""
    fstype = request.param
    mkfs = f"mkfs.{fstype}"
    if shutil.which(mkfs) is None:
        pytest.skip(f"{mkfs} is missing (btrfs-progs / e2fsprogs)")
    image, target = tmp_path / f"{fstype}.img", tmp_path / "mnt"
    with image.open("xb") as handle:
        handle.truncate(512 * MIB)
    subprocess.run([mkfs, "-q", str(image)], check=True, capture_output=True)
    target.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def used(path: Path) -> int:
    os.sync()
    stat = os.statvfs(path)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize


@needs_root
@pytest.mark.parametrize("mounted", ["btrfs"], indirect=True)
def test_the_copy_is_a_reflink_on_btrfs(mounted: Path) -> None:
    source = mounted / "disk.img"
    with source.open("wb") as handle:
        handle.truncate(256 * MIB)  # a sparse image with 64 MiB of data in it
        handle.seek(32 * MIB)
        handle.write(os.urandom(64 * MIB))
    before = used(mounted)
    blank_disk.copy_image(source, mounted / "copy.img")
    grown = used(mounted) - before
    assert (mounted / "copy.img").read_bytes() == source.read_bytes()
    assert grown < 4 * MIB, f"the copy used {grown / MIB:.1f} MiB more"
    # copy-on-write: a change to the copy leaves the source as it was
    with (mounted / "copy.img").open("r+b") as handle:
        handle.seek(40 * MIB)
        handle.write(b"changed")
    with source.open("rb") as handle:
        handle.seek(40 * MIB)
        assert handle.read(7) != b"changed"


def writer(directory: Path) -> subprocess.Popen[bytes]:
    """A child that writes a file in ``directory`` (a child: a writer a frozen file system
    holds can be left waiting, and is reaped once it is thawed)."""
    code = f"open({str(directory / 'probe')!r}, 'w').write('x'); import os; os.sync()"
    return subprocess.Popen([sys.executable, "-c", code])


def finishes(child: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        return child.wait(timeout=timeout) == 0
    except subprocess.TimeoutExpired:
        return False


@needs_root
@pytest.mark.parametrize("mounted", ["ext4"], indirect=True)
def test_a_freeze_blocks_writers_until_thawed_or_its_watchdog(mounted: Path) -> None:
    freeze = images.Freeze(30.0)
    freeze.freeze([str(mounted)])
    try:
        child = writer(mounted)
        assert not finishes(child, 1.0)  # frozen: the writer waits
    finally:
        assert freeze.thaw() is False  # thawed by its owner, before the watchdog
    assert finishes(child, 10.0)  # and the writer goes on

    late = images.Freeze(0.5)
    late.freeze([str(mounted)])
    assert finishes(writer(mounted), 10.0)  # the watchdog thawed it by itself
    assert late.thaw() is True  # and the owner learns its copy was not frozen throughout


@pytest.mark.parametrize("name", ["missing", "plain"])
def test_only_a_mount_point_is_frozen(tmp_path: Path, name: str) -> None:
    """A directory that is no mount point (or none at all) is refused, never the file
    system that holds it (here /tmp's: freezing it would hang the host's writers)."""
    (tmp_path / "plain").mkdir()
    with pytest.raises(images.SandboxError, match="cannot freeze") as caught:
        images.Freeze(5.0).freeze([str(tmp_path / name)])
    assert "\n" not in str(caught.value)


@needs_root
@pytest.mark.parametrize("mounted", ["ext4"], indirect=True)
def test_a_freezer_killed_mid_freeze_leaves_nothing_frozen(mounted: Path) -> None:
    """A supervisor SIGKILLed (its whole group, as stop_supervisor does) while the disks are
    frozen: the kernel would keep them frozen forever (and the loop device would block every
    later start of the workspace); its guard thaws them at once."""
    code = (
        "import sys, time\n"
        "from pyro_mcp.workspaces import images\n"
        f"images.Freeze(60.0).freeze([{str(mounted)!r}])\n"
        "print('frozen', flush=True)\n"
        "time.sleep(60)\n"
    )
    freezer = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert freezer.stdout is not None and freezer.stdout.readline() == b"frozen\n"
        os.killpg(freezer.pid, 9)
        freezer.wait(timeout=10)
        assert finishes(writer(mounted), 5.0)  # thawed long before the 60 s watchdog
    finally:
        freezer.kill()
        subprocess.run(["fsfreeze", "-u", str(mounted)], check=False, capture_output=True)
