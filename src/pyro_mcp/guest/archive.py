"""Guest-side tar transfer: unpack an upload into /workspace, pack a path for the host.

The host validated the upload already; the guest checks again (the same rules on both
sides) and writes through directory fds, never through a symlinked parent.
"""

from __future__ import annotations

import io
import os
import posixpath
import stat
import tarfile

from . import paths, tree
from .chunks import ChunkWriter

# The guest imports nothing it does not need (every import costs time in a sandbox).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


MAX_ARCHIVE_BYTES = 256 * 1024 * 1024


class ArchiveError(ValueError):
    """An archive member that breaks the rules."""


def member_name(name: str) -> str:
    if "\0" in name or "\\" in name:
        raise ArchiveError(f"archive member {name!r}: invalid characters")
    if name.startswith("/"):
        raise ArchiveError(f"archive member {name!r}: absolute paths are not allowed")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"archive member {name!r}: '..' is not allowed")
    return "/".join(parts)


MAX_MEMBER_PATH_BYTES = paths.MAX_PATH_BYTES
"""Longest archive member path (Linux PATH_MAX): trees deeper than any real one are refused
in one clear line, and every per-member cost stays bounded."""


def check_length(name: str) -> None:
    """Refuse a member path longer than :data:`MAX_MEMBER_PATH_BYTES`."""
    if len(name.encode("utf-8", "surrogateescape")) > MAX_MEMBER_PATH_BYTES:
        raise ArchiveError(
            f"archive member {paths.shown(name)}: path is longer than "
            f"{MAX_MEMBER_PATH_BYTES} bytes (the archive member path limit)"
        )


class Members:
    """The member rules, checked one member at a time (an archive read as a stream).

    Linear in the members: every directory met (named or implied) is remembered, so only
    the nearest unknown ancestors of a member are ever looked at."""

    def __init__(self, guest_links: bool = False) -> None:
        self.guest_links = guest_links
        self.seen: set[str] = set()  # named members
        self.kinds: dict[str, str] = {}  # named members and implied parent directories

    def check(self, member: tarfile.TarInfo) -> str | None:
        """The member's clean name (None: the archive root, skipped); raises on a bad one."""
        name = member_name(member.name)
        if not name:
            if member.isdir():
                return None
            raise ArchiveError("archive member with an empty name")
        check_length(name)
        shown = paths.shown(name)
        if member.islnk():
            raise ArchiveError(f"archive member {shown}: hard links are not allowed")
        if not (member.isfile() or member.isdir() or member.issym()):
            raise ArchiveError(f"archive member {shown}: special files are not allowed")
        kinds = self.kinds
        parent = name.rpartition("/")[0]
        while parent and parent not in kinds:
            kinds[parent] = "dir"
            parent = parent.rpartition("/")[0]
        if parent and kinds[parent] != "dir":
            raise ArchiveError(f"archive member {shown}: parent {parent!r} is not a directory")
        kind = "dir" if member.isdir() else "sym" if member.issym() else "file"
        if name in self.seen:
            raise ArchiveError(f"archive member {shown} appears twice")
        if kinds.get(name, kind) != kind:
            raise ArchiveError(f"archive member {shown}: type conflict with earlier members")
        if member.issym() and not self.guest_links:
            target = member.linkname
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                raise ArchiveError(f"archive member {shown}: symlink escapes ({target!r})")
        self.seen.add(name)
        kinds[name] = kind
        return name


def check_members(
    members: list[tarfile.TarInfo], guest_links: bool = False
) -> list[tuple[str, tarfile.TarInfo]]:
    """Validate every member before anything is written; return (clean name, member)."""
    rules = Members(guest_links)
    out = []
    for member in members:
        name = rules.check(member)
        if name is not None:
            out.append((name, member))
    return out


