"""Host-side archive safety: hostile tars, hostile seed directories, atomic exports."""

from __future__ import annotations

import gzip
import io
import os
import re
import socket
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp.errors import NotFoundError, StateError, ValidationError
from pyro_mcp.guest import archive as guest_archive
from pyro_mcp.workspaces import archive_rules
from pyro_mcp.workspaces.archives import (
    extract_export,
    load_archive,
    pack_directory,
    seed_archive,
    validate_members,
)

Member = tuple[tarfile.TarInfo, bytes | None]


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **attrs: Any) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data if kind == tarfile.REGTYPE else None


def f(name: str, data: bytes = b"x", mode: int = 0o644) -> Member:
    return member(name, data=data, mode=mode)


def d(name: str) -> Member:
    return member(name, tarfile.DIRTYPE, mode=0o755)


def ln(name: str, target: str) -> Member:
    return member(name, tarfile.SYMTYPE, linkname=target)


def make_tar(*members: Member) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def pax_named(name: str) -> bytes:
    info, data = f("placeholder")
    info.pax_headers = {"path": name}
    return make_tar((info, data))


def test_validate_normalises_and_describes_members() -> None:
    tar = make_tar(d("./"), d("./src"), f("./src/a.py", b"abc", 0o755), ln("src/l", "a.py"))
    members = validate_members(tar)
    assert [(m.path, m.artifact_type, m.size) for m in members] == [
        ("src", "directory", 0),
        ("src/a.py", "file", 3),
        ("src/l", "symlink", 0),
    ]
    assert members[1].mode == 0o755 and members[2].link_target == "a.py"
    assert validate_members(b"") == [] and validate_members(make_tar()) == []


