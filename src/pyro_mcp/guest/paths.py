"""Workspace path rules, the same on both sides of the host boundary (PRODUCT_SPEC §2.0).

Relative paths resolve under /workspace; ``..`` segments, NUL bytes and absolute paths
outside /workspace are refused. Walking a path never follows a symlink in its parents.
"""

from __future__ import annotations

import os
import stat

ROOT = "/workspace"
MAX_PATH_BYTES = 4096  # Linux PATH_MAX
MAX_NAME_BYTES = 255  # Linux NAME_MAX


class PathError(ValueError):
    """A path that breaks the workspace rules."""


def shown(path: str) -> str:
    """``path`` quoted for an error message, cut to 80 characters."""
    return repr(path if len(path) <= 80 else path[:77] + "...")


def normalize(path: str, *, root: str = ROOT, allow_root: bool = True) -> str:
    """Return the absolute path for ``path`` under ``root`` (e.g. ``/workspace/src/a.py``).

    Refuses an empty path, NUL or other control characters, text that is not UTF-8, a path
    or name longer than Linux allows, any ``..`` segment (even one that would stay inside),
    an absolute path outside ``root``, and ``root`` itself unless ``allow_root``. A doubled
    leading slash (``//workspace``) means ``/workspace`` on Linux and is accepted.
    """
    outside = f"workspace path must stay inside {root}"
    if not isinstance(path, str):
        raise PathError("workspace path must be a string")
    if not path.strip():
        raise PathError("workspace path must not be empty")
    if "\0" in path:
        raise PathError(f"workspace path must not contain NUL bytes: {shown(path)}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise PathError(f"workspace path must not contain control characters: {shown(path)}")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise PathError(f"workspace path is not valid UTF-8: {shown(path)}") from None
    if size > MAX_PATH_BYTES:
        raise PathError(f"workspace path is longer than {MAX_PATH_BYTES} bytes")
    segments = path.split("/")
    if ".." in segments:
        raise PathError(f"{outside} ('..' is not allowed): {shown(path)}")
    parts = [s for s in segments if s not in ("", ".")]
    if path.startswith("/"):
        root_parts = [p for p in root.split("/") if p]
        if parts[: len(root_parts)] != root_parts:
            raise PathError(f"{outside}: {shown(path)}")
        parts = parts[len(root_parts) :]
    for part in parts:
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            raise PathError(
                f"workspace path has a name longer than {MAX_NAME_BYTES} bytes: {shown(path)}"
            )
    if not parts and not allow_root:
        raise PathError(f"workspace path must name an entry inside {root}")
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
        return descend(fd, relative(path, root=root).split("/"), path, create=create)
    finally:
        os.close(fd)


def descend(fd: int, parts: list[str], path: str, *, create: bool = False) -> int:
    """A new fd of the directory ``parts`` below the directory ``fd`` (which stays open),
    never through a symlink; ``path`` names the target in errors."""
    fd = os.dup(fd)
    try:
        for part in [p for p in parts if p]:
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
