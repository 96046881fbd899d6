"""Full snapshots on a home that cannot clone (ext4): each disk image kept as chunks,
shared between the snapshots of one workspace.

A clone (btrfs, XFS) costs a snapshot nothing; elsewhere a plain copy of an unchanged 1 GiB
workspace wrote 1 GiB each time. Here an image ``NAME`` in a snapshot's directory is
``NAME.chunks/`` (a file per 1 MiB chunk that is not all zeros, named by its index) and
``NAME.manifest`` (JSON: the image's size and each chunk's BLAKE3 digest by index). A
chunk an earlier snapshot of the same workspace already holds (same digest) is a hard link
to that snapshot's file, so a second snapshot of an unchanged workspace writes only what
changed (each image's superblock: one chunk) and the manifests. The kernel's link counts
are the reference counts: deleting a snapshot's directory frees what only it held, and a
link to a file whose snapshot is being deleted meanwhile fails and is written instead.
Chunk files are never written after they are made, nor ever shared outside one
workspace's snapshots; a restore copies them (it never links them into a live image).

The chunks of a digest are trusted because the host made them: snapshots live in the
workspace's private directory, out of every guest's reach; a guest only chooses the bytes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import blake3

from ..errors import StateError
from . import blank_disk

CHUNK_BYTES = 1 << 20
MANIFEST, CHUNKS = ".manifest", ".chunks"
VERSION = 1
ROOM_STEP = 64 * CHUNK_BYTES  # new bytes written between two checks of the host's room
MAX_IMAGE_BYTES = 1 << 50
WORKERS = 2


def manifest(directory: Path, name: str) -> Path:
    return directory / f"{name}{MANIFEST}"


def chunks(directory: Path, name: str) -> Path:
    return directory / f"{name}{CHUNKS}"


def is_kept(directory: Path, name: str) -> bool:
    """Whether ``directory`` holds image ``name``, whole or as chunks."""
    return (directory / name).is_file() or manifest(directory, name).is_file()


ZERO_DIGESTS: dict[int, str] = {}  # a length's all-zero digest, computed once per length


def _is_zero(data: memoryview, digest: str) -> bool:
    zero = ZERO_DIGESTS.get(len(data))
    if zero is None:
        zero = ZERO_DIGESTS[len(data)] = blake3.blake3(bytes(len(data))).hexdigest()
    return digest == zero


def _load(path: Path) -> dict[int, str] | None:
    """A manifest's chunks by index, or None if it is not one we can read."""
    try:
        data = json.loads(path.read_text())
        return {int(i): str(d) for i, d in data["chunks"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def known(snapshots_dir: Path) -> dict[str, Path]:
    """The chunk files the finished snapshots in ``snapshots_dir`` hold, by digest (a
    partial one, named with a leading dot, is never a source)."""
    found: dict[str, Path] = {}
    with contextlib.suppress(FileNotFoundError):
        for directory in snapshots_dir.iterdir():
            if directory.name.startswith(".") or not directory.is_dir():
                continue
            for path in directory.glob(f"*{MANIFEST}"):
                held = path.with_name(path.name[: -len(MANIFEST)] + CHUNKS)
                for index, digest in (_load(path) or {}).items():
                    found.setdefault(digest, held / str(index))
    return found


def _indexes(fd: int, size: int) -> list[int]:
    """The chunks that hold data (holes skipped), in order."""
    wanted: set[int] = set()
    for start, length in blank_disk.data_extents(fd, size):
        wanted.update(range(start // CHUNK_BYTES, (start + length - 1) // CHUNK_BYTES + 1))
    return sorted(wanted)


def _link(source: Path | None, target: Path) -> bool:
    """``target`` made a link to ``source`` (False where it cannot: gone meanwhile, too many
    links)."""
    if source is None:
        return False
    try:
        os.link(source, target)
        return True
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EMLINK):
            return False
        raise


def _write(target: Path, data: memoryview) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        done = 0
        while done < len(data):
            done += os.write(fd, data[done:])
    finally:
        os.close(fd)


class _Saver:
    """One image's save: the chunks split between ``WORKERS`` threads (reading and BLAKE3
    both let go of the GIL), what they share under a lock."""

    def __init__(self, fd: int, size: int, target: Path, held: dict[str, Path]) -> None:
        self.fd, self.size, self.target, self.held = fd, size, target, held
        self.digests: dict[int, str] = {}
        self.written = self.unchecked = 0
        self.lock = threading.Lock()

    def run(self, indexes: list[int]) -> None:
        buffer = bytearray(CHUNK_BYTES)
        for index in indexes:
            length = min(CHUNK_BYTES, self.size - index * CHUNK_BYTES)
            data = memoryview(buffer)[:length]
            if os.preadv(self.fd, [data], index * CHUNK_BYTES) != length:
                raise OSError(errno.EIO, "the image ended early")
            digest = blake3.blake3(data).hexdigest()
            if not _is_zero(data, digest):
                self._keep(index, digest, data)

    def _keep(self, index: int, digest: str, data: memoryview) -> None:
        path = self.target / str(index)
        with self.lock:
            self.digests[index] = digest
            source = self.held.get(digest)
        if _link(source, path):
            return
        with self.lock:  # the host's room, checked before each ROOM_STEP of new data
            due = self.unchecked == 0 or self.unchecked + len(data) > ROOM_STEP
            self.unchecked = len(data) if due else self.unchecked + len(data)
        if due:
            blank_disk.check_room(self.target, ROOM_STEP)
        _write(path, data)
        with self.lock:
            self.held[digest] = path
            self.written += len(data)


def save(image: Path, directory: Path, name: str, held: dict[str, Path]) -> int:
    """``image`` kept in ``directory`` as ``name``'s chunks and manifest, linking each chunk
    ``held`` (by digest) already has; what it wrote, in bytes. ``held`` learns the new chunks.
    The host's reserve (``blank_disk.check_room``) is checked as new data is written."""
    target = chunks(directory, name)
    target.mkdir(mode=0o700)
    with image.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        saver = _Saver(handle.fileno(), size, target, held)
        indexes = _indexes(handle.fileno(), size)
        with ThreadPoolExecutor(WORKERS) as pool:
            done = [pool.submit(saver.run, indexes[n::WORKERS]) for n in range(WORKERS)]
            for future in done:
                future.result()  # the first failure, raised here
    chunk_digests = {str(i): d for i, d in sorted(saver.digests.items())}
    text = json.dumps(
        {"version": VERSION, "size": size, "chunk_bytes": CHUNK_BYTES, "chunks": chunk_digests}
    )
    manifest(directory, name).write_text(text)
    return saver.written + len(text)


def _checked(directory: Path, name: str) -> tuple[int, list[int]]:
    """A manifest's size and chunk indexes, checked; a one-line error if it is damaged."""
    damaged = StateError(f"snapshot {directory.name!r} is damaged ({name})")
    try:
        data: Any = json.loads(manifest(directory, name).read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError):
        raise damaged from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise damaged
    size, chunk_bytes, held = data.get("size"), data.get("chunk_bytes"), data.get("chunks")
    if not isinstance(size, int) or not 0 <= size <= MAX_IMAGE_BYTES:
        raise damaged
    if chunk_bytes != CHUNK_BYTES or not isinstance(held, dict):
        raise damaged
    indexes = []
    for key in held:
        if not (isinstance(key, str) and key.isascii() and key.isdigit()):
            raise damaged
        if int(key) * CHUNK_BYTES >= size:
            raise damaged
        indexes.append(int(key))
    return size, sorted(indexes)


def restore(directory: Path, name: str, target: Path) -> None:
    """Image ``name`` of the snapshot in ``directory`` made anew at ``target`` (which must
    not exist): a copy of its chunks (or of the whole image, a clone where the home can),
    hole for hole; nothing left at ``target`` if that fails."""
    if (directory / name).is_file():
        blank_disk.copy_image(directory / name, target)
        return
    size, indexes = _checked(directory, name)
    blank_disk.check_room(target.parent, len(indexes) * CHUNK_BYTES)
    held = chunks(directory, name)
    try:
        with target.open("xb") as dst:
            for index in indexes:
                length = min(CHUNK_BYTES, size - index * CHUNK_BYTES)
                with (held / str(index)).open("rb") as src:
                    if os.fstat(src.fileno()).st_size != length:
                        raise StateError(f"snapshot {directory.name!r} is damaged ({name})")
                    _copy(src.fileno(), dst.fileno(), length, index * CHUNK_BYTES)
            dst.truncate(size)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _copy(src: int, dst: int, length: int, offset: int) -> None:
    done = 0
    while done < length:
        copied = os.copy_file_range(src, dst, length - done, done, offset + done)
        if copied == 0:
            raise OSError(errno.EIO, "a snapshot chunk ended early")
        done += copied