HOSTILE = {
    "dotdot": ([f("../evil")], "'..' segments"),
    "dotdot-inner": ([f("a/../../evil")], "'..' segments"),
    "absolute": ([f("/etc/passwd")], "absolute paths"),
    "hard-link": ([f("a"), member("b", tarfile.LNKTYPE, linkname="a")], "hard links"),
    "char-device": ([member("tty", tarfile.CHRTYPE, devmajor=4, devminor=1)], "device"),
    "block-device": ([member("sda", tarfile.BLKTYPE, devmajor=8)], "device"),
    "fifo": ([member("pipe", tarfile.FIFOTYPE)], "FIFOs"),
    "unknown-type": ([member("odd", b"Z")], "special member type"),
    "symlink-absolute": ([ln("etc", "/etc")], "is absolute"),
    "symlink-escape": ([ln("a", "../..")], "escapes the archive root"),
    "symlink-escape-nested": ([d("sub"), ln("sub/l", "../../x")], "escapes"),
    "symlink-chain-escape": ([d("b"), ln("b/c", ".."), ln("a", "b/c/..")], "escapes"),
    "symlink-loop": ([ln("a", "b"), ln("b", "a")], "loops"),
    "symlink-empty": ([ln("a", "")], "empty target"),
    "symlink-backslash": ([ln("a", "..\\..\\etc")], "backslash"),
    "through-symlinked-parent": ([d("sub"), ln("link", "sub"), f("link/x")], "symlinked parent"),
    "file-then-child": ([f("d"), f("d/x")], "is a regular file"),
    "dir-then-file": ([d("d"), f("d")], "type conflict"),
    "child-then-symlink": ([f("d/x"), ln("d", "elsewhere")], "type conflict"),
    "duplicate": ([f("a"), f("a")], "more than once"),
    "duplicate-dotslash": ([f("a"), f("./a")], "more than once"),
    "backslash": ([f("..\\evil")], "backslash"),
    "control": ([f("a\nb")], "control character"),
    "root-not-dir": ([f(".")], "root must be a directory"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_validate_rejects_hostile_members(case: str) -> None:
    members, message = HOSTILE[case]
    with pytest.raises(ValidationError, match=re.escape(message)):
        validate_members(make_tar(*members))


def test_validate_accepts_inside_links_and_dotdot_within_root() -> None:
    tar = make_tar(d("a"), d("a/b"), ln("a/b/up", "../../top"), ln("a/x", "b/../b"), f("top"))
    assert len(validate_members(tar)) == 5


def test_validate_rejects_nul_names_and_broken_framing() -> None:
    with pytest.raises(ValidationError, match="NUL"):
        validate_members(pax_named("a\x00b"))
    good = make_tar(f("a", b"y" * 2000))
    with pytest.raises(ValidationError, match=r"truncated|unexpected end of data"):
        validate_members(good[:1500])
    with pytest.raises(ValidationError, match="trailing garbage"):
        validate_members(good + b"junk" * 300)
    with pytest.raises(ValidationError, match="not a valid tar"):
        validate_members(b"definitely not a tar archive" * 40)


def write_tgz(path: Path, tar_bytes: bytes) -> Path:
    path.write_bytes(gzip.compress(tar_bytes))
    return path


def test_load_archive_plain_and_gzip(tmp_path: Path) -> None:
    tar = make_tar(d("src"), f("src/a", b"hello"))
    (tmp_path / "seed.tar").write_bytes(tar)
    assert load_archive(tmp_path / "seed.tar") == tar
    assert load_archive(write_tgz(tmp_path / "seed.tgz", tar)) == tar
    assert load_archive(write_tgz(tmp_path / "seed.TAR.GZ", tar)) == tar


def test_load_archive_rejects_bombs_garbage_and_hostile_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive_rules, "MAX_ARCHIVE_BYTES", 64 * 1024)
    bomb = write_tgz(tmp_path / "bomb.tar.gz", make_tar(f("zeros", bytes(1024 * 1024))))
    assert bomb.stat().st_size < 64 * 1024
    with pytest.raises(ValidationError, match="larger than the 65536-byte"):
        load_archive(bomb)
    (tmp_path / "big.tar").write_bytes(make_tar(f("big", bytes(100 * 1024))))
    with pytest.raises(ValidationError, match="larger than"):
        load_archive(tmp_path / "big.tar")
    (tmp_path / "bad.tgz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ValidationError, match="cannot read archive"):
        load_archive(tmp_path / "bad.tgz")
    with pytest.raises(ValidationError, match=r"'\.\.' segments"):
        load_archive(write_tgz(tmp_path / "evil.tgz", make_tar(f("../evil"))))
    (tmp_path / "seed.zip").write_bytes(b"PK")
    with pytest.raises(ValidationError, match=r"\.tar/\.tar\.gz/\.tgz"):
        load_archive(tmp_path / "seed.zip")


def make_seed(root: Path) -> Path:
    (root / "b").mkdir(parents=True)
    (root / "b" / "run.sh").write_text("echo hi\n")
    (root / "b" / "run.sh").chmod(0o755)
    (root / "a.txt").write_text("alpha")
    os.link(root / "a.txt", root / "b" / "hard.txt")
    (root / "b" / "link").symlink_to("../a.txt")
    (root / "empty").mkdir()
    return root


def test_pack_directory_is_deterministic_children_only(tmp_path: Path) -> None:
    seed = make_seed(tmp_path / "seed")
    data, count, written = pack_directory(seed)
    assert data == pack_directory(seed)[0]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        infos = {m.name: m for m in tar.getmembers()}
    assert list(infos) == ["a.txt", "b", "b/hard.txt", "b/link", "b/run.sh", "empty"]
    assert (count, written) == (6, 5 + 5 + 8)
    assert infos["b/hard.txt"].isreg() and infos["b/hard.txt"].size == 5  # a copy, not a link
    assert infos["b/link"].issym() and infos["b/link"].linkname == "../a.txt"
    assert infos["b/run.sh"].mode == 0o755
    assert int(infos["a.txt"].mtime) == int((seed / "a.txt").stat().st_mtime)
    assert all(m.uid == 0 and m.gid == 0 and m.uname == m.gname == "" for m in infos.values())
    assert pack_directory(tmp_path / "seed" / "empty")[1:] == (0, 0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: (p / "out").symlink_to("../../etc"), "points outside"),
        (lambda p: (p / "abs").symlink_to("/etc/passwd"), "is absolute"),
        (lambda p: os.mkfifo(p / "pipe"), "is a FIFO"),
    ],
)
def test_pack_directory_refuses_hostile_entries(tmp_path: Path, make: Any, message: str) -> None:
    seed = tmp_path / "seed"
    (seed / "sub").mkdir(parents=True)
    make(seed / "sub")
    with pytest.raises(ValidationError, match=message) as error:
        pack_directory(seed)
    assert str(seed / "sub") in str(error.value)


