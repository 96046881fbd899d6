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

from . import paths

# The guest imports nothing it does not need (every import costs time in a sandbox).
TYPE_CHECKING = False
if TYPE_CHECKING:
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


def check_members(
    members: list[tarfile.TarInfo], guest_links: bool = False
) -> list[tuple[str, tarfile.TarInfo]]:
    """Validate every member before anything is written; return (clean name, member)."""
    seen: dict[str, str] = {}
    out = []
    for member in members:
        name = member_name(member.name)
        if not name:
            if member.isdir():
                continue
            raise ArchiveError("archive member with an empty name")
        if member.islnk():
            raise ArchiveError(f"archive member {name!r}: hard links are not allowed")
        if not (member.isfile() or member.isdir() or member.issym()):
            raise ArchiveError(f"archive member {name!r}: special files are not allowed")
        parent = name.rpartition("/")[0]
        while parent:
            if seen.get(parent) not in (None, "dir"):
                raise ArchiveError(f"archive member {name!r}: parent {parent!r} is not a directory")
            parent = parent.rpartition("/")[0]
        kind = "dir" if member.isdir() else "sym" if member.issym() else "file"
        if name in seen:
            raise ArchiveError(f"archive member {name!r} appears twice")
        if member.issym() and not guest_links:
            target = member.linkname
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                raise ArchiveError(f"archive member {name!r}: symlink escapes ({target!r})")
        seen[name] = kind
        out.append((name, member))
    return out


def unpack(
    dest: str, data: bytes, root: str = paths.ROOT, guest_links: bool = False
) -> dict[str, Any]:
    """``guest_links``: the archive is a snapshot this guest made (symlinks may point
    anywhere, as they did before); uploads from the host must keep them inside."""
    dest = paths.normalize(dest, root=root)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        members = check_members(tar.getmembers(), guest_links)
        dest_fd = paths.open_dir(dest, root=root, create=True)
        os.close(dest_fd)
        count = 0
        written = 0
        for name, member in members:
            full = f"{dest.rstrip('/')}/{name}"
            if member.isdir():
                os.close(paths.open_dir(full, root=root, create=True))
                count += 1
                continue
            dir_fd, base = paths.open_parent(full, root=root, create=True)
            try:
                _clear(dir_fd, base, full)
                if member.issym():
                    os.symlink(member.linkname, base, dir_fd=dir_fd)
                else:
                    source = tar.extractfile(member)
                    assert source is not None
                    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                    fd = os.open(base, flags, 0o600, dir_fd=dir_fd)
                    with os.fdopen(fd, "wb") as handle:
                        while chunk := source.read(1024 * 1024):
                            handle.write(chunk)
                            written += len(chunk)
                        os.fchmod(handle.fileno(), member.mode & 0o777)
                    os.utime(base, (member.mtime, member.mtime), dir_fd=dir_fd)
                count += 1
            finally:
                os.close(dir_fd)
    return {"destination": dest, "entry_count": count, "bytes_written": written}


def _clear(dir_fd: int, name: str, full: str) -> None:
    """Make room for a file or symlink: replace files and symlinks, never directories."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise ArchiveError(f"cannot replace directory {full} with a file")
    os.unlink(name, dir_fd=dir_fd)


def pack(path: str, root: str = paths.ROOT) -> tuple[bytes, dict[str, Any]]:
    """Tar ``path``: a file or symlink as one member, a directory as its contents."""
    path = paths.normalize(path, root=root)
    if path != root:
        fd, name = paths.open_parent(path, root=root)  # refuses symlinked parents
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise paths.PathError(f"workspace path does not exist: {path}") from None
        finally:
            os.close(fd)
    else:
        st = os.stat(root)
    buf = io.BytesIO()
    count = 0
    written = 0
    with tarfile.open(fileobj=buf, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        if stat.S_ISDIR(st.st_mode):
            kind = "directory"
            for current, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(dirs + files):
                    full = os.path.join(current, name)
                    info = tar.gettarinfo(full, arcname=os.path.relpath(full, path))
                    if not (info.isfile() or info.isdir() or info.issym() or info.islnk()):
                        continue  # special files (FIFOs, sockets, devices) are not packed
                    _add(tar, full, info)
                    count += 1
                    written += info.size if info.isfile() or info.islnk() else 0
                    _check_size(buf)
        else:
            info = tar.gettarinfo(path, arcname=posixpath.basename(path))
            kind = "symlink" if info.issym() else "file" if info.isfile() else "other"
            if kind == "other":
                raise paths.PathError(f"cannot export a special file: {path}")
            _add(tar, path, info)
            count = 1
            written = info.size if info.isfile() else 0
            _check_size(buf)
    return buf.getvalue(), {
        "workspace_path": path,
        "artifact_type": kind,
        "entry_count": count,
        "bytes_written": written,
    }


def _add(tar: tarfile.TarFile, full: str, info: tarfile.TarInfo) -> None:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode &= 0o777  # never carry setuid/setgid bits out
    if info.islnk():
        # A file with several names: store each as its own regular file (the host
        # rejects hard-link members).
        info.type = tarfile.REGTYPE
        info.linkname = ""
        info.size = os.stat(full, follow_symlinks=False).st_size
    if info.isfile():
        with open(full, "rb") as handle:
            tar.addfile(info, handle)
    else:
        tar.addfile(info)


def _check_size(buf: io.BytesIO) -> None:
    if buf.tell() > MAX_ARCHIVE_BYTES:
        raise ArchiveError(f"archive is larger than {MAX_ARCHIVE_BYTES} bytes")
