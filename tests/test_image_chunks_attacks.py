"""Attacks on snapshots kept as chunks (workspaces/image_chunks.py): the host's reserve,
snapshot names reused meanwhile, hostile snapshot directories. Real files on the test's
file system, no sandbox."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pyro_mcp.errors import NotFoundError, PyroError, StateError
from pyro_mcp.workspaces import blank_disk, image_chunks, images

CHUNK = image_chunks.CHUNK_BYTES


def image_of(path: Path, chunks: dict[int, bytes], count: int) -> Path:
    """An image of ``count`` chunks, each index in ``chunks`` filled with its byte pattern
    (the rest holes)."""
    with path.open("wb") as handle:
        handle.truncate(count * CHUNK)
        for index, pattern in chunks.items():
            handle.seek(index * CHUNK)
            handle.write((pattern * CHUNK)[:CHUNK])
    return path


def kept(tmp_path: Path, name: str) -> Path:
    directory = tmp_path / "snapshots" / name
    directory.mkdir(parents=True)
    return directory


@pytest.mark.parametrize("workers", [1, 2])
def test_every_byte_a_save_writes_was_checked_against_the_reserve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """The room is checked every ROOM_STEP of data written, whichever chunks are links:
    a guest that keeps the chunks at the checks' places unchanged never skips one."""
    monkeypatch.setattr(image_chunks, "ROOM_STEP", 4 * CHUNK)
    monkeypatch.setattr(image_chunks, "WORKERS", workers)
    same = {index: b"same%d" % index for index in (0, 4, 8)}
    first = kept(tmp_path, "first")
    image_chunks.save(image_of(tmp_path / "a.img", same, 12), first, "disk.img", {})
    fresh = {index: os.urandom(16) for index in range(12)}
    image = image_of(tmp_path / "b.img", {**fresh, **same}, 12)
    held = image_chunks.known(first.parent)  # chunks 0, 4 and 8
    checked: list[int] = []
    check_room = blank_disk.check_room

    def counting(directory: Path, needed: int) -> None:
        checked.append(needed)
        check_room(directory, needed)

    monkeypatch.setattr(blank_disk, "check_room", counting)
    second = kept(tmp_path, "second")
    written = image_chunks.save(image, second, "disk.img", dict(held))
    data = written - image_chunks.manifest(second, "disk.img").stat().st_size
    assert data == 9 * CHUNK and sum(checked) >= data, checked
    monkeypatch.setenv("PYRO_MIN_FREE_MIB", str(1 << 40))
    with pytest.raises(PyroError, match="not enough free disk on the host"):
        image_chunks.save(image, kept(tmp_path, "third"), "disk.img", dict(held))


def test_a_snapshot_name_reused_meanwhile_never_lends_other_bytes(tmp_path: Path) -> None:
    """A save's known chunks are read before it links them: a snapshot deleted and made
    again under the same name meanwhile (other bytes) must not end up in this one."""
    mine = image_of(tmp_path / "mine.img", {0: b"mine", 1: b"also mine"}, 2)
    first = kept(tmp_path, "first")
    image_chunks.save(mine, first, "disk.img", {})
    held = image_chunks.known(first.parent)
    shutil.rmtree(first)  # deleted, then a new "first" of other bytes
    other = image_of(tmp_path / "other.img", {0: b"other", 1: b"not mine"}, 2)
    image_chunks.save(other, kept(tmp_path, "first"), "disk.img", {})
    second = kept(tmp_path, "second")
    image_chunks.save(mine, second, "disk.img", held)
    image_chunks.restore(second, "disk.img", tmp_path / "back.img")
    assert (tmp_path / "back.img").read_bytes() == mine.read_bytes()


def _chunk_files(directory: Path) -> list[Path]:
    return sorted(image_chunks.chunks(directory, "disk.img").iterdir())


def _symlinked_chunk(snap: Path, tmp_path: Path) -> None:
    chunk = _chunk_files(snap)[0]
    outside = tmp_path / "outside"
    shutil.copyfile(chunk, outside)  # the same bytes, elsewhere
    chunk.unlink()
    chunk.symlink_to(outside)


def _symlinked_dir(snap: Path, tmp_path: Path) -> None:
    held = image_chunks.chunks(snap, "disk.img")
    shutil.copytree(held, tmp_path / "elsewhere")
    shutil.rmtree(held)
    held.symlink_to(tmp_path / "elsewhere")


def _symlinked_manifest(snap: Path, tmp_path: Path) -> None:
    path = image_chunks.manifest(snap, "disk.img")
    shutil.copyfile(path, tmp_path / "manifest")
    path.unlink()
    path.symlink_to(tmp_path / "manifest")


def _chunk_is_a_directory(snap: Path, tmp_path: Path) -> None:
    chunk = _chunk_files(snap)[0]
    chunk.unlink()
    chunk.mkdir()


