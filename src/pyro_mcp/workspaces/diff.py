"""Workspace diff: compare two tars as streams, without extracting anything (spec §2.10).

Improvement over the reference (§7.15): a permission change of a regular file (e.g. ``+x``)
is reported as ``modified`` with an extra ``mode_change: "100644 -> 100755"`` field.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import tarfile
from dataclasses import dataclass, replace
from typing import IO, Any, Literal, cast

from pyro_mcp.engines.agent_client import Readable
from pyro_mcp.errors import ValidationError
from pyro_mcp.guest.chunks import CHUNK_BYTES
from pyro_mcp.workspaces.archive_rules import ArtifactType, MemberInfo, MemberRules
from pyro_mcp.workspaces.bounds import head_tail, next_offset, take_page
from pyro_mcp.workspaces.patch import split_lines

MAX_PATCH_BYTES = 1024 * 1024
"""The joined ``patch`` (and any single ``text_patch``) is cut at this size."""

CONTEXT_LINES = 3
_NO_NEWLINE = "\\ No newline at end of file\n"


EMPTY_TAR = bytes(2 * tarfile.BLOCKSIZE)
TEXT_LIMIT = 4 * 1024 * 1024
"""Files larger than this are compared by content hash alone: no text patch."""
TEXT_BUDGET = 64 * 1024 * 1024
"""Changed text kept for patches in one diff; files past it are compared by hash alone."""


@dataclass(frozen=True)
class _Node:
    kind: ArtifactType
    mode: int = 0
    digest: bytes = b""
    data: bytes | None = None
    """The content, kept only while it may need a text patch (small, no NUL byte)."""
    offset: int = -1
    """Where the content starts in a seekable tar (read again when a patch needs it)."""
    size: int = 0
    target: str | None = None


class _Tree:
    """A tar's members by path, read once as a stream, contents hashed (never held whole);
    implied parent directories added."""

    def __init__(self, source: IO[bytes] | Readable, seekable: bool) -> None:
        self.source = source
        self.seekable = seekable
        self.nodes: dict[str, _Node] = {}
        self.kept = 0  # bytes of content kept for patches

    def read(self, old: _Tree | None = None) -> _Tree:
        """Read the tar; ``old``: the other side, whose unchanged contents are not kept."""
        rules = MemberRules(guest_links=True)
        mode: Literal["r:", "r|"] = "r:" if self.seekable else "r|"
        try:
            with tarfile.open(fileobj=cast(IO[bytes], self.source), mode=mode) as tar:
                while (raw := tar.next()) is not None:
                    tar.members.clear()  # type: ignore[attr-defined]  # a stream: keep none
                    info = rules.add(raw)
                    if info is not None:
                        self._add(tar, raw, info, old)
        except (tarfile.TarError, ValueError, OverflowError, EOFError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(f"not a valid tar archive: {exc}") from None
        rules.finish()
        return self

    def _add(
        self, tar: tarfile.TarFile, raw: tarfile.TarInfo, info: MemberInfo, old: _Tree | None
    ) -> None:
        node = _Node(info.artifact_type, info.mode, target=info.link_target)
        if info.artifact_type == "file":
            digest, data = _hash(tar, raw, keep=raw.size <= TEXT_LIMIT and not self.seekable)
            before = old.nodes.get(info.path) if old is not None else None
            if before is not None and before.digest == digest:
                data = None  # unchanged: no patch will need it
            elif data is not None and self.kept + len(data) > TEXT_BUDGET:
                data = None  # past the budget: compared by hash alone
            self.kept += len(data or b"")
            offset = raw.offset_data if self.seekable else -1
            node = replace(node, digest=digest, data=data, offset=offset, size=raw.size)
        self.nodes[info.path] = node
        parts = info.path.split("/")
        for depth in range(1, len(parts)):
            self.nodes.setdefault("/".join(parts[:depth]), _Node("directory"))

    def content(self, node: _Node) -> bytes | None:
        """A file's content when it may be text (None: too large, or unknown)."""
        if node.data is not None or node.offset < 0 or node.size > TEXT_LIMIT:
            return node.data
        file = cast(IO[bytes], self.source)
        file.seek(node.offset)
        return file.read(node.size)


