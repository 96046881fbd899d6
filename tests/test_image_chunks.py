"""Snapshots kept as shared chunks where the home cannot clone (workspaces/image_chunks.py):
real sparse files on the test's file system, no sandbox. The guest-backed side is in
test_workspace_snapshots_full.py."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp.errors import PyroError, StateError
from pyro_mcp.workspaces import image_chunks, images
from pyro_mcp.workspaces.layout import SYSTEM_IMAGE, WORKSPACE_IMAGE

MIB = 1024 * 1024
CHUNK = image_chunks.CHUNK_BYTES


def sparse_image(path: Path, size: int, writes: dict[int, bytes]) -> Path:
    with path.open("wb") as handle:
        handle.truncate(size)
        for offset, data in writes.items():
            handle.seek(offset)
            handle.write(data)
    return path


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """64 MiB and a half chunk (the last chunk is short), holes, a run of written zeros."""
    writes = {0: b"super", 5 * MIB + 7: os.urandom(3 * MIB), 20 * MIB: bytes(2 * MIB)}
    writes[64 * MIB + CHUNK // 2 - 4] = b"tail"
    return sparse_image(tmp_path / "disk.img", 64 * MIB + CHUNK // 2, writes)


def kept(tmp_path: Path, name: str) -> Path:
    directory = tmp_path / "snapshots" / name
    directory.mkdir(parents=True)
    return directory


def test_a_restore_is_the_image_hole_for_hole(tmp_path: Path, image: Path) -> None:
    snap = kept(tmp_path, "one")
    written = image_chunks.save(image, snap, "disk.img", {})
    # chunks 0, 5..8 and the short last one: never the holes nor the written zeros
    held = json.loads(image_chunks.manifest(snap, "disk.img").read_text())["chunks"]
    assert sorted(map(int, held)) == [0, 5, 6, 7, 8, 64]
    files = sorted(p.name for p in image_chunks.chunks(snap, "disk.img").iterdir())
    assert files == sorted(held.values())  # each named by its digest
    assert 5 * CHUNK < written < 6 * CHUNK + 4096
    image_chunks.restore(snap, "disk.img", tmp_path / "back.img")
    back = tmp_path / "back.img"
    assert back.read_bytes() == image.read_bytes()
    assert image_chunks.data_bytes(snap, "disk.img") == 5 * CHUNK + CHUNK // 2
    assert back.stat().st_blocks * 512 <= 7 * CHUNK  # sparse: no 64 MiB of zeros written


def test_a_second_snapshot_of_an_unchanged_image_links_every_chunk(
    tmp_path: Path, image: Path
) -> None:
    first = kept(tmp_path, "first")
    image_chunks.save(image, first, "disk.img", {})
    second = kept(tmp_path, "second")
    written = image_chunks.save(image, second, "disk.img", image_chunks.known(first.parent))
    assert written == image_chunks.manifest(second, "disk.img").stat().st_size
    for chunk in image_chunks.chunks(second, "disk.img").iterdir():
        assert chunk.stat().st_nlink == 2
    # one changed byte: one new chunk, the rest shared
    with image.open("r+b") as handle:
        handle.seek(6 * MIB)
        handle.write(b"!")
    third = kept(tmp_path, "third")
    written = image_chunks.save(image, third, "disk.img", image_chunks.known(first.parent))
    assert CHUNK <= written < CHUNK + 4096
    # deleting the earlier snapshots frees nothing the later one needs
    for directory in (first, second):
        for chunk in image_chunks.chunks(directory, "disk.img").iterdir():
            chunk.unlink()
    image_chunks.restore(third, "disk.img", tmp_path / "back.img")
    assert (tmp_path / "back.img").read_bytes() == image.read_bytes()


def test_a_source_gone_meanwhile_is_written_instead(tmp_path: Path, image: Path) -> None:
    first = kept(tmp_path, "first")
    image_chunks.save(image, first, "disk.img", {})
    held = image_chunks.known(first.parent)
    for chunk in image_chunks.chunks(first, "disk.img").iterdir():
        chunk.unlink()  # a delete of that snapshot racing this one
    second = kept(tmp_path, "second")
    assert image_chunks.save(image, second, "disk.img", held) > 5 * CHUNK
    image_chunks.restore(second, "disk.img", tmp_path / "back.img")
    assert (tmp_path / "back.img").read_bytes() == image.read_bytes()


def test_a_partial_snapshot_is_never_a_source(tmp_path: Path, image: Path) -> None:
    partial = kept(tmp_path, ".first.partial-0000")
    image_chunks.save(image, partial, "disk.img", {})
    assert image_chunks.known(partial.parent) == {}


@pytest.mark.parametrize(
    "damage",
    [
        lambda m: m.write_text("{not json"),
        lambda m: m.write_text(json.dumps({**json.loads(m.read_text()), "version": 9})),
        lambda m: m.write_text(json.dumps({**json.loads(m.read_text()), "size": -1})),
        lambda m: m.write_text(
            json.dumps({**json.loads(m.read_text()), "size": 1 << 50, "chunks": {}})
        ),
        lambda m: m.write_text(json.dumps({**json.loads(m.read_text()), "chunks": {"../x": ""}})),
        lambda m: m.write_text(json.dumps({**json.loads(m.read_text()), "chunks": {"99": ""}})),
        lambda m: m.write_text(json.dumps({**json.loads(m.read_text()), "chunks": {"0": "../x"}})),
        lambda m: m.write_text(
            json.dumps({**json.loads(m.read_text()), "chunks": {"0": "a" * 64, "00": "a" * 64}})
        ),
        lambda m: next((m.parent / "disk.img.chunks").iterdir()).write_bytes(b"short"),
    ],
)
def test_a_damaged_snapshot_fails_in_one_line_and_leaves_nothing(
    tmp_path: Path, image: Path, damage: object
) -> None:
    snap = kept(tmp_path, "one")
    image_chunks.save(image, snap, "disk.img", {})
    damage(image_chunks.manifest(snap, "disk.img"))  # type: ignore[operator]
    with pytest.raises(StateError, match=r"^snapshot 'one' is damaged \(disk.img\)$"):
        image_chunks.restore(snap, "disk.img", tmp_path / "back.img")
    assert not (tmp_path / "back.img").exists()


def test_the_host_reserve_stops_a_save(
    tmp_path: Path, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYRO_MIN_FREE_MIB", str(1 << 40))
    with pytest.raises(PyroError, match="not enough free disk on the host"):
        image_chunks.save(image, kept(tmp_path, "one"), "disk.img", {})


def test_keep_images_and_a_fork_from_them(tmp_path: Path, image: Path) -> None:
    """images.keep_images on this file system (chunks on ext4, clones on btrfs/XFS), and
    images.restore_images back: both images as they were."""
    system = sparse_image(tmp_path / "system.img", 8 * MIB, {MIB: b"etc"})
    sources = {WORKSPACE_IMAGE: image, SYSTEM_IMAGE: system}
    snap = kept(tmp_path, "one")
    written = images.keep_images(sources, snap, snap.parent)
    assert images.has_images(snap)
    # a clone writes nothing: only chunks count (the test passes on btrfs/XFS homes too)
    assert (written > 0) == image_chunks.manifest(snap, WORKSPACE_IMAGE).is_file()
    child = tmp_path / "child"
    child.mkdir()
    images.restore_images(snap, child)
    for name, source in sources.items():
        assert (child / name).read_bytes() == source.read_bytes()


@pytest.mark.parametrize(
    ("size", "writes"),
    [
        (3 * MIB + 5, {3 * MIB + 1: b"tail"}),  # data only in the short last chunk
        (4 * MIB, {0: bytes(4 * MIB)}),  # all zeros, written: no chunk at all
        (0, {}),  # empty
    ],
)
def test_odd_images_come_back_as_they_were(
    tmp_path: Path, size: int, writes: dict[int, bytes]
) -> None:
    image = sparse_image(tmp_path / "disk.img", size, writes)
    snap = kept(tmp_path, "one")
    image_chunks.save(image, snap, "disk.img", {})
    image_chunks.restore(snap, "disk.img", tmp_path / "back.img")
    assert (tmp_path / "back.img").read_bytes() == image.read_bytes()
    held = list(image_chunks.chunks(snap, "disk.img").iterdir())
    assert len(held) == (1 if any(any(w) for w in writes.values()) else 0)


def test_a_chunk_at_the_link_limit_is_written_instead(tmp_path: Path) -> None:
    """EMLINK (ext4: 65000 links): the chunk is written anew, and later ones link to it."""
    image = sparse_image(tmp_path / "disk.img", 2 * MIB, {0: b"a" * MIB, MIB: b"b"})
    first = kept(tmp_path, "first")
    image_chunks.save(image, first, "disk.img", {})
    crowded = next(image_chunks.chunks(first, "disk.img").iterdir())  # one of the two
    links = tmp_path / "links"
    links.mkdir()
    try:
        for n in range(70000):
            os.link(crowded, links / str(n))
    except OSError as exc:
        if exc.errno != errno.EMLINK:
            raise
    else:
        pytest.skip("this file system has no link limit below 70000")
    second = kept(tmp_path, "second")
    written = image_chunks.save(image, second, "disk.img", image_chunks.known(first.parent))
    assert CHUNK <= written < 2 * CHUNK  # the crowded one written, the other linked
    image_chunks.restore(second, "disk.img", tmp_path / "back.img")
    assert (tmp_path / "back.img").read_bytes() == image.read_bytes()
    shutil.rmtree(links)


def test_an_old_snapshot_of_whole_images_still_restores(tmp_path: Path, image: Path) -> None:
    """A btrfs home's snapshot, or one made before chunks: plain workspace.img/system.img."""
    system = sparse_image(tmp_path / "system.img", 8 * MIB, {MIB: b"etc"})
    snap = kept(tmp_path, "old")
    for name, source in {WORKSPACE_IMAGE: image, SYSTEM_IMAGE: system}.items():
        shutil.copyfile(source, snap / name)
    assert images.has_images(snap) and image_chunks.known(snap.parent) == {}
    child = tmp_path / "child"
    child.mkdir()
    images.restore_images(snap, child)
    assert (child / WORKSPACE_IMAGE).read_bytes() == image.read_bytes()
    assert (child / SYSTEM_IMAGE).read_bytes() == system.read_bytes()


