"""Guest-side file operations under /workspace: list, read, write, delete, mkdir."""

from __future__ import annotations

import os
import stat

from . import paths

# The guest imports nothing it does not need (every import costs time in a sandbox).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


MAX_FILE_BYTES = 1024 * 1024
MAX_LIST_ENTRIES = 20000
MAX_LIST_PATH_BYTES = 8 * 1024 * 1024  # the paths together: a deep tree grows as depth²


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device file"


KINDS = ("file", "directory", "symlink")


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiouAEIOUF" else f"a {kind}"


def _entry(path: str, st: os.stat_result, link: str | None) -> dict[str, Any]:
    kind = _kind(st.st_mode)
    return {
        "path": path,
        "artifact_type": kind,
        "size_bytes": st.st_size if kind == "file" else 0,
        "link_target": link,
        "mode": stat.S_IMODE(st.st_mode),
    }


def _lstat(path: str, root: str) -> tuple[int, str, os.stat_result]:
    if path == root:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        return fd, ".", os.stat(root, follow_symlinks=False)
    dir_fd, name = paths.open_parent(path, root=root)
    try:
        return dir_fd, name, os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        os.close(dir_fd)
        raise paths.PathError(f"workspace path does not exist: {path}") from None


def list_files(path: str, recursive: bool, root: str = paths.ROOT) -> dict[str, Any]:
    path = paths.normalize(path, root=root)
    dir_fd, name, st = _lstat(path, root)
    try:
        link = os.readlink(name, dir_fd=dir_fd) if stat.S_ISLNK(st.st_mode) else None
    finally:
        os.close(dir_fd)
    if not stat.S_ISDIR(st.st_mode):
        if _kind(st.st_mode) not in KINDS:
            raise paths.PathError(f"{path} is {_article(_kind(st.st_mode))}, not a file")
        return {"path": path, "entries": [_entry(path, st, link)], "truncated": False}
    entries: list[dict[str, Any]] = []
    special: list[str] = []
    truncated = False
    path_bytes = 0
    stack = [path]
    while stack:
        current = stack.pop()
        fd = paths.open_dir(current, root=root)
        try:
            for child in sorted(os.listdir(fd)):
                if len(entries) >= MAX_LIST_ENTRIES or path_bytes >= MAX_LIST_PATH_BYTES:
                    truncated = True
                    break
                cst = os.stat(child, dir_fd=fd, follow_symlinks=False)
                clink = os.readlink(child, dir_fd=fd) if stat.S_ISLNK(cst.st_mode) else None
                child_path = f"{current.rstrip('/')}/{child}"
                path_bytes += len(child_path)
                if _kind(cst.st_mode) not in KINDS:  # FIFOs, sockets, devices: named apart
                    special.append(f"{child_path} ({_kind(cst.st_mode)})")
                    continue
                entries.append(_entry(child_path, cst, clink))
                if recursive and stat.S_ISDIR(cst.st_mode):
                    stack.append(child_path)
        finally:
            os.close(fd)
    entries.sort(key=lambda e: e["path"])
    result = {"path": path, "entries": entries, "truncated": truncated}
    if special:
        result["special_files"] = sorted(special)[:100]
    return result


def read_file(path: str, max_bytes: int, root: str = paths.ROOT) -> dict[str, Any]:
    path = paths.normalize(path, root=root)
    dir_fd, name, st = _lstat(path, root)
    try:
        if not stat.S_ISREG(st.st_mode):
            raise paths.PathError("workspace file read only supports regular files")
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(max_bytes + 1)
    return {
        "path": path,
        "size_bytes": st.st_size,
        "content_bytes": data[:max_bytes],
        "truncated": len(data) > max_bytes or st.st_size > max_bytes,
    }


def write_file(path: str, data: bytes, root: str = paths.ROOT) -> dict[str, Any]:
    """Create or replace a regular file atomically, keeping an existing file's mode."""
    path = paths.normalize(path, root=root)
    if len(data) > MAX_FILE_BYTES:
        raise paths.PathError(f"file content is larger than {MAX_FILE_BYTES} bytes")
    dir_fd, name = paths.open_parent(path, root=root, create=True)
    try:
        mode = 0o644
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                raise paths.PathError(
                    f"refusing to replace {_article(_kind(st.st_mode))} with a file: {path}"
                )
            mode = stat.S_IMODE(st.st_mode)
            owner: tuple[int, int] | None = (st.st_uid, st.st_gid)
        except FileNotFoundError:
            owner = None
        tmp = f".{name}.pyro-{os.getpid()}-{os.urandom(4).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                os.fchmod(handle.fileno(), mode)
                if owner is not None:
                    os.fchown(handle.fileno(), *owner)
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
            raise
    finally:
        os.close(dir_fd)
    return {"path": path, "size_bytes": len(data), "bytes_written": len(data)}


def delete_file(path: str, root: str = paths.ROOT) -> dict[str, Any]:
    path = paths.normalize(path, root=root)
    dir_fd, name = paths.open_parent(path, root=root)
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise paths.PathError(f"refusing to delete {_article(_kind(st.st_mode))}: {path}")
        os.unlink(name, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    return {"path": path, "deleted": True}