def _hash(tar: tarfile.TarFile, raw: tarfile.TarInfo, keep: bool) -> tuple[bytes, bytes | None]:
    """The sha256 of a member's content, read in chunks, and the content itself when
    ``keep`` and it has no NUL byte (so it may be text)."""
    digest = hashlib.sha256()
    kept: list[bytes] | None = [] if keep else None
    handle = tar.extractfile(raw)
    if handle is None:
        return digest.digest(), b"" if keep else None
    while chunk := handle.read(CHUNK_BYTES):
        digest.update(chunk)
        if kept is not None and b"\0" in chunk:
            kept = None  # not text: only its hash counts
        elif kept is not None:
            kept.append(chunk)
    return digest.digest(), None if kept is None else b"".join(kept)


def _non_empty_dirs(tree: dict[str, _Node]) -> set[str]:
    return {path.rpartition("/")[0] for path in tree if "/" in path}


def _text(data: bytes | None) -> str | None:
    if data is None or b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _unified(path: str, old: str | None, new: str | None) -> str | None:
    """A unified diff of one file (None side = absent), or None when there are no hunks."""
    old_label = f"a/{path}" if old is not None else "/dev/null"
    new_label = f"b/{path}" if new is not None else "/dev/null"
    out: list[str] = []
    for line in difflib.unified_diff(
        split_lines(old or ""),
        split_lines(new or ""),
        fromfile=old_label,
        tofile=new_label,
        n=CONTEXT_LINES,
    ):
        out.append(line if line.endswith("\n") else f"{line}\n{_NO_NEWLINE}")
    return "".join(out) or None


def _bounded(text: str) -> tuple[str, bool]:
    """Cut ``text`` to at most MAX_PATCH_BYTES of UTF-8, at a line end when possible."""
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) <= MAX_PATCH_BYTES:
        return text, False
    cut = raw[:MAX_PATCH_BYTES]
    newline = cut.rfind(b"\n")
    if newline >= 0:
        cut = cut[: newline + 1]
    return cut.decode("utf-8", "ignore"), True


def _mode_label(mode: int) -> str:
    return f"{0o100000 | mode:06o}"


def _compare(
    path: str, old: _Node | None, new: _Node | None, sides: tuple[_Tree, _Tree]
) -> dict[str, Any] | None:
    """The entry for one path (at least one side present), or None when unchanged."""
    if old is None or new is None:
        node = new or old
        assert node is not None
        status = "added" if old is None else "deleted"
        entry: dict[str, Any] = {"path": path, "status": status, "artifact_type": node.kind}
        entry["text_patch"] = None
        if node.kind == "file":
            text = _text(sides[old is None].content(node))
            entry["_non_text"] = text is None
            if text is not None:
                pair = (None, text) if old is None else (text, None)
                entry["text_patch"] = _unified(path, *pair)
        return entry
    if old.kind != new.kind:
        return {
            "path": path,
            "status": "type_changed",
            "artifact_type": new.kind,
            "text_patch": None,
        }
    if new.kind == "directory":
        return None
    if new.kind == "symlink":
        if old.target == new.target:
            return None
        return {"path": path, "status": "modified", "artifact_type": "symlink", "text_patch": None}
    if old.digest == new.digest and old.mode == new.mode:
        return None
    entry = {"path": path, "status": "modified", "artifact_type": "file", "text_patch": None}
    if old.digest != new.digest:
        old_text, new_text = _text(sides[0].content(old)), _text(sides[1].content(new))
        entry["_non_text"] = old_text is None or new_text is None
        if old_text is not None and new_text is not None:
            entry["text_patch"] = _unified(path, old_text, new_text)
    if old.mode != new.mode:
        entry["mode_change"] = f"{_mode_label(old.mode)} -> {_mode_label(new.mode)}"
    return entry


