"""Host-side archives: seed/sync sources, seed tarballs, export unpacking (§2.3, §2.6, §2.9).

Every path that comes from an archive or a user is hostile until checked. The member rules
(and the size limit) live in :mod:`.archive_rules`, directory packing in :mod:`.archive_pack`;
both are re-exported here, so this module is the one to import.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from pyro_mcp import hostpaths
from pyro_mcp.engines.agent_client import Readable
from pyro_mcp.errors import StateError, ValidationError
from pyro_mcp.guest import archive as guest_archive
from pyro_mcp.guest.chunks import CHUNK_BYTES
from pyro_mcp.guest.tree import remove_tree
from pyro_mcp.hostpaths import HostPath, NewEntry
from pyro_mcp.workspaces import archive_rules
from pyro_mcp.workspaces.archive_pack import pack_directory, pack_directory_to, too_big
from pyro_mcp.workspaces.archive_rules import (
    MAX_ARCHIVE_BYTES,
    ArtifactType,
    MemberInfo,
    MemberRules,
    member_path,
    validate_members,
)

__all__ = [
    "ARCHIVE_SUFFIXES",
    "MAX_ARCHIVE_BYTES",
    "ArtifactType",
    "MemberInfo",
    "SeedArchive",
    "extract_export",
    "load_archive",
    "member_path",
    "pack_directory",
    "seed_archive",
    "validate_members",
]

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


@dataclass(frozen=True)
class SeedArchive:
    """A validated plain tar ready for ``/workspace``, with the payload fields of §2.3.

    The tar is in ``file``, a private temporary file (at offset 0, ``size`` bytes), never
    in memory: pass ``file`` on as a stream, and close the archive when done."""

    file: IO[bytes]
    size: int
    mode: Literal["directory", "tar_archive"]
    seed_path: str
    entry_count: int
    bytes_written: int

    @property
    def tar_bytes(self) -> bytes:
        """The whole tar in memory (only for small archives)."""
        self.file.seek(0)
        data = self.file.read()
        self.file.seek(0)
        return data

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> SeedArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_archive_name(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _load(
    path: Path, out: IO[bytes], fd: int | None = None, limit: int | None = None
) -> list[MemberInfo]:
    """Copy an archive (``fd``: already opened, and closed here; ``path`` names it) as
    plain tar into the new file ``out``, at most ``limit`` bytes decompressed (default
    :data:`MAX_ARCHIVE_BYTES`), and check it; its members. ``out`` is left at offset 0."""
    if not _is_archive_name(path):
        if fd is not None:
            os.close(fd)
        raise ValidationError(f"{path} is not a .tar/.tar.gz/.tgz archive")
    compressed = not path.name.lower().endswith(".tar")
    limit = archive_rules.MAX_ARCHIVE_BYTES if limit is None else limit
    try:
        with open(path if fd is None else fd, "rb") as raw:
            if compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                    size = _copy(unzipped, out, limit + 1)
            else:
                size = _copy(raw, out, limit + 1)
    except (OSError, EOFError, zlib.error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ValidationError(f"cannot read archive {path}: {reason}") from None
    if size > limit:
        raise too_big(f"archive {path} (decompressed)", limit)
    out.seek(0)
    members = archive_rules.validate_file(out, size)
    out.seek(0)
    return members


def _copy(source: Readable, out: IO[bytes], most: int) -> int:
    """Copy at most ``most`` bytes in chunks of 1 MiB; the count copied."""
    copied = 0
    while copied < most and (chunk := source.read(min(CHUNK_BYTES, most - copied))):
        out.write(chunk)
        copied += len(chunk)
    return copied


def load_archive(path: Path) -> bytes:
    """Read a ``.tar``/``.tar.gz``/``.tgz`` file as validated plain tar bytes (bounded)."""
    out = io.BytesIO()
    _load(Path(path), out)
    return out.getvalue()


def seed_archive(
    seed_path: str | Path | HostPath,
    *,
    label: str = "seed_path",
    limit: int | None = None,
    spool_dir: Path | None = None,
) -> SeedArchive:
    """Turn a seed (or sync source) path into a validated tar in a private temporary file
    (in ``spool_dir``), at most ``limit`` bytes (the disk limit of the workspace it is
    for; default :data:`MAX_ARCHIVE_BYTES`). ``label`` names the argument.

    The source is opened through :mod:`pyro_mcp.hostpaths` (over MCP: inside the operator's
    roots) and read from that fd, so what is read is what was checked.
    """
    fd, is_dir, shown = hostpaths.open_source(hostpaths.resolve(seed_path, label), label)
    if not is_dir and not _is_archive_name(Path(shown)):
        os.close(fd)
        raise ValidationError(f"{label} must be a directory or a .tar/.tar.gz/.tgz archive")
    spool = tempfile.TemporaryFile(dir=spool_dir)  # noqa: SIM115 (handed on, closed by its owner)
    try:
        if is_dir:
            count, written = pack_directory_to(Path(shown), spool, fd=fd, limit=limit)
            size = spool.seek(0, os.SEEK_END)
            spool.seek(0)
            return SeedArchive(spool, size, "directory", shown, count, written)
        members = _load(Path(shown), spool, fd, limit)
        size = spool.seek(0, os.SEEK_END)
        spool.seek(0)
        written = sum(m.size for m in members)
        return SeedArchive(spool, size, "tar_archive", shown, len(members), written)
    except BaseException:
        spool.close()
        raise


def _export_kind(members: list[MemberInfo], requested: ArtifactType | None) -> ArtifactType:
    single = members[0] if len(members) == 1 and "/" not in members[0].path else None
    if requested is None:
        if single is not None and single.artifact_type != "directory":
            return single.artifact_type
        return "directory"
    if requested != "directory" and (single is None or single.artifact_type != requested):
        raise ValidationError(f"export archive does not hold a single top-level {requested}")
    return requested


def _publish(entry: NewEntry, source: str, kind: ArtifactType) -> None:
    """Move the staged result into place without replacing anything already there."""
    if kind != "directory":
        try:
            os.link(source, entry.at(), follow_symlinks=False)  # fails if the name is taken
            return
        except FileExistsError:
            raise ValidationError(f"output_path already exists: {entry.hp.shown}") from None
        except OSError:
            pass  # no hard links on this filesystem: fall back to a checked rename
    entry.check_free()
    os.rename(source, entry.at())


def extract_export(
    source: bytes | Readable,
    output_path: str | Path | HostPath,
    *,
    artifact_type: ArtifactType | Callable[[], ArtifactType | None] | None = None,
) -> dict[str, Any]:
    """Unpack an export tar at exactly ``output_path``, atomically (spec §2.9).

    ``source``: the tar's bytes, or a readable file read once as a stream (memory stays
    bounded whatever its size): each member is checked by the host's rules and the agent's
    before it is written, symlink escapes once all are in. A single top-level file or
    symlink becomes that file or symlink; otherwise the members are the children of a new
    directory. Pass ``artifact_type`` (the guest knows it) to remove the ambiguity of a
    directory that holds one file (or a function that tells it once the archive is read:
    a stream's description comes after its data). Extraction is the guest agent's checked unpacking
    (directory fds, never through a symlink, any depth, no setuid/setgid and no group/other
    write bits) in a temporary sibling directory and is moved into place, so a failure
    leaves nothing behind. The parent is reached through :class:`hostpaths.NewEntry`:
    never through a symlink, missing parents made only below its base. Returns
    ``{artifact_type, entry_count, bytes_written}``.
    """
    if isinstance(source, bytes):
        validate_members(source)  # whole: truncation and trailing garbage too
    rules = MemberRules()
    with NewEntry(output_path, "output_path") as entry:
        staging: str | None = None
        try:
            made = tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.at("."))
            staging = os.path.normpath(made)  # the agent's unpacking compares plain paths
            tree = os.path.join(staging, "tree")
            os.mkdir(tree, 0o700)
            stream = io.BytesIO(source) if isinstance(source, bytes) else source
            try:
                guest_archive.unpack(tree, stream, root=tree, mode_mask=0o755, check=rules.add)
            except ValidationError:
                raise
            except ValueError as exc:
                raise ValidationError(f"export archive rejected: {exc}") from None
            members = rules.finish()
            requested = artifact_type() if callable(artifact_type) else artifact_type
            kind = _export_kind(members, requested)
            source_path = tree if kind == "directory" else os.path.join(tree, members[0].path)
            _publish(entry, source_path, kind)
        except OSError as exc:
            reason = exc.strerror or exc
            raise StateError(f"export to {entry.hp.shown} failed: {reason}") from None
        finally:
            if staging is not None:
                with contextlib.suppress(OSError):
                    remove_tree(staging)
    return {
        "artifact_type": kind,
        "entry_count": len(members),
        "bytes_written": sum(m.size for m in members),
    }
