"""Full snapshots on a home that cannot clone (ext4): each disk image kept as chunks,
shared between the snapshots of one workspace.

A clone (btrfs, XFS) costs a snapshot nothing; elsewhere a plain copy of an unchanged 1 GiB
workspace wrote 1 GiB each time. Here an image ``NAME`` in a snapshot's directory is
``NAME.chunks/`` (a file per distinct 1 MiB chunk that is not all zeros, named by its
BLAKE3 digest) and ``NAME.manifest`` (JSON: the image's size and each chunk's digest by
index). A chunk an earlier snapshot of the same workspace already holds (same digest) is a
hard link to that snapshot's file, so a second snapshot of an unchanged workspace writes only what
changed (each image's superblock: one chunk) and the manifests. The kernel's link counts
are the reference counts: deleting a snapshot's directory frees what only it held, and a
link to a file whose snapshot is being deleted meanwhile fails and is written instead. A
file's name is its content's digest, so a link made by name is right even where that
snapshot was deleted and its name reused meanwhile (an index would name other bytes).
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
import re
import stat
import threading
from pathlib import Path
from typing import Any

from ..errors import NotFoundError, StateError
from . import blank_disk

CHUNK_BYTES = 1 << 20
MANIFEST, CHUNKS = ".manifest", ".chunks"
VERSION = 2  # 1 (main before 3.7.0): chunk files named by index; still restored, never linked
ROOM_STEP = 64 * CHUNK_BYTES  # new bytes written between two checks of the host's room
MAX_IMAGE_BYTES = 1 << 50
DIGEST_RE = re.compile(r"[0-9a-f]{64}")  # BLAKE3's, in hex: a chunk file's name
WORKERS = 2


def manifest(directory: Path, name: str) -> Path:
    return directory / f"{name}{MANIFEST}"


def chunks(directory: Path, name: str) -> Path:
    return directory / f"{name}{CHUNKS}"


def is_kept(directory: Path, name: str) -> bool:
    """Whether ``directory`` holds image ``name``, whole or as chunks."""
    return (directory / name).is_file() or manifest(directory, name).is_file()


def _digest(data: bytes | memoryview) -> str:
    """A chunk's BLAKE3 digest, in hex. blake3 (and the thread pool) are imported by a save
    only: this module is imported by every CLI, SDK and supervisor start (~4.5 ms)."""
    from blake3 import blake3

    return blake3(data).hexdigest()


ZERO_DIGESTS: dict[int, str] = {}  # a length's all-zero digest, computed once per length


def _is_zero(data: memoryview, digest: str) -> bool:
    zero = ZERO_DIGESTS.get(len(data))
    if zero is None:
        zero = ZERO_DIGESTS[len(data)] = _digest(bytes(len(data)))
    return digest == zero


def _load(path: Path) -> set[str]:
    """The digests of a manifest's chunks (none if it is not one we can read)."""
    try:
        data = _read_manifest(path)
        if data.get("version") == VERSION:
            return {str(d) for d in data["chunks"].values()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return set()


class _Index:
    """What ``known`` read of one snapshots directory: each manifest read (by path, its
    file's identity) and the digests they hold. Manifests are never rewritten: a new
    snapshot's are read once, and a deleted one's (or a changed one's) starts it afresh."""

    def __init__(self) -> None:
        self.read: dict[Path, tuple[int, ...]] = {}
        self.found: dict[str, Path] = {}


INDEXES: dict[Path, _Index] = {}  # by snapshots directory (a supervisor serves one)


def _manifests(snapshots_dir: Path) -> dict[Path, tuple[int, ...]]:
    """The finished snapshots' manifests (a partial one, named with a leading dot, is
    never a source), by path, with their identities."""
    found: dict[Path, tuple[int, ...]] = {}
    with contextlib.suppress(FileNotFoundError):
        for directory in os.scandir(snapshots_dir):
            if directory.name.startswith(".") or not directory.is_dir(follow_symlinks=False):
                continue
            for path in Path(directory.path).glob(f"*{MANIFEST}"):
                with contextlib.suppress(OSError):
                    info = path.lstat()
                    found[path] = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    return found


def known(snapshots_dir: Path) -> dict[str, Path]:
    """The chunk directories of the finished snapshots in ``snapshots_dir`` by the digests
    they hold; a copy (the caller's to add to). Only manifests not read before are read."""
    current = _manifests(snapshots_dir)
    index = INDEXES.get(snapshots_dir)
    if index is None or any(current.get(p) != seen for p, seen in index.read.items()):
        index = INDEXES[snapshots_dir] = _Index()
    for path, identity in current.items():
        if path not in index.read:
            held = path.with_name(path.name[: -len(MANIFEST)] + CHUNKS)
            index.found.update(dict.fromkeys(_load(path), held))
            index.read[path] = identity
    return dict(index.found)


def data_bytes(directory: Path, name: str) -> int:
    """The data image ``name`` of the snapshot in ``directory`` holds (what a restore of it
    writes): its chunks' bytes, or a whole image's blocks; 0 if it cannot be read."""
    whole = directory / name
    with contextlib.suppress(OSError, StateError):
        if whole.is_file():
            return whole.stat().st_blocks * 512
        size, held = _checked(directory, name)
        return sum(min(CHUNK_BYTES, size - index * CHUNK_BYTES) for index, _ in held)
    return 0


def unlist(directory: Path) -> None:
    """A snapshot being deleted: its manifests go first, so a restore racing the delete
    finds it gone ('does not exist'), never half gone ('damaged')."""
    for path in directory.glob(f"*{MANIFEST}"):
        path.unlink(missing_ok=True)


def _indexes(fd: int, size: int) -> list[int]:
    """The chunks that hold data (holes skipped), in order."""
    wanted: set[int] = set()
    for start, length in blank_disk.data_extents(fd, size):
        wanted.update(range(start // CHUNK_BYTES, (start + length - 1) // CHUNK_BYTES + 1))
    return sorted(wanted)


def _link(source: Path | None, target: Path) -> bool:
    """``target`` made a link to the file of its name in the directory ``source`` (False
    where it cannot: gone meanwhile, too many links)."""
    if source is None:
        return False
    try:
        os.link(source / target.name, target)
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
        self.mine: set[str] = set()  # the digests this image's chunk files have (or will)
        self.written = self.room = 0  # room: bytes checked against the reserve, not yet written
        self.lock = threading.Lock()
        self.stopped = False

    def run(self, indexes: list[int]) -> None:
        """Save these chunks; the first failure (of any thread) stops them all."""
        try:
            self._run(indexes)
        except BaseException:
            self.stopped = True
            raise

    def _run(self, indexes: list[int]) -> None:
        buffer = bytearray(CHUNK_BYTES)
        for index in indexes:
            if self.stopped:
                return
            length = min(CHUNK_BYTES, self.size - index * CHUNK_BYTES)
            data = memoryview(buffer)[:length]
            if os.preadv(self.fd, [data], index * CHUNK_BYTES) != length:
                raise OSError(errno.EIO, "the image ended early")
            digest = _digest(data)
            if not _is_zero(data, digest):
                self._keep(index, digest, data)

    def _keep(self, index: int, digest: str, data: memoryview) -> None:
        path = self.target / digest
        with self.lock:
            self.digests[index] = digest
            if digest in self.mine:  # the same bytes at another index: one file
                return
            self.mine.add(digest)
            source = self.held.get(digest)
        if _link(source, path):
            return
        with self.lock:  # every byte written is within a check, whatever was linked
            if self.room < len(data):
                blank_disk.check_room(self.target, ROOM_STEP)
                self.room += ROOM_STEP
            self.room -= len(data)
        _write(path, data)
        with self.lock:
            self.held[digest] = self.target
            self.written += len(data)


def save(image: Path, directory: Path, name: str, held: dict[str, Path]) -> int:
    """``image`` kept in ``directory`` as ``name``'s chunks and manifest, linking each chunk
    ``held`` (chunk directories by digest) has; what it wrote, in bytes. ``held`` learns the
    new chunks.
    The host's reserve (``blank_disk.check_room``) is checked as new data is written."""
    target = chunks(directory, name)
    target.mkdir(mode=0o700)
    with image.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        saver = _Saver(handle.fileno(), size, target, held)
        indexes = _indexes(handle.fileno(), size)
        from concurrent.futures import ThreadPoolExecutor  # (a snapshot's only: see _digest)

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


def _damaged(directory: Path, name: str) -> StateError:
    return StateError(f"snapshot {directory.name!r} is damaged ({name})")


def _open(path: str | Path, dir_fd: int | None = None, directory: bool = False) -> int:
    """A snapshot's own file (or directory) opened to read: never through a symlink (ELOOP),
    never a FIFO's wait (the check of its type is the caller's)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    return os.open(path, flags | (os.O_DIRECTORY if directory else 0), dir_fd=dir_fd)


def _read_manifest(path: Path) -> Any:
    fd = _open(path)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a file")
        return json.loads(handle.read())


def _checked(directory: Path, name: str) -> tuple[int, list[tuple[int, str]]]:
    """A manifest's size and chunks (index, the name of its file: its digest, or its index
    in a version 1 manifest), checked; a one-line error if it is damaged."""
    damaged = _damaged(directory, name)
    try:
        data: Any = _read_manifest(manifest(directory, name))
    except FileNotFoundError:
        raise
    except (OSError, ValueError):
        raise damaged from None
    if not isinstance(data, dict) or data.get("version") not in (1, VERSION):
        raise damaged
    size, chunk_bytes, held = data.get("size"), data.get("chunk_bytes"), data.get("chunks")
    if not isinstance(size, int) or not 0 <= size <= MAX_IMAGE_BYTES:
        raise damaged
    if chunk_bytes != CHUNK_BYTES or not isinstance(held, dict):
        raise damaged
    found = []
    for key, digest in held.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit()):
            raise damaged
        if str(int(key)) != key or int(key) * CHUNK_BYTES >= size:  # "01" would be "1" too
            raise damaged
        if not (isinstance(digest, str) and DIGEST_RE.fullmatch(digest)):  # a file's name
            raise damaged
        found.append((int(key), digest if data["version"] == VERSION else key))
    return size, sorted(found)


def restore(directory: Path, name: str, target: Path) -> None:
    """Image ``name`` of the snapshot in ``directory`` made anew at ``target`` (which must
    not exist): a copy of its chunks (or of the whole image, a clone where the home can),
    hole for hole; nothing left at ``target`` if that fails. Only the snapshot's own
    regular files are read (no symlink); a chunk missing while its manifest is still there
    is damage, a snapshot deleted meanwhile (its manifests go first) does not exist."""
    try:
        _restore(directory, name, target)
    except FileNotFoundError:
        if is_kept(directory, name):
            raise
        raise NotFoundError(f"snapshot {directory.name!r} does not exist") from None


def _restore(directory: Path, name: str, target: Path) -> None:
    whole = directory / name
    if whole.exists() or whole.is_symlink():
        if whole.is_symlink() or not whole.is_file():
            raise _damaged(directory, name)
        blank_disk.copy_image(whole, target)
        return
    size, held = _checked(directory, name)
    blank_disk.check_room(target.parent, len(held) * CHUNK_BYTES)
    try:
        with target.open("xb") as dst:
            files = _open(chunks(directory, name), directory=True)
            try:
                for index, digest in held:
                    length = min(CHUNK_BYTES, size - index * CHUNK_BYTES)
                    _copy_chunk(files, digest, length, dst.fileno(), index * CHUNK_BYTES)
            finally:
                os.close(files)
            dst.truncate(size)
    except BaseException as exc:
        target.unlink(missing_ok=True)
        if isinstance(exc, FileNotFoundError) and not manifest(directory, name).exists():
            raise  # deleted meanwhile
        if isinstance(exc, _Damaged) or (isinstance(exc, OSError) and exc.errno in DAMAGE):
            raise _damaged(directory, name) from None
        raise


# a chunk (directory) gone or a symlink; a size no file here can have
DAMAGE = (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.EFBIG)


class _Damaged(Exception):
    """A chunk file that is not what its manifest says (``restore`` says which snapshot)."""


def _copy_chunk(files: int, digest: str, length: int, dst: int, offset: int) -> None:
    """The chunk file ``digest`` of the directory ``files`` copied into ``dst`` at
    ``offset``; it must be a regular file of ``length`` bytes."""
    src = _open(digest, dir_fd=files)
    try:
        info = os.fstat(src)
        if not stat.S_ISREG(info.st_mode) or info.st_size != length:
            raise _Damaged(digest)
        done = 0
        while done < length:
            copied = os.copy_file_range(src, dst, length - done, done, offset + done)
            if copied == 0:
                raise OSError(errno.EIO, "a snapshot chunk ended early")
            done += copied
    finally:
        os.close(src)
