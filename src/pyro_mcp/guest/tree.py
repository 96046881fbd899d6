"""Iterative directory walks through directory fds: any depth, one open fd, no symlinks.

``os.walk``, ``os.fwalk`` and ``shutil.rmtree`` recurse on the Python stack in CPython 3.11
(a tree 1,000 deep breaks them) and hold a path or an fd per level. This walk keeps one
directory fd open: it goes down by name with ``O_NOFOLLOW`` and comes back up through
``..``, checking that ``..`` is the directory it came from (same device and inode), so a
directory moved or swapped during the walk stops it instead of leading it elsewhere.

Standard library only: the guest agent uses it inside the sandbox, the host for its own
directories (the gVisor /workspace volume, deleted workspaces).
"""

from __future__ import annotations

import errno
import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Entry:
    """One entry met by :func:`walk`. ``dir_fd`` (its parent) is valid until the next step."""

    __slots__ = ("dir_fd", "name", "path", "st")

    def __init__(self, path: str, name: str, dir_fd: int, st: os.stat_result) -> None:
        self.path = path
        """Relative to the walk's top, ``/``-separated."""
        self.name = name
        self.dir_fd = dir_fd
        self.st = st


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _moved(what: str) -> OSError:
    return OSError(errno.ESTALE, f"{what} was moved or replaced during the walk")


def walk(top_fd: int, *, delete: bool = False) -> Iterator[Entry]:
    """Every entry under the directory ``top_fd``, depth first, names sorted, pre-order.

    Symlinks are reported, never followed. Entries that vanish mid-walk are skipped. With
    ``delete`` each entry is removed once it has been yielded (directories after their
    contents); ``top_fd``'s directory itself stays. ``top_fd`` is not closed.
    """
    fd = os.open(".", DIR_FLAGS, dir_fd=top_fd)
    # Per level: the path prefix, the names still to visit, the directory's identity.
    stack = [("", iter(sorted(os.listdir(fd))), _identity(os.fstat(fd)))]
    try:
        while stack:
            prefix, names, _ident = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                if stack:
                    fd = _up(fd, stack[-1][2], prefix, delete)
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            yield Entry(prefix + name, name, fd, st)
            if stat.S_ISDIR(st.st_mode):
                fd = _down(fd, name, st, delete)
                stack.append((f"{prefix}{name}/", iter(sorted(os.listdir(fd))), _identity(st)))
            elif delete:
                _unlink(fd, name)
    finally:
        os.close(fd)


def _down(fd: int, name: str, st: os.stat_result, delete: bool) -> int:
    try:
        child = os.open(name, DIR_FLAGS, dir_fd=fd)
    except PermissionError:
        if not delete:
            raise
        os.chmod(name, 0o700, dir_fd=fd)  # a directory the sandbox made unreadable: ours to remove
        child = os.open(name, DIR_FLAGS, dir_fd=fd)
    if _identity(os.fstat(child)) != _identity(st):
        os.close(child)
        raise _moved(f"directory {name!r}")
    os.close(fd)
    return child


def _up(fd: int, parent: tuple[int, int], prefix: str, delete: bool) -> int:
    """From the directory ``prefix`` (just finished) back to its parent; ``fd`` is closed
    only on success (the walk closes it otherwise)."""
    up = os.open("..", DIR_FLAGS, dir_fd=fd)
    try:
        if _identity(os.fstat(up)) != parent:
            raise _moved(f"the parent of {prefix.rstrip('/')!r}")
        if delete:
            _unlink(up, prefix.rstrip("/").rpartition("/")[2], directory=True)
    except BaseException:
        os.close(up)
        raise
    os.close(fd)
    return up


def _unlink(fd: int, name: str, directory: bool = False) -> None:
    """Remove one entry of the directory ``fd``; a read-only directory is made writable."""
    remove = os.rmdir if directory else os.unlink
    for attempt in (1, 2):
        try:
            remove(name, dir_fd=fd)
            return
        except FileNotFoundError:
            return
        except PermissionError:
            if attempt == 2:
                raise
            os.fchmod(fd, 0o700)


def remove_tree(path: str) -> None:
    """Remove ``path`` and everything under it, at any depth, never following a symlink.

    A missing ``path`` is fine; a symlink or file at ``path`` is removed itself. Other
    errors (permissions, a tree changed under us) raise ``OSError``.
    """
    try:
        fd = os.open(path, DIR_FLAGS)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        os.unlink(path)  # a file or a symlink: never follow it
        return
    try:
        for _entry in walk(fd, delete=True):
            pass
    finally:
        os.close(fd)
    os.rmdir(path)


def file_bytes(path: str) -> int:
    """The total size of the regular files under the directory ``path`` (any depth)."""
    fd = os.open(path, DIR_FLAGS)
    try:
        return sum(e.st.st_size for e in walk(fd) if stat.S_ISREG(e.st.st_mode))
    finally:
        os.close(fd)
