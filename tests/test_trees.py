"""Deep and wide trees without the Python stack: the iterative walkers, the archive rules'
cost and the member path limit (fast, no sandbox; issue 10 items 6 and 7)."""

from __future__ import annotations

import errno
import gzip
import io
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyro_mcp.errors import StateError, ValidationError
from pyro_mcp.guest import archive as guest_archive
from pyro_mcp.guest import tree
from pyro_mcp.workspaces.archive_rules import validate_members
from pyro_mcp.workspaces.archives import extract_export, seed_archive
from pyro_mcp.workspaces.layout import WorkspaceLayout, sweep

DEEPER_THAN_THE_STACK = 1500  # CPython's default recursion limit is 1000


@pytest.fixture(autouse=True)
def _remove_deep_trees(tmp_path: Path) -> Iterator[None]:
    """pytest's own clean-up of old temporary dirs is ``shutil.rmtree``: recursive (3.11),
    it would die on these trees in a later session. Remove them here, iteratively."""
    yield
    for child in tmp_path.iterdir():
        tree.remove_tree(str(child))


def make_chain(top: Path, depth: int, name: str = "d") -> None:
    """``top/d/d/…`` ``depth`` levels deep with a file ``f`` at the bottom, built through
    fds (the path gets longer than PATH_MAX, as ``mkdir d; cd d`` in a loop makes it)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


def chain_tar(depth: int) -> bytes:
    """A tar of ``depth`` nested directories ``d/d/…`` (names grow: quadratic bytes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        name = ""
        for _ in range(depth):
            name += "d/"
            info = tarfile.TarInfo(name[:-1])
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
    return buffer.getvalue()


def wide_tar(count: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for index in range(count):
            tar.addfile(tarfile.TarInfo(f"w/{index:06d}"), io.BytesIO(b""))
    return buffer.getvalue()


def open_dir(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


# -- the walker -------------------------------------------------------------------------------


def test_walk_goes_deeper_than_the_python_stack_in_sorted_pre_order(tmp_path: Path) -> None:
    make_chain(tmp_path, DEEPER_THAN_THE_STACK)
    (tmp_path / "b").write_text("x")
    (tmp_path / "a").symlink_to("/etc")  # reported, never followed
    fd = open_dir(tmp_path)
    try:
        paths = [entry.path for entry in tree.walk(fd)]
    finally:
        os.close(fd)
    chain = ["/".join(["d"] * n) for n in range(1, DEEPER_THAN_THE_STACK + 1)]
    assert paths == ["a", "b", *chain, chain[-1] + "/f"]
    assert len(os.listdir("/proc/self/fd")) < 50  # one directory fd at a time, not one per level


def test_walk_of_a_wide_directory(tmp_path: Path) -> None:
    for index in range(3000):
        (tmp_path / f"{index:05d}").touch()
    fd = open_dir(tmp_path)
    try:
        names = [entry.name for entry in tree.walk(fd)]
    finally:
        os.close(fd)
    assert names == [f"{index:05d}" for index in range(3000)]


def test_walk_stops_when_a_directory_is_moved_under_it(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x").touch()
    fd = open_dir(tmp_path)
    try:
        with pytest.raises(OSError) as caught:
            for entry in tree.walk(fd):
                if entry.path == "a/b/x":  # '..' of b is now tmp_path, not a
                    os.rename(tmp_path / "a" / "b", tmp_path / "b2")
    finally:
        os.close(fd)
    assert caught.value.errno == errno.ESTALE
    assert "moved or replaced" in str(caught.value)


def test_remove_tree_deep_wide_read_only_and_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    victim = tmp_path / "victim"
    victim.mkdir()
    make_chain(victim, 3000)
    for index in range(2000):
        (victim / f"w{index}").touch()
    (victim / "link").symlink_to(outside)
    locked = victim / "locked"
    locked.mkdir()
    (locked / "inner").touch()
    locked.chmod(0o500)
    tree.remove_tree(str(victim))
    assert not victim.exists()
    assert (outside / "keep").read_text() == "keep"
    tree.remove_tree(str(victim))  # already gone: fine
    (tmp_path / "alias").symlink_to(outside)
    tree.remove_tree(str(tmp_path / "alias"))  # the link goes, its target stays
    assert not (tmp_path / "alias").is_symlink() and (outside / "keep").exists()


def test_delete_renames_first_and_the_sweep_finishes_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = WorkspaceLayout(tmp_path, "ws1")
    layout.create()
    make_chain(layout.root, 1200)
    stale = layout.root / "volume.old-1234abcd"
    stale.mkdir()
    make_chain(stale, 1200)
    sweep(tmp_path)
    assert not stale.exists() and layout.root.exists()

    def broken(path: str) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr("pyro_mcp.workspaces.layout.remove_tree", broken)
    layout.remove()  # the rename worked, the removal did not: trash is left
    assert not layout.root.exists()
    assert [p.name[:11] for p in (tmp_path / "workspaces").iterdir()] == [".trash-ws1-"]
    monkeypatch.undo()
    sweep(tmp_path)
    assert list((tmp_path / "workspaces").iterdir()) == []


def test_a_delete_that_cannot_rename_raises_and_keeps_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = WorkspaceLayout(tmp_path, "ws2")
    layout.create()

    def busy(self: Path, target: Path) -> None:
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(Path, "rename", busy)
    with pytest.raises(StateError, match=r"cannot delete .*ws2: Device or resource busy"):
        layout.remove()  # the caller keeps its record: a retry can finish the job
    monkeypatch.undo()
    assert layout.snapshots_dir.is_dir()
    layout.remove()
    assert list((tmp_path / "workspaces").iterdir()) == []


# -- archives ---------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_guest_pack_and_export_of_a_deep_tree(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    make_chain(source, 1100)
    data, info = guest_archive.pack(str(source), root=str(source))
    assert info["entry_count"] == 1101 and info["artifact_type"] == "directory"
    names = [m.path for m in validate_members(data, guest_links=True)]
    assert names[-1] == "/".join(["d"] * 1100 + ["f"])
    started = time.monotonic()
    result = extract_export(data, tmp_path / "out")
    assert time.monotonic() - started < 20
    assert result["entry_count"] == 1101
    assert (tmp_path / "out" / names[-1]).is_file()


def test_guest_pack_refuses_paths_over_the_limit(tmp_path: Path) -> None:
    make_chain(tmp_path, 2100)  # 'd/' * 2100: 4200 bytes
    with pytest.raises(guest_archive.ArchiveError, match="longer than 4096 bytes"):
        guest_archive.pack(str(tmp_path), root=str(tmp_path))


@pytest.mark.timeout(120)
def test_member_checks_are_linear_in_depth_and_width() -> None:
    deep = chain_tar(2000)  # 'd/' * 2000: under the limit (was 34 s: cubic)
    wide = wide_tar(100_000)
    started = time.monotonic()
    assert len(validate_members(deep)) == 2000
    assert len(validate_members(wide)) == 100_000
    with tarfile.open(fileobj=io.BytesIO(deep)) as tar:
        assert len(guest_archive.check_members(tar.getmembers())) == 2000
    with tarfile.open(fileobj=io.BytesIO(wide)) as tar:
        assert len(guest_archive.check_members(tar.getmembers())) == 100_000
    assert time.monotonic() - started < 30


@pytest.mark.timeout(120)
def test_a_10000_deep_seed_is_refused_within_10_seconds(tmp_path: Path) -> None:
    seed = tmp_path / "deep.tar.gz"
    seed.write_bytes(gzip.compress(chain_tar(10_000), compresslevel=1))
    started = time.monotonic()
    with pytest.raises(ValidationError) as caught:
        seed_archive(seed)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300
    assert "path is longer than 4096 bytes (the archive member path limit)" in message


def test_unpack_of_a_deep_tree_opens_each_directory_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyro_mcp.guest import paths

    walks: list[str] = []
    real = paths.open_dir
    monkeypatch.setattr(
        paths, "open_dir", lambda path, **kw: walks.append(path) or real(path, **kw)
    )
    result = guest_archive.unpack(str(tmp_path), chain_tar(1500), root=str(tmp_path))
    assert result["entry_count"] == 1500
    assert len(walks) == 1  # the root only: every member continues from its parent's fd
    fd = open_dir(tmp_path)
    try:
        assert sum(1 for _ in tree.walk(fd)) == 1500
    finally:
        os.close(fd)


def test_host_seed_directories_pack_at_any_depth_up_to_the_limit(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    make_chain(seed, DEEPER_THAN_THE_STACK)
    packed = seed_archive(seed)
    assert packed.entry_count == DEEPER_THAN_THE_STACK + 1
    too_deep = tmp_path / "too-deep"
    too_deep.mkdir()
    make_chain(too_deep, 2100)
    with pytest.raises(ValidationError, match=r"longer than 4096 bytes .* in .*too-deep"):
        seed_archive(too_deep)
