"""Attacks on snapshots kept as chunks (workspaces/image_chunks.py): the host's reserve,
snapshot names reused meanwhile, hostile snapshot directories. Real files on the test's
file system, no sandbox."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pyro_mcp.errors import PyroError
from pyro_mcp.workspaces import blank_disk, image_chunks

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