def test_the_reserve_is_checked_before_each_step_of_new_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However linked chunks fall between the written ones, no more than ROOM_STEP of new
    data goes unchecked: here every 4th chunk is linked, the others written anew."""
    monkeypatch.setattr(image_chunks, "ROOM_STEP", 4 * CHUNK)
    monkeypatch.setattr(image_chunks, "WORKERS", 1)  # chunks in order
    calls: list[int] = []
    monkeypatch.setattr(image_chunks.blank_disk, "check_room", lambda d, n: calls.append(n))
    size = 40 * MIB
    image = sparse_image(tmp_path / "disk.img", size, {0: os.urandom(size)})
    older = kept(tmp_path, "older")
    image_chunks.save(image, older, "disk.img", {})
    by_index = json.loads(image_chunks.manifest(older, "disk.img").read_text())["chunks"]
    held = image_chunks.known(older.parent)
    for index, digest in by_index.items():
        if int(index) % 4:
            del held[digest]
    calls.clear()
    written = image_chunks.save(image, kept(tmp_path, "newer"), "disk.img", held)
    assert 30 * MIB <= written < 31 * MIB
    assert len(calls) >= 30 // 4


def test_a_version_1_snapshot_still_restores(tmp_path: Path, image: Path) -> None:
    """Chunk files named by index (this format's first version, on main before 3.7.0):
    restored as they are; never a link source (a name there is no digest)."""
    snap = kept(tmp_path, "v1")
    image_chunks.save(image, snap, "disk.img", {})
    path = image_chunks.manifest(snap, "disk.img")
    data = json.loads(path.read_text())
    held = image_chunks.chunks(snap, "disk.img")
    for index, digest in data["chunks"].items():
        os.link(held / digest, held / index)
    for digest in set(data["chunks"].values()):
        (held / digest).unlink()
    path.write_text(json.dumps({**data, "version": 1}))
    assert image_chunks.known(snap.parent) == {}
    image_chunks.restore(snap, "disk.img", tmp_path / "back.img")
    assert (tmp_path / "back.img").read_bytes() == image.read_bytes()


def test_a_failed_save_stops_every_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One thread's write fails (a full disk): the other stops too, instead of reading,
    hashing and writing the rest of its half of the image."""
    calls: list[int] = []
    real = image_chunks._write

    def failing_once(path: Path, data: Any) -> None:
        calls.append(len(data))
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    big = sparse_image(tmp_path / "big.img", 128 * MIB, {0: os.urandom(128 * MIB)})
    monkeypatch.setattr(image_chunks, "_write", failing_once)
    with pytest.raises(OSError):
        image_chunks.save(big, kept(tmp_path, "one"), "disk.img", {})
    assert len(calls) < 16, f"{len(calls)} of 128 chunks written after the failure"