def test_pack_directory_refuses_sockets_and_oversize(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = tmp_path / "s"
    seed.mkdir()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(seed / "sock"))
        with pytest.raises(ValidationError, match="is a socket"):
            pack_directory(seed)
    (seed / "sock").unlink()
    (seed / "big").write_bytes(bytes(200 * 1024))
    monkeypatch.setattr(archive_rules, "MAX_ARCHIVE_BYTES", 100 * 1024)
    with pytest.raises(ValidationError, match="archive limit"):
        pack_directory(seed)


def test_pack_directory_does_not_follow_a_directory_swapped_for_a_symlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = tmp_path / "seed"
    (seed / "sub").mkdir(parents=True)
    real_stat = os.stat

    def racing_stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        result = real_stat(path, *args, **kwargs)
        if path == "sub":  # after the check, before the open: swap in a link to /etc
            (seed / "sub").rmdir()
            (seed / "sub").symlink_to("/etc")
        return result

    monkeypatch.setattr(os, "stat", racing_stat)
    with pytest.raises(ValidationError, match=r"cannot read .*sub"):
        pack_directory(seed)


def test_seed_archive_modes_and_errors(tmp_path: Path) -> None:
    seed = make_seed(tmp_path / "seed")
    from_dir = seed_archive(str(seed))
    assert (from_dir.mode, from_dir.seed_path, from_dir.entry_count) == ("directory", str(seed), 6)
    tgz = write_tgz(tmp_path / "seed.tgz", from_dir.tar_bytes)
    from_tar = seed_archive(tgz)
    assert from_tar.mode == "tar_archive" and from_tar.tar_bytes == from_dir.tar_bytes
    assert (from_tar.entry_count, from_tar.bytes_written) == (6, from_dir.bytes_written)
    with pytest.raises(NotFoundError, match=r"seed_path .*missing does not exist"):
        seed_archive(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValidationError, match=r"seed_path must be a directory or a \.tar/"):
        seed_archive(tmp_path / "notes.txt")
    with pytest.raises(ValidationError, match="source_path must be"):
        seed_archive(tmp_path / "notes.txt", label="source_path")


def test_extract_export_file_directory_and_symlink(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "er" / "app.py"
    result = extract_export(make_tar(f("app.py", b"print(1)\n")), out)
    assert result == {"artifact_type": "file", "entry_count": 1, "bytes_written": 9}
    assert out.read_bytes() == b"print(1)\n"
    tree = make_tar(d("src"), f("src/m.py", b"abc", 0o4755), ln("latest", "src/m.py"))
    result = extract_export(tree, tmp_path / "tree")
    assert result == {"artifact_type": "directory", "entry_count": 3, "bytes_written": 3}
    assert os.readlink(tmp_path / "tree" / "latest") == "src/m.py"
    assert (tmp_path / "tree" / "src" / "m.py").stat().st_mode & 0o7777 == 0o755  # no setuid
    extract_export(make_tar(ln("cur", "v1")), tmp_path / "cur")
    assert os.readlink(tmp_path / "cur") == "v1"
    one = extract_export(make_tar(f("only")), tmp_path / "dir", artifact_type="directory")
    assert one["artifact_type"] == "directory" and (tmp_path / "dir" / "only").is_file()
    with pytest.raises(ValidationError, match="single top-level file"):
        extract_export(tree, tmp_path / "x", artifact_type="file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cur", "deep", "dir", "tree"]


def test_extract_export_refuses_existing_output(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("keep")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dangling").symlink_to("nowhere")
    for name in ("file", "dir", "dangling"):
        with pytest.raises(ValidationError, match="output_path already exists"):
            extract_export(make_tar(f("x")), tmp_path / name)
    assert (tmp_path / "file").read_text() == "keep" and not list((tmp_path / "dir").iterdir())


def test_extract_export_rejects_hostile_tar_without_trace(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="symlinked parent"):
        extract_export(make_tar(ln("link", "."), f("link/x")), tmp_path / "new" / "out")
    assert list(tmp_path.iterdir()) == []


def test_extract_export_failing_midway_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = guest_archive._write
    calls: list[str] = []

    def flaky(tar: tarfile.TarFile, member: tarfile.TarInfo, *args: Any) -> int:
        calls.append(member.name)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(tar, member, *args)

    monkeypatch.setattr(guest_archive, "_write", flaky)
    tar = make_tar(d("a"), f("a/1", b"one"), f("a/2", b"two"), f("a/3"))
    with pytest.raises(StateError, match="No space left"):
        extract_export(tar, tmp_path / "parent" / "out")
    assert calls == ["a/1", "a/2"]
    assert list(tmp_path.iterdir()) == []