class _Dirs:
    """The directory fd of the last member's parent, kept between members: an archive in
    walk order (siblings together, children after their parent) opens each directory once
    instead of walking down from the root for every member."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.path = ""
        self.fd = -1

    def open(self, path: str) -> int:
        """A borrowed fd of the directory ``path`` (normalised), made if missing."""
        if path == self.path:
            return self.fd
        if self.fd >= 0 and path.startswith(self.path + "/"):
            below = path[len(self.path) + 1 :].split("/")
            fd = paths.descend(self.fd, below, path, create=True)
        else:
            fd = paths.open_dir(path, root=self.root, create=True)
        self.close()
        self.path, self.fd = path, fd
        return fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.path, self.fd = "", -1


def unpack(
    dest: str,
    data: bytes | Any,
    root: str = paths.ROOT,
    guest_links: bool = False,
    mode_mask: int = 0o777,
    check: Callable[[tarfile.TarInfo], object] | None = None,
) -> dict[str, Any]:
    """Unpack a tar into ``dest``: ``data`` is its bytes (every member checked before
    anything is written) or a readable file read once as a stream (each member checked
    before it is written: a bad one stops the unpacking there; memory stays bounded).

    ``guest_links``: the archive is a snapshot this guest made (symlinks may point
    anywhere, as they did before); uploads from the host must keep them inside.
    ``mode_mask``: the permission bits a file may keep (the host's exports drop 0o022).
    ``check``: the caller's own rules too, called with each member before it is written."""
    dest = paths.normalize(dest, root=root)
    if isinstance(data, (bytes, bytearray)):
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            check_members(tar.getmembers(), guest_links)
        data = io.BytesIO(data)
    rules = Members(guest_links)
    count = written = 0
    dirs = _Dirs(root)
    try:
        with tarfile.open(fileobj=data, mode="r|") as tar:
            dirs.open(dest)
            while (member := tar.next()) is not None:
                # read as a stream: keep no list of members (the rules keep names)
                tar.members.clear()  # type: ignore[attr-defined]
                if check is not None:
                    check(member)
                name = rules.check(member)
                if name is None:
                    continue
                full = f"{dest.rstrip('/')}/{name}"
                if member.isdir():
                    dirs.open(full)
                else:
                    parent, _, base = full.rpartition("/")
                    written += _write(tar, member, (dirs.open(parent), base, full), mode_mask)
                count += 1
    except tarfile.TarError as exc:
        raise ArchiveError(f"not a valid tar archive: {exc}") from None
    finally:
        dirs.close()
    return {"destination": dest, "entry_count": count, "bytes_written": written}


def _write(
    tar: tarfile.TarFile, member: tarfile.TarInfo, at: tuple[int, str, str], mode_mask: int
) -> int:
    """Write one file or symlink member at ``(dir fd, name, full path)``; return the content
    bytes written."""
    dir_fd, base, full = at
    _clear(dir_fd, base, full)
    if member.issym():
        os.symlink(member.linkname, base, dir_fd=dir_fd)
        return 0
    written = 0
    source = tar.extractfile(member)
    assert source is not None
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    fd = os.open(base, flags, 0o600, dir_fd=dir_fd)
    with os.fdopen(fd, "wb") as handle:
        while chunk := source.read(1024 * 1024):
            handle.write(chunk)
            written += len(chunk)
        os.fchmod(handle.fileno(), member.mode & mode_mask)
    os.utime(base, (member.mtime, member.mtime), dir_fd=dir_fd)
    return written


def _clear(dir_fd: int, name: str, full: str) -> None:
    """Make room for a file or symlink: replace files and symlinks, never directories."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise ArchiveError(f"cannot replace directory {paths.shown(full)} with a file")
    os.unlink(name, dir_fd=dir_fd)


def tar_out(
    path: str, root: str, emit: Callable[[str, bytes], None] | None = None
) -> dict[str, Any] | tuple[dict[str, Any], bytes]:
    """The agent's tar_out: the tar as the reply's data (bounded), or with ``emit`` as
    "chunk" events of at most 1 MiB each, whatever its size (the reply: its description)."""
    if emit is None:
        payload, info = pack(path, root)
        return info, payload
    out = ChunkWriter(lambda chunk: emit("chunk", chunk))
    info = pack_to(path, out, root)
    out.flush()
    return info


def pack(path: str, root: str = paths.ROOT) -> tuple[bytes, dict[str, Any]]:
    """Tar ``path`` in memory, up to :data:`MAX_ARCHIVE_BYTES` (see :func:`pack_to`)."""
    buf = io.BytesIO()
    info = pack_to(path, buf, root, limit=MAX_ARCHIVE_BYTES)
    return buf.getvalue(), info


def pack_to(
    path: str, out: Any, root: str = paths.ROOT, limit: int | None = None
) -> dict[str, Any]:
    """Tar ``path`` as a stream into ``out`` (a file with ``write``; ``limit``: its most
    bytes, for a seekable one): a file or symlink as one member, a directory as its contents.

    Walks through directory fds (guest/tree.py), never following a symlink, at any depth;
    a member path over the limit is refused. Special files are skipped; hard links become
    separate regular files (the host refuses hard-link members)."""
    path = paths.normalize(path, root=root)
    kind = "directory"

    def size() -> None:
        if limit is not None:
            _check_size(out, limit)

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        st = None
        if path != root:
            fd, name = paths.open_parent(path, root=root)  # refuses symlinked parents
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    written = _add(tar, fd, name, name, st)
            except FileNotFoundError:
                raise paths.PathError(f"workspace path does not exist: {path}") from None
            finally:
                os.close(fd)
        if st is None or stat.S_ISDIR(st.st_mode):
            count, written = _add_tree(tar, size, path, root)
        elif written is None:
            raise paths.PathError(f"cannot export a special file: {path}")
        else:
            kind = "symlink" if stat.S_ISLNK(st.st_mode) else "file"
            count = 1
            size()
    return {
        "workspace_path": path,
        "artifact_type": kind,
        "entry_count": count,
        "bytes_written": written,
    }


def _add_tree(
    tar: tarfile.TarFile, check_size: Callable[[], None], path: str, root: str
) -> tuple[int, int]:
    """Add everything under the directory ``path``; return (entries, content bytes)."""
    count = written = 0
    top = paths.open_dir(path, root=root)
    try:
        for entry in tree.walk(top):
            check_length(entry.path)
            size = _add(tar, entry.dir_fd, entry.name, entry.path, entry.st)
            if size is not None:
                count += 1
                written += size
                check_size()
    finally:
        os.close(top)
    return count, written


def _add(
    tar: tarfile.TarFile, dir_fd: int, name: str, arcname: str, st: os.stat_result
) -> int | None:
    """Add the entry ``name`` of ``dir_fd``; return its content bytes, None when skipped."""
    info = tarfile.TarInfo(arcname)
    info.mode = stat.S_IMODE(st.st_mode) & 0o777  # never carry setuid/setgid bits out
    info.mtime = int(st.st_mtime)  # a float would cost a PAX header per member
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(name, dir_fd=dir_fd)
    elif stat.S_ISREG(st.st_mode):
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        with os.fdopen(os.open(name, flags, dir_fd=dir_fd), "rb") as handle:
            current = os.fstat(handle.fileno())
            if not stat.S_ISREG(current.st_mode):
                return None  # swapped for something else since the walk saw it
            info.size = current.st_size
            tar.addfile(info, handle)
        return info.size
    else:
        return None  # special files (FIFOs, sockets, devices) are not packed
    tar.addfile(info)
    return 0


def _check_size(out: Any, limit: int) -> None:
    if out.tell() > limit:
        raise ArchiveError(f"archive is larger than {limit} bytes")
