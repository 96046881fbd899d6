"""Host-side archives: seed/sync sources, seed tarballs, export unpacking (§2.3, §2.6, §2.9).

Every path that comes from an archive or a user is hostile until checked. The member rules
(and the size limit) live in :mod:`.archive_rules`, directory packing in :mod:`.archive_pack`;
both are re-exported here, so this module is the one to import.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pyro_mcp.errors import NotFoundError, StateError, ValidationError
from pyro_mcp.guest import archive as guest_archive
from pyro_mcp.guest.tree import remove_tree
from pyro_mcp.workspaces import archive_rules
from pyro_mcp.workspaces.archive_pack import pack_directory, too_big
from pyro_mcp.workspaces.archive_rules import (
    MAX_ARCHIVE_BYTES,
    ArtifactType,
    MemberInfo,
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
    """A validated plain tar ready for ``/workspace``, with the payload fields of §2.3."""

    tar_bytes: bytes
    mode: Literal["directory", "tar_archive"]
    seed_path: str
    entry_count: int
    bytes_written: int


def _is_archive_name(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _load(path: Path) -> tuple[bytes, list[MemberInfo]]:
    if not _is_archive_name(path):
        raise ValidationError(f"{path} is not a .tar/.tar.gz/.tgz archive")
    compressed = not path.name.lower().endswith(".tar")
    limit = archive_rules.MAX_ARCHIVE_BYTES
    try:
        with open(path, "rb") as raw:
            if compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                    data = unzipped.read(limit + 1)
            else:
                data = raw.read(limit + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValidationError(f"cannot read archive {path}: {exc}") from None
    if len(data) > limit:
        raise too_big(f"archive {path} (decompressed)")
    return data, validate_members(data)


def load_archive(path: Path) -> bytes:
    """Read a ``.tar``/``.tar.gz``/``.tgz`` file as validated plain tar bytes (bounded)."""
    return _load(Path(path))[0]


def seed_archive(seed_path: str | Path, *, label: str = "seed_path") -> SeedArchive:
    """Turn a seed (or sync source) path into validated tar bytes. ``label`` names the argument."""
    path = Path(seed_path)
    if not path.exists():
        raise NotFoundError(f"{label} {path} does not exist")
    resolved = str(path.resolve())
    if path.is_dir():
        data, count, written = pack_directory(path)
        return SeedArchive(data, "directory", resolved, count, written)
    if path.is_file() and _is_archive_name(path):
        data, members = _load(path)
        written = sum(m.size for m in members)
        return SeedArchive(data, "tar_archive", resolved, len(members), written)
    raise ValidationError(f"{label} must be a directory or a .tar/.tar.gz/.tgz archive")


def _export_kind(members: list[MemberInfo], requested: ArtifactType | None) -> ArtifactType:
    single = members[0] if len(members) == 1 and "/" not in members[0].path else None
    if requested is None:
        if single is not None and single.artifact_type != "directory":
            return single.artifact_type
        return "directory"
    if requested != "directory" and (single is None or single.artifact_type != requested):
        raise ValidationError(f"export archive does not hold a single top-level {requested}")
    return requested


def _publish(source: Path, output_path: Path, kind: ArtifactType) -> None:
    """Move the staged result to ``output_path`` without replacing anything already there."""
    if kind != "directory":
        try:
            os.link(source, output_path, follow_symlinks=False)  # fails if output_path exists
            return
        except FileExistsError:
            raise ValidationError(f"output_path already exists: {output_path}") from None
        except OSError:
            pass  # no hard links on this filesystem: fall back to a checked rename
    if os.path.lexists(output_path):
        raise ValidationError(f"output_path already exists: {output_path}")
    os.rename(source, output_path)


def extract_export(
    tar_bytes: bytes, output_path: Path, *, artifact_type: ArtifactType | None = None
) -> dict[str, Any]:
    """Unpack an export tar at exactly ``output_path``, atomically (spec §2.9).

    A single top-level file or symlink becomes that file or symlink; otherwise the members are
    the children of a new directory. Pass ``artifact_type`` (the guest knows it) to remove the
    ambiguity of a directory that holds one file. Extraction is the guest agent's checked
    unpacking (directory fds, never through a symlink, any depth, no group/other write bits)
    in a temporary sibling directory, renamed into place, so a failure leaves nothing behind.
    Returns ``{artifact_type, entry_count, bytes_written}``.
    """
    output_path = Path(output_path)
    if os.path.lexists(output_path):
        raise ValidationError(f"output_path already exists: {output_path}")
    members = validate_members(tar_bytes)
    kind = _export_kind(members, artifact_type)
    created: list[Path] = []  # parent directories we made, deepest first
    staging: Path | None = None
    try:
        probe = output_path.parent
        while not os.path.lexists(probe) and probe != probe.parent:
            created.append(probe)
            probe = probe.parent
        output_path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{output_path.name}.", dir=output_path.parent))
        tree = staging / "tree"
        tree.mkdir()
        try:
            guest_archive.unpack(str(tree), tar_bytes, root=str(tree), mode_mask=0o755)
        except ValueError as exc:
            raise ValidationError(f"export archive rejected: {exc}") from None
        _publish(tree if kind == "directory" else tree / members[0].path, output_path, kind)
        created.clear()
    except OSError as exc:
        raise StateError(f"export to {output_path} failed: {exc}") from None
    finally:
        if staging is not None:
            with contextlib.suppress(OSError):
                remove_tree(str(staging))
        for directory in created:
            try:
                directory.rmdir()
            except OSError:
                break
    return {
        "artifact_type": kind,
        "entry_count": len(members),
        "bytes_written": sum(m.size for m in members),
    }
