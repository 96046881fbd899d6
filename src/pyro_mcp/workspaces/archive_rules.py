"""Tar member rules: every name and link in an archive is hostile until checked (spec §2.3).

The same rules guard seed, sync push, export and diff. Validation reads tar bytes only; it never
touches the filesystem, so it is safe to run on anything a guest or a user hands us.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections import deque
from dataclasses import dataclass
from typing import IO, Literal

from pyro_mcp.errors import ValidationError
from pyro_mcp.guest.archive import ArchiveError, check_length

ArtifactType = Literal["file", "directory", "symlink"]

MAX_ARCHIVE_BYTES = 256 * 1024 * 1024
"""Largest plain tar built or accepted (after decompression) when the caller names no
limit: archives held in memory. Seeds and sync sources are spooled to a file instead and
bounded by the workspace's disk limit (they stream, any size). Code reads it as
``archive_rules.MAX_ARCHIVE_BYTES`` at call time, so tests can lower it."""

MAX_SYMLINK_HOPS = 40
"""Symlinks followed while checking one link target; more is treated as a loop."""


@dataclass(frozen=True)
class MemberInfo:
    """One validated member. ``path`` is relative and normalised (no ``./``, no trailing ``/``)."""

    path: str
    artifact_type: ArtifactType
    size: int
    """Content bytes of a regular file; 0 for directories and symlinks."""
    mode: int
    """Permission bits (``mode & 0o7777``)."""
    mtime: int
    link_target: str | None
    """Target of a symlink, else None."""


_BAD_CHARACTER = re.compile(r"[\x00-\x1f\x7f\\]")
_ODD_SEGMENT = re.compile(r"(?:^|/)(?:\.\.?)?(?:/|$)")  # an empty, "." or ".." segment


def _bad_characters(text: str) -> str | None:
    found = _BAD_CHARACTER.search(text)
    if found is None:
        return None
    return {"\0": "a NUL byte", "\\": "a backslash"}.get(found.group(), "a control character")


def member_path(name: str) -> str:
    """Normalise a raw member name; ``""`` means the archive root. Raise on anything unsafe."""
    if not name:
        raise ValidationError("archive member with an empty name")
    try:
        check_length(name)
    except ArchiveError as exc:
        raise ValidationError(str(exc)) from None
    bad = _bad_characters(name)
    if bad:
        raise ValidationError(f"archive member {name!r}: name contains {bad}")
    if name.startswith("/"):
        raise ValidationError(f"archive member {name!r}: absolute paths are not allowed")
    if not _ODD_SEGMENT.search(name):
        return name  # the common case, without splitting a long name
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValidationError(f"archive member {name!r}: '..' segments are not allowed")
    return "/".join(parts)


class MemberRules:
    """The rules applied one member at a time, for an archive read as a stream: ``add``
    each member before it is used, ``finish`` once all are in (symlink escapes need them
    all). ``guest_links`` lifts only the symlink-target rule, for trees read from the guest."""

    def __init__(self, *, guest_links: bool = False) -> None:
        self.guest_links = guest_links
        self.kinds: dict[str, ArtifactType] = {}
        self.explicit: set[str] = set()
        self.members: list[MemberInfo] = []

    def add(self, raw: tarfile.TarInfo) -> MemberInfo | None:
        """Check one member; its info (None: the archive root, skipped)."""
        info = _member_info(raw, self.guest_links)
        if info is not None:
            _place(info, self.kinds, self.explicit)
            self.members.append(info)
        return info

    def finish(self) -> list[MemberInfo]:
        if not self.guest_links:
            links = {m.path: m.link_target for m in self.members if m.link_target is not None}
            for member in self.members:
                if member.link_target is not None:
                    _check_link_escape(member.path, member.link_target, links)
        return self.members


def validate_members(tar_bytes: bytes, *, guest_links: bool = False) -> list[MemberInfo]:
    """Check a plain (uncompressed) tar against every safety rule; return its members in order.

    Rejects: absolute names, ``..``, NUL/backslash/control characters, hard links, devices,
    FIFOs and other special members, sparse members, symlinks that are absolute or resolve
    outside the root (following other symlinks in the archive), members under a symlinked or
    file parent, type conflicts, duplicates, truncated data and trailing garbage. The archive
    root entry (``.`` or ``./``) is accepted and skipped. Each error names the member.
    ``guest_links`` lifts only the symlink-target rule, for trees read from the guest
    (a venv's bin/python -> /usr/bin/python3: nothing here follows them on the host, and
    they are only ever restored into the guest).
    """
    if not tar_bytes:
        return []
    return validate_file(io.BytesIO(tar_bytes), len(tar_bytes), guest_links=guest_links)


def validate_file(file: IO[bytes], size: int, *, guest_links: bool = False) -> list[MemberInfo]:
    """:func:`validate_members` of a seekable file of ``size`` bytes, read member by member
    from its start (headers only: contents are skipped, so memory stays small whatever the
    size)."""
    rules = MemberRules(guest_links=guest_links)
    file.seek(0)
    try:
        with tarfile.open(fileobj=file, mode="r:") as tar:
            for raw in tar:  # member by member: a bad one stops the read at once
                _check_data(size, raw)
                rules.add(raw)
                tar.members.clear()  # type: ignore[attr-defined]  # keep no list of members
            end = tar.offset
    except (tarfile.TarError, ValueError, OverflowError, EOFError) as exc:
        if isinstance(exc, ValidationError):
            raise
        raise ValidationError(f"not a valid tar archive: {exc}") from None
    if end > size or not _zeros(file, end):
        raise ValidationError(
            f"archive has unreadable data after byte {end} (corrupt header or trailing garbage)"
        )
    return rules.finish()


def _zeros(file: IO[bytes], start: int) -> bool:
    """Whether everything from ``start`` to the end of ``file`` is zero bytes."""
    file.seek(start)
    while chunk := file.read(1024 * 1024):
        if chunk.count(0) != len(chunk):
            return False
    return True


def _check_data(size: int, raw: tarfile.TarInfo) -> None:
    """tarfile silently stops at a truncated member; we do not."""
    if raw.isreg() and raw.offset_data + raw.size > size:
        raise ValidationError(f"archive member {raw.name!r}: data is truncated")


def _member_info(raw: tarfile.TarInfo, guest_links: bool = False) -> MemberInfo | None:
    path = member_path(raw.name)
    label = f"archive member {path or raw.name!r}"
    kind: ArtifactType
    if raw.islnk():
        raise ValidationError(f"{label}: hard links are not allowed")
    if raw.ischr() or raw.isblk():
        raise ValidationError(f"{label}: device files are not allowed")
    if raw.isfifo():
        raise ValidationError(f"{label}: FIFOs are not allowed")
    if raw.issparse():
        raise ValidationError(f"{label}: sparse files are not supported")
    if raw.isdir():
        kind = "directory"
    elif raw.issym():
        kind = "symlink"
    elif raw.isreg():
        kind = "file"
    else:
        raise ValidationError(f"{label}: special member type {raw.type!r} is not allowed")
    if not path:
        if kind == "directory":
            return None
        raise ValidationError(f"{label}: the archive root must be a directory")
    target = None
    if kind == "symlink":
        target = raw.linkname
        if not target:
            raise ValidationError(f"{label}: symlink has an empty target")
        bad = _bad_characters(target)
        if bad:
            raise ValidationError(f"{label}: symlink target contains {bad}")
        if target.startswith("/") and not guest_links:
            raise ValidationError(f"{label}: symlink target {target!r} is absolute")
    return MemberInfo(
        path=path,
        artifact_type=kind,
        size=raw.size if kind == "file" else 0,
        mode=raw.mode & 0o7777,
        mtime=int(raw.mtime),
        link_target=target,
    )


def _place(info: MemberInfo, kinds: dict[str, ArtifactType], explicit: set[str]) -> None:
    """Record ``info`` in the virtual tree; refuse symlinked/file parents, conflicts, duplicates."""
    label = f"archive member {info.path!r}"
    # Every path in ``kinds`` has all its ancestors there as directories, so only the
    # nearest known ancestor needs a look: linear in the members, whatever the depth.
    implied = []
    parent = info.path.rpartition("/")[0]
    while parent and parent not in kinds:
        implied.append(parent)
        parent = parent.rpartition("/")[0]
    parent_kind = kinds.get(parent) if parent else None
    if parent_kind == "symlink":
        raise ValidationError(
            f"{label}: parent {parent!r} is a symlink; "
            "members may not be extracted through a symlinked parent"
        )
    if parent_kind == "file":
        raise ValidationError(f"{label}: parent {parent!r} is a regular file")
    for directory in implied:
        kinds[directory] = "directory"
    existing = kinds.get(info.path)
    if existing is not None and existing != info.artifact_type:
        raise ValidationError(
            f"{label}: type conflict, it is a {info.artifact_type} but earlier members "
            f"make it a {existing}"
        )
    if info.path in explicit:
        raise ValidationError(f"{label}: appears more than once")
    kinds[info.path] = info.artifact_type
    explicit.add(info.path)


def _check_link_escape(path: str, target: str, links: dict[str, str]) -> None:
    """Resolve ``target`` from the link's directory, following archive symlinks; stay inside."""
    resolved = path.split("/")[:-1]
    pending = deque(target.split("/"))
    hops = 0
    while pending:
        part = pending.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                raise ValidationError(
                    f"archive member {path!r}: symlink target {target!r} escapes the archive root"
                )
            resolved.pop()
            continue
        resolved.append(part)
        nested = links.get("/".join(resolved))
        if nested is not None:
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise ValidationError(
                    f"archive member {path!r}: symlink target {target!r} loops or chains "
                    f"through more than {MAX_SYMLINK_HOPS} symlinks"
                )
            resolved.pop()
            pending.extendleft(reversed(nested.split("/")))
