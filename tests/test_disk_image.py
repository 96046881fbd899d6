"""Reading a VM workspace's disk image on the host (workspaces/disk_image.py) when the guest
crafted it: names holding `/` or `..` or duplicated, symlinks in the path, a 100 GB sparse
file. Nothing is ever written on the host, reads are bounded, and what cannot be trusted is
refused with a clear error. (No sandbox: the images are made here with mkfs.ext4 -d.)"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from pyro_mcp.workspaces.disk_image import ROOT, DiskImage

pytestmark = pytest.mark.skipif(
    shutil.which("mkfs.ext4") is None or shutil.which("debugfs") is None,
    reason="needs e2fsprogs (scripts/host-setup.sh installs it)",
)


# A file name that, printed raw, would read as a second listing line for a directory "fake".
FORGED = "q\n     2   40755 (2)      0      0    1024 1-Jan-2000 00:00 fake"


def make_image(tmp_path: Path, names: dict[str, str | bytes] | None = None) -> Path:
    """An ext4 image of a small tree; ``names`` then renames entries in the raw bytes
    (same length), the way a guest with root could rewrite its own disk."""
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("hello\n")
    (tree / "sub" / "b.txt").write_text("deep\n")
    (tree / "link").symlink_to("/etc/passwd")
    (tree / "dirlink").symlink_to("/etc")
    (tree / "slowlink").symlink_to("/" + "x" * 100)
    (tree / "aa-dupe").write_text("first\n")
    (tree / "ab-dupe").write_text("second\n")
    (tree / ("n" * len(FORGED))).write_text("forged\n")
    (tree / "escape-xx").write_text("pwned\n")
    (tree / "oddA").write_text("a\n")
    (tree / "oddB").write_text("b\n")
    with (tree / "sparse").open("wb") as handle:
        handle.truncate(100 * 2**30)
    image = tmp_path / "disk.ext4"
    subprocess.run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-O",
            "^metadata_csum,^dir_index",
            "-d",
            str(tree),
            str(image),
            "64M",
        ],
        check=True,
    )
    if names:
        raw = bytearray(image.read_bytes())
        for old, new in names.items():
            new_bytes = new if isinstance(new, bytes) else new.encode()
            assert len(old) == len(new_bytes) and raw.count(old.encode()) == 1, old
            at = raw.index(old.encode())
            raw[at : at + len(old)] = new_bytes
        image.write_bytes(bytes(raw))
    return image


def test_lists_reads_and_resolves_without_following_symlinks(tmp_path: Path) -> None:
    disk = DiskImage(make_image(tmp_path))
    names = {e.name: e.kind for e in disk.listdir(ROOT)}
    assert names["a.txt"] == "file" and names["sub"] == "directory"
    assert names["link"] == "symlink" and names["lost+found"] == "directory"
    assert disk.read(disk.lookup(["sub", "b.txt"]), 100) == b"deep\n"
    assert disk.link_target(disk.lookup(["link"])) == "/etc/passwd"
    assert disk.link_target(disk.lookup(["slowlink"])) == "/" + "x" * 100
    with pytest.raises(ValueError, match="symlinked directory: 'dirlink'"):
        disk.lookup(["dirlink", "passwd"])
    with pytest.raises(ValueError, match=r"not a directory: 'a\.txt'"):
        disk.lookup(["a.txt", "x"])
    with pytest.raises(ValueError, match="does not exist"):
        disk.lookup(["nosuch"])
    with pytest.raises(ValueError, match="does not exist"):
        disk.lookup(["lost+found"])  # not part of /workspace


def test_a_huge_sparse_file_is_read_only_as_far_as_asked(tmp_path: Path) -> None:
    disk = DiskImage(make_image(tmp_path))
    sparse = disk.lookup(["sparse"])
    assert sparse.size == 100 * 2**30
    started = time.monotonic()
    assert disk.read(sparse, 1024 * 1024 + 1) == bytes(1024 * 1024 + 1)
    assert time.monotonic() - started < 10


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    # A symlink dumped first and a file of the same name after it is how an unpacker
    # is made to write through the link; here the listing itself is refused.
    disk = DiskImage(make_image(tmp_path, {"ab-dupe": "aa-dupe"}))
    with pytest.raises(RuntimeError, match="duplicate names"):
        disk.listdir(ROOT)


def test_a_name_holding_a_newline_forges_no_entry(tmp_path: Path) -> None:
    disk = DiskImage(make_image(tmp_path, {"n" * len(FORGED): FORGED}))
    names = [e.name for e in disk.listdir(ROOT)]
    assert FORGED in names and "fake" not in names
    assert disk.read(disk.lookup([FORGED]), 100) == b"forged\n"


def test_names_with_a_slash_or_dots_are_never_gone_through(tmp_path: Path) -> None:
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    disk = DiskImage(make_image(tmp_path, {"escape-xx": "../escape"}))
    names = [e.name for e in disk.listdir(ROOT)]
    assert "../escape" not in names and "escape-xx" not in names
    with pytest.raises(ValueError, match="does not exist"):
        disk.lookup(["..", "escape"])
    for entry in disk.listdir(ROOT):  # read everything there is: nothing lands on the host
        if entry.kind == "file":
            disk.read(entry, 4096)
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before
    assert not (tmp_path.parent / "escape").exists()


def test_debugfs_never_writes_files(tmp_path: Path) -> None:
    """Even a debugfs told to write (as a compromised one might) cannot write a byte."""
    disk = DiskImage(make_image(tmp_path))
    target = tmp_path / "written-by-debugfs"
    with pytest.raises(RuntimeError, match="debugfs ended by signal 25"):  # SIGXFSZ
        disk._debugfs(f"dump <12> {target}", 4096)
    assert not target.exists() or target.stat().st_size == 0


def test_a_directory_linked_into_itself_is_listed_once(tmp_path: Path) -> None:
    image = make_image(tmp_path)
    subprocess.run(["debugfs", "-w", "-R", "link <2> /sub/loop", str(image)], check=True)
    disk = DiskImage(image)
    started = time.monotonic()
    paths = [e["path"] for e in disk.entries("/workspace", recursive=True)]
    assert time.monotonic() - started < 30
    assert "/workspace/sub/loop" in paths
    assert not any(p.startswith("/workspace/sub/loop/") for p in paths)
    assert "/workspace/lost+found" not in paths
    assert len(paths) == len(set(paths))


def test_owners_past_2_31_do_not_break_the_listing(tmp_path: Path) -> None:
    image = make_image(tmp_path)
    for field in ("uid 3000000000", "gid 4000000000"):
        subprocess.run(["debugfs", "-w", "-R", f"sif /a.txt {field}", str(image)], check=True)
    disk = DiskImage(image)
    assert disk.read(disk.lookup(["a.txt"]), 100) == b"hello\n"


def test_names_that_are_not_utf8_stay_apart(tmp_path: Path) -> None:
    """Two such names must not collapse into one (as the live list, odd bytes become
    surrogates; MCP and --json then show them as \\xHH)."""
    disk = DiskImage(make_image(tmp_path, {"oddA": b"odd\xff", "oddB": b"odd\xfe"}))
    names = [e.name for e in disk.listdir(ROOT)]
    assert "odd\udcff" in names and "odd\udcfe" in names
    paths = [e["path"] for e in disk.entries("/workspace", recursive=False)]
    assert "/workspace/odd\udcfe" in paths
