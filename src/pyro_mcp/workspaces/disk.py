"""Stopped-workspace disk tools (PRODUCT_SPEC §2.16): list, read, export without booting.

What a stopped workspace keeps on disk is /workspace: an ext4 image (every sandbox engine;
a gVisor workspace made before 3.7 has a host directory instead). Images are read through
debugfs in user space, never mounted, and never unpacked on the host (disk_image.py);
paths follow the same rules as the live file tools and never go through symlinks.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import validation
from ..errors import StateError, ValidationError
from ..guest import files as guest_files
from ..guest import paths as guest_paths
from ..guest import tree
from ..hostcmd import mkfs_ext4
from ..hostpaths import NewEntry
from .content import file_content
from .disk_image import DiskImage, parts_of
from .handle import Handle, operation
from .layout import guest_view
from .paths import normalize_workspace_path


@contextlib.contextmanager
def _guest_errors(root: Path) -> Iterator[None]:
    """A refused path is a ValidationError naming /workspace, never the host directory."""
    try:
        yield
    except guest_paths.PathError as exc:
        raise ValidationError(guest_view(str(exc), str(root))) from exc


def _image(ws: Handle) -> bool:
    """/workspace is an ext4 image (every sandbox engine since 3.7), else a directory."""
    return ws.layout.disk.exists()


@operation
def disk_list(ws: Handle, path: str = "/workspace", recursive: bool = False) -> dict[str, Any]:
    guest_path = normalize_workspace_path(path)
    ws.stopped("workspace_disk_list")
    if _image(ws):
        entries = DiskImage(ws.layout.disk).entries(guest_path, recursive)
    else:
        root = ws.layout.volume_dir
        with _guest_errors(root):
            result = guest_files.list_files(_host_path(root, guest_path), recursive, root=str(root))
        entries = [
            {
                "path": _guest_path(root, e["path"]),
                "artifact_type": e["artifact_type"],
                "size_bytes": e["size_bytes"],
                "link_target": e["link_target"],
            }
            for e in result["entries"]
        ]
    return {
        "workspace_id": ws.id,
        "path": guest_path,
        "recursive": bool(recursive),
        "entries": entries,
    }


@operation
def disk_read(
    ws: Handle, path: str, max_bytes: int = 65536, encoding: str = "utf-8"
) -> dict[str, Any]:
    limit = max_bytes
    how = validation.file_encoding(encoding)
    guest_path = normalize_workspace_path(path)
    ws.stopped("workspace_disk_read")
    if _image(ws):
        image = DiskImage(ws.layout.disk)
        entry = image.lookup(parts_of(guest_path))
        if entry.kind != "file":
            raise ValidationError("workspace file read only supports regular files")
        data = image.read(entry, limit + 1)
        size = entry.size
    else:
        root = ws.layout.volume_dir
        with _guest_errors(root):
            result = guest_files.read_file(_host_path(root, guest_path), limit, root=str(root))
        data, size = result["content_bytes"], result["size_bytes"]
    truncated = len(data) > limit or size > limit
    return {
        "workspace_id": ws.id,
        "path": guest_path,
        "size_bytes": size,
        "max_bytes": limit,
        "truncated": truncated,
        **file_content(data[:limit], truncated, how, ws.redact),
    }


@operation
def disk_export(ws: Handle, output_path: str) -> dict[str, Any]:
    ws.stopped("workspace_disk_export")
    with NewEntry(output_path, "output_path") as entry:
        # Written through our own fd to a file we created in the parent we opened (never
        # a path someone could swap for a symlink), then linked in only if still free.
        fd, partial = tempfile.mkstemp(prefix=f".{entry.name}.", dir=entry.at("."))
        try:
            _write_disk(ws, fd)
            os.link(partial, entry.at())  # fails if the name was taken meanwhile
            size = os.fstat(fd).st_size
        except FileExistsError as exc:
            raise ValidationError(f"output_path already exists: {entry.hp.shown}") from exc
        except (OSError, subprocess.CalledProcessError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise StateError(f"cannot export the workspace disk: {reason}") from exc
        finally:
            os.close(fd)
            Path(partial).unlink(missing_ok=True)
    return {
        "workspace_id": ws.id,
        "output_path": entry.hp.shown,
        "disk_format": "ext4",
        "bytes_written": size,
    }


def _write_disk(ws: Handle, fd: int) -> None:
    written = f"/dev/fd/{fd}"
    layout = ws.layout
    if _image(ws):
        command = ["cp", "--sparse=always", str(layout.disk), written]
    else:  # a gVisor workspace from before 3.7: its /workspace is a host directory
        size = tree.file_bytes(str(layout.volume_dir))
        mib = int(size * 1.3 / 2**20) + 64
        volume = str(layout.volume_dir)
        command = mkfs_ext4(written, "-d", volume, size_mib=mib)
    subprocess.run(command, check=True, capture_output=True, pass_fds=(fd,))


def _host_path(root: Path, guest_path: str) -> str:
    rel = guest_paths.relative(guest_path)
    return str(root / rel) if rel else str(root)


def _guest_path(root: Path, host_path: str) -> str:
    rel = Path(host_path).relative_to(root).as_posix()
    return "/workspace" if rel == "." else f"/workspace/{rel}"
