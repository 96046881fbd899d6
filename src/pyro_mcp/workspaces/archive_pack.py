"""Pack a host directory's children into a deterministic tar, never following symlinks.

The walk (guest/tree.py) holds one directory fd, opens every entry relative to its parent's
fd with ``O_NOFOLLOW`` and checks ``..`` on the way back up, so swapping a directory for a
symlink mid-walk cannot lead us outside the source tree, at any depth. The size limit lives
in :data:`archive_rules.MAX_ARCHIVE_BYTES` unless the caller names another (the disk limit
of the workspace it is for); the tar is written to a file as it is made, never held whole.
"""

from __future__ import annotations

import io
import os
import posixpath
import stat
import tarfile
from pathlib import Path
from typing import IO

from pyro_mcp.errors import ValidationError
from pyro_mcp.guest import tree
from pyro_mcp.guest.archive import ArchiveError, check_length
from pyro_mcp.hostpaths import over_mcp
from pyro_mcp.workspaces import archive_rules

_SPECIAL_KINDS = {
    stat.S_IFSOCK: "socket",
    stat.S_IFIFO: "FIFO",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: an entry swapped for a FIFO since lstat must not block the open.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def too_big(what: str, limit: int | None = None) -> ValidationError:
    limit = archive_rules.MAX_ARCHIVE_BYTES if limit is None else limit
    return ValidationError(f"{what} is larger than the {limit}-byte archive limit")


class _Packer:
    """Deterministic tar writer: sorted names, int mtime, uid/gid 0, empty user/group names."""

    def __init__(self, root: Path, tar: tarfile.TarFile, out: IO[bytes], limit: int) -> None:
        self.root = root
        self.tar = tar
        self.out = out
        self.limit = limit
        self.entry_count = 0
        self.bytes_written = 0

    def info(self, arcname: str, kind: bytes, st: os.stat_result) -> tarfile.TarInfo:
        info = tarfile.TarInfo(arcname)
        info.type = kind
        info.mode = stat.S_IMODE(st.st_mode) & 0o777
        info.mtime = int(st.st_mtime)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def add(self, dir_fd: int, name: str, host: Path, arcname: str, st: os.stat_result) -> None:
        """Add one entry (``st`` from ``lstat``) of the directory ``dir_fd``."""
        if stat.S_ISDIR(st.st_mode):
            self.tar.addfile(self.info(arcname, tarfile.DIRTYPE, st))
        elif stat.S_ISLNK(st.st_mode):
            self.add_symlink(os.readlink(name, dir_fd=dir_fd), host, arcname, st)
        elif stat.S_ISREG(st.st_mode):
            self.add_file(os.open(name, _FILE_FLAGS, dir_fd=dir_fd), host, arcname)
        else:
            kind = _SPECIAL_KINDS.get(stat.S_IFMT(st.st_mode), "special file")
            raise ValidationError(
                f"{host} is a {kind}; only regular files, directories and symlinks can be copied"
            )
        self.entry_count += 1
        if self.out.tell() > self.limit:
            raise too_big(f"directory {self.root}", self.limit)

    def add_symlink(self, target: str, host: Path, arcname: str, st: os.stat_result) -> None:
        # Over MCP the target is host layout the model may not see: the link is named alone.
        link = f"symlink {host}" if over_mcp() else f"symlink {host} -> {target}"
        if target.startswith("/"):
            raise ValidationError(f"{link} is absolute; symlinks must be relative")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(arcname), target))
        if resolved == ".." or resolved.startswith("../"):
            raise ValidationError(f"{link} points outside {self.root}")
        info = self.info(arcname, tarfile.SYMTYPE, st)
        info.linkname = target
        self.tar.addfile(info)

    def add_file(self, fd: int, host: Path, arcname: str) -> None:
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ValidationError(f"{host} changed type while it was being read")
            if self.out.tell() + st.st_size + 3 * tarfile.BLOCKSIZE > self.limit:
                raise too_big(f"directory {self.root}", self.limit)
            info = self.info(arcname, tarfile.REGTYPE, st)
            info.size = st.st_size
            self.tar.addfile(info, handle)  # hard links become plain copies: no inode table
            self.bytes_written += st.st_size


def pack_directory(source: Path, *, fd: int | None = None) -> tuple[bytes, int, int]:
    """:func:`pack_directory_to` in memory: ``(tar_bytes, entry_count, bytes_written)``."""
    buffer = io.BytesIO()
    count, written = pack_directory_to(source, buffer, fd=fd)
    return buffer.getvalue(), count, written


def pack_directory_to(
    source: Path, out: IO[bytes], *, fd: int | None = None, limit: int | None = None
) -> tuple[int, int]:
    """Tar the children of ``source`` (sorted by name, never following symlinks) into the
    new (empty) seekable file ``out``, at most ``limit`` bytes (default :data:`MAX_ARCHIVE_BYTES`).

    Returns ``(entry_count, bytes_written)`` where ``bytes_written`` is the total size of
    regular files. Hard-linked files are stored as separate copies. Absolute or escaping
    symlinks, sockets, FIFOs and devices are refused with the offending host path.
    ``source`` itself may be a symlink to a directory (the user named it). ``fd``: the
    directory already opened (it is closed here); ``source`` then only names it in messages.
    """
    source = Path(source)
    limit = archive_rules.MAX_ARCHIVE_BYTES if limit is None else limit
    if fd is None and not source.is_dir():
        raise ValidationError(f"{source} is not a directory")
    host = source
    try:
        top = os.open(source, _DIR_FLAGS & ~os.O_NOFOLLOW) if fd is None else fd
        try:
            with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as tar:
                packer = _Packer(source, tar, out, limit)
                for entry in tree.walk(top):  # iterative: any depth, one directory fd
                    host = source / entry.path
                    try:
                        check_length(entry.path)
                    except ArchiveError as exc:
                        raise ValidationError(f"{exc} in {source}") from None
                    packer.add(entry.dir_fd, entry.name, host, entry.path, entry.st)
        finally:
            os.close(top)
    except OSError as exc:
        raise ValidationError(f"cannot read {host}: {exc.strerror or exc}") from None
    size = out.tell()
    if size > limit:
        raise too_big(f"directory {source}", limit)
    out.seek(0)
    archive_rules.validate_file(out, size)  # belt and braces: the rules the guest applies too
    out.seek(0)
    return packer.entry_count, packer.bytes_written