def diff_trees(baseline: bytes | IO[bytes], current: bytes | Readable) -> dict[str, Any]:
    """Compare two plain tars as §2.10 describes: ``baseline`` a seekable file (or bytes),
    ``current`` read once as a stream (or bytes). Every member is checked as it is read,
    contents are hashed in chunks, and only small text that changed is kept for its patch,
    so memory stays bounded whatever the trees' size.

    Returns ``{changed, summary:{total, added, modified, deleted, type_changed, text_patched,
    non_text}, entries:[{path, status, artifact_type, text_patch, [mode_change]}], patch,
    patch_truncated}``. Entries are sorted by path; directories appear only when they are
    empty on the side that has them (plus type changes).
    """
    old_file = io.BytesIO(baseline or EMPTY_TAR) if isinstance(baseline, bytes) else baseline
    olds = _Tree(old_file, seekable=True).read()
    new_file = io.BytesIO(current or EMPTY_TAR) if isinstance(current, bytes) else current
    news = _Tree(new_file, seekable=False).read(olds)
    old_tree, new_tree = olds.nodes, news.nodes
    old_parents, new_parents = _non_empty_dirs(old_tree), _non_empty_dirs(new_tree)
    entries: list[dict[str, Any]] = []
    non_text = 0
    for path in sorted(old_tree.keys() | new_tree.keys()):
        old, new = old_tree.get(path), new_tree.get(path)
        if old is None and new is not None and new.kind == "directory" and path in new_parents:
            continue
        if new is None and old is not None and old.kind == "directory" and path in old_parents:
            continue
        entry = _compare(path, old, new, (olds, news))
        if entry is None:
            continue
        non_text += bool(entry.pop("_non_text", False))
        if entry["text_patch"] is not None:
            entry["text_patch"], truncated = _bounded(entry["text_patch"])
            if truncated:
                entry["patch_truncated"] = True
        entries.append(entry)
    patch, patch_truncated = _bounded("".join(e["text_patch"] or "" for e in entries))
    summary = {"total": len(entries)}
    for status in ("added", "modified", "deleted", "type_changed"):
        summary[status] = sum(1 for e in entries if e["status"] == status)
    summary["text_patched"] = sum(1 for e in entries if e["text_patch"] is not None)
    summary["non_text"] = non_text
    return {
        "changed": bool(entries),
        "summary": summary,
        "entries": entries,
        "patch": patch,
        "patch_truncated": patch_truncated,
    }


def page_diff(
    result: dict[str, Any], offset: int, limit: int | None, budget: int | None
) -> dict[str, Any]:
    """``result`` whole when neither ``limit`` nor ``budget`` asks for a page; else the
    entries from ``offset`` (at most ``limit``, within ``budget``: a long text_patch is cut
    in the middle, marked) with ``offset``/``next_offset``, and ``patch`` left empty
    (``patch_omitted``): the page's entries carry their own text_patch, nothing twice."""
    if limit is None and budget is None and offset == 0:
        return result
    each = None if budget is None else max(budget // 2, 512)
    entries = (_cut_patch(entry, each) for entry in result["entries"][offset:])
    page = take_page(entries, limit, budget and budget - 1024)
    return {
        **result,
        "entries": page,
        "patch": "",
        "patch_truncated": False,
        "patch_omitted": True,
        "offset": offset,
        "next_offset": next_offset(offset, len(page), len(result["entries"])),
    }


def _cut_patch(entry: dict[str, Any], budget: int | None) -> dict[str, Any]:
    if entry["text_patch"] is None or budget is None:
        return entry
    where = "the whole patch: workspace diff with a larger max_result_bytes"
    text, cut = head_tail(entry["text_patch"], budget, where)
    return {**entry, "text_patch": text, "patch_truncated": True} if cut else entry