@pytest.mark.parametrize(
    "damage", [_symlinked_chunk, _symlinked_dir, _symlinked_manifest, _chunk_is_a_directory]
)
def test_a_restore_reads_only_its_own_files(tmp_path: Path, damage: object) -> None:
    """Never a symlink (chunk, chunk directory, manifest) nor anything but a regular file,
    even with the right bytes behind it: one line, nothing left."""
    snap = kept(tmp_path, "one")
    image = image_of(tmp_path / "disk.img", {0: b"a", 3: b"b"}, 4)
    image_chunks.save(image, snap, "disk.img", {})
    damage(snap, tmp_path)  # type: ignore[operator]
    with pytest.raises(StateError, match=r"^snapshot 'one' is damaged \(disk.img\)$"):
        image_chunks.restore(snap, "disk.img", tmp_path / "back.img")
    assert not (tmp_path / "back.img").exists()


def _fifo_chunk(snap: Path, tmp_path: Path) -> None:
    chunk = _chunk_files(snap)[0]
    chunk.unlink()
    os.mkfifo(chunk)


def _fifo_manifest(snap: Path, tmp_path: Path) -> None:
    path = image_chunks.manifest(snap, "disk.img")
    path.unlink()
    os.mkfifo(path)


def _missing_chunk(snap: Path, tmp_path: Path) -> None:
    _chunk_files(snap)[0].unlink()


def _missing_dir(snap: Path, tmp_path: Path) -> None:
    shutil.rmtree(image_chunks.chunks(snap, "disk.img"))


def _whole_image_symlinked(snap: Path, tmp_path: Path) -> None:
    (snap / "disk.img").symlink_to(tmp_path / "disk.img")  # an old-format snapshot's name


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "damage", [_fifo_chunk, _fifo_manifest, _missing_chunk, _missing_dir, _whole_image_symlinked]
)
def test_a_restore_of_odd_files_fails_in_one_line(tmp_path: Path, damage: object) -> None:
    """A FIFO never hangs a restore; a chunk gone while its manifest stays is damage."""
    test_a_restore_reads_only_its_own_files(tmp_path, damage)


def test_a_snapshot_deleted_meanwhile_is_not_found(tmp_path: Path) -> None:
    """Its manifest gone too (a delete): it does not exist, in one line."""
    snap = kept(tmp_path, "one")
    image_chunks.save(image_of(tmp_path / "disk.img", {0: b"a"}, 2), snap, "disk.img", {})
    image_chunks.manifest(snap, "disk.img").rename(tmp_path / "manifest")
    with pytest.raises(NotFoundError, match=r"^snapshot 'one' does not exist$"):
        image_chunks.restore(snap, "disk.img", tmp_path / "back.img")


def test_a_delete_unlists_a_snapshot_before_removing_its_chunks(tmp_path: Path) -> None:
    """snapshots._remove's first step: a restore that starts or goes on meanwhile fails as
    deleted ('does not exist'), not as damaged, and has_images says it is gone."""
    snap = kept(tmp_path, "one")
    image = image_of(tmp_path / "disk.img", {0: b"a", 1: b"b"}, 2)
    for name in ("workspace.img", "system.img"):
        image_chunks.save(image, snap, name, {})
    image_chunks.unlist(snap)
    assert not images.has_images(snap)
    with pytest.raises(NotFoundError, match=r"^snapshot 'one' does not exist$"):
        image_chunks.restore(snap, "workspace.img", tmp_path / "back.img")


def test_known_parses_each_manifest_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot reads only the manifests it has not read yet (under the freeze: every
    earlier snapshot's, each time, grew with their number)."""
    for name in ("a", "b"):
        image = image_of(tmp_path / f"{name}.img", {0: name.encode()}, 2)
        image_chunks.save(image, kept(tmp_path, name), "disk.img", {})
    parsed: list[Path] = []
    load = image_chunks._load

    def counting(path: Path) -> object:
        parsed.append(path)
        return load(path)

    monkeypatch.setattr(image_chunks, "_load", counting)
    first = image_chunks.known(tmp_path / "snapshots")
    assert len(parsed) == 2 and len(first) == 2
    image_chunks.save(
        image_of(tmp_path / "c.img", {0: b"c"}, 2), kept(tmp_path, "c"), "disk.img", {}
    )
    more = image_chunks.known(tmp_path / "snapshots")
    assert len(parsed) == 3 and len(more) == 3  # only c's read
    assert image_chunks.known(tmp_path / "snapshots") == more and len(parsed) == 3
    shutil.rmtree(tmp_path / "snapshots" / "a")  # a delete: read afresh, a's forgotten
    again = image_chunks.known(tmp_path / "snapshots")
    assert len(parsed) == 5 and len(again) == 2
    assert all(held.parent.name in ("b", "c") for held in again.values())


@pytest.mark.timeout(20)
def test_known_skips_a_manifest_that_is_not_a_file(tmp_path: Path) -> None:
    """A FIFO (or symlink) named like a manifest never hangs a snapshot under its freeze."""
    snap = kept(tmp_path, "one")
    image_chunks.save(image_of(tmp_path / "a.img", {0: b"a"}, 2), snap, "disk.img", {})
    os.mkfifo(image_chunks.manifest(snap, "other.img"))
    image_chunks.manifest(snap, "link.img").symlink_to(image_chunks.manifest(snap, "disk.img"))
    held = image_chunks.known(snap.parent)
    assert set(held.values()) == {image_chunks.chunks(snap, "disk.img")}
