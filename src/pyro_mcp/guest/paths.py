"""Workspace path rules, the same on both sides of the host boundary (PRODUCT_SPEC §2.0).

Relative paths resolve under /workspace; ``..`` segments, NUL bytes and absolute paths
outside /workspace are refused. Walking a path never follows a symlink in its parents.
"""

from __future__ import annotations

import os
import stat

ROOT = "/workspace"
MAX_PATH = 4096


class PathError(ValueError):
    """A path that breaks the workspace rules."""


def normalize(path: str, *, root: str = ROOT) -> str:
    """Return the absolute guest path for ``path``, or raise PathError."""
    if not isinstance(path, str) or not path.strip():
        raise PathError("workspace path must not be empty")
    if "\0" in path:
        raise PathError("workspace path must not contain NUL bytes")
    if len(path) > MAX_PATH:
        raise PathError(f"workspace path is longer than {MAX_PATH} characters")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathError(f"workspace path must stay inside {root} (no '..'): {path!r}")
    if path.startswith("/"):
        root_parts = [p for p in root.split("/") if p]
        if parts[: len(root_parts)] != root_parts:
            raise PathError(f"workspace path must stay inside {root}: {path!r}")
        parts = parts[len(root_parts) :]
    return "/".join([root.rstrip("/"), *parts]) if parts else root


def relative(path: str, *, root: str = ROOT) -> str:
    """The part of a normalised path below the root ('' for the root itself)."""
    return path[len(root) :].lstrip("/")


def open_dir(path: str, *, root: str = ROOT, create: bool = False) -> int:
    """Open the directory ``path`` (normalised) without following symlinks on the way.

    Returns a directory fd. ``create`` makes missing directories (mode 0755).
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in [p for p in relative(path, root=root).split("/") if p]:
            try:
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if not create:
                    raise PathError(f"workspace path does not exist: {path}") from None
                os.mkdir(part, 0o755, dir_fd=fd)
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise PathError(f"refusing to go through a symlinked directory: {part!r}")
            if not stat.S_ISDIR(st.st_mode):
                raise PathError(f"not a directory: {part!r}")
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_parent(path: str, *, root: str = ROOT, create: bool = False) -> tuple[int, str]:
    """Open the parent directory of ``path`` safely; return (dir fd, final name)."""
    if path == root:
        raise PathError(f"{root} itself is not a file")
    parent, _, name = path.rpartition("/")
    return open_dir(parent or "/", root=root, create=create), name
