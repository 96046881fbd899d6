"""Patch apply, host side and pure: parse a unified diff, then compute new file contents.

Nothing here touches a file. The caller reads each target (``plan_patch``'s ``read``), and only
when every file has been computed does it write: in sorted path order, deletes last
(PRODUCT_SPEC §2.8). Application is strict: context and removed lines must match exactly at
the stated line numbers (no fuzz, no offset search), and ``\\ No newline at end of file``
markers are honoured both ways, so a patch that adds or drops the final newline does exactly
that (fixing §7.16 of the published product, which ignores them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypedDict

from ..errors import ValidationError
from .patch_parse import MAX_PATCH_BYTES, FilePatch, Hunk, Status, parse_patch

__all__ = [
    "MAX_PATCH_BYTES",
    "MAX_RESULT_BYTES",
    "FilePatch",
    "Hunk",
    "PatchEntry",
    "PatchReport",
    "PatchSummary",
    "apply_file_patch",
    "parse_patch",
    "plan_patch",
    "split_lines",
    "summarize_patch",
]

MAX_RESULT_BYTES = 1024 * 1024
PlannedChange = tuple[str, str | None, Status]


class PatchSummary(TypedDict):
    total: int
    added: int
    modified: int
    deleted: int


class PatchEntry(TypedDict):
    path: str
    status: Status


class PatchReport(TypedDict):
    changed: bool
    summary: PatchSummary
    entries: list[PatchEntry]


def split_lines(text: str) -> list[str]:
    """Split on ``\\n`` only, keeping it on each line (``str.splitlines`` would also split
    on ``\\r``, form feeds and Unicode separators, which are content here)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _shown(line: str) -> str:
    return repr(line if len(line) <= 60 else line[:57] + "...")


def _mismatch(actual: str, expected: str) -> str:
    if actual.rstrip("\r\n") == expected.rstrip("\r\n"):
        if actual.endswith("\n") and expected.endswith("\n"):
            return "line endings differ (CRLF versus LF)"
        if expected.endswith("\n"):
            return "the file has no newline at its end here, but the patch expects one"
        return (
            "the file has a newline at its end here, but the patch says "
            "'\\ No newline at end of file'"
        )
    return f"the file has {_shown(actual)}, the patch expects {_shown(expected)}"


def _check_hunk(fp: FilePatch, number: int, hunk: Hunk, lines: list[str]) -> None:
    start = hunk.old_index
    where = f"{fp.path}: hunk {number} ({hunk.header}) does not apply"
    if start + hunk.old_count > len(lines):
        raise ValidationError(
            f"{where}: it needs lines {start + 1}-{start + hunk.old_count} "
            f"but the file has {len(lines)} lines{_applied_hint(hunk, lines)}"
        )
    for offset, expected in enumerate(hunk.old_lines):
        actual = lines[start + offset]
        if actual != expected:
            raise ValidationError(
                f"{where}: line {start + offset + 1}: {_mismatch(actual, expected)}"
                f"{_applied_hint(hunk, lines)}"
            )


def _applied_hint(hunk: Hunk, lines: list[str]) -> str:
    """A hint when the hunk's *new* side is already in place (the patch ran before)."""
    new_index = hunk.new_start if hunk.new_count == 0 else hunk.new_start - 1
    new_lines = hunk.new_lines
    already = lines[new_index : new_index + len(new_lines)] == new_lines
    if new_lines and new_lines != hunk.old_lines and already:
        return " (this change looks already applied)"
    return ""


def apply_file_patch(fp: FilePatch, current: str | None) -> str | None:
    """Return the new text of ``fp.path`` (None when deleted) given its current text.

    ``current`` is None when the file does not exist. Raises ValidationError when an add
    meets an existing file, a modify or delete meets a missing one, any hunk does not match
    exactly, a delete would leave content behind, or the result exceeds 1 MiB.
    """
    if fp.status == "added":
        if current is not None:
            raise ValidationError(f"{fp.path}: cannot add the file: it already exists")
        current = ""
    elif current is None:
        verb = "modify" if fp.status == "modified" else "delete"
        raise ValidationError(f"{fp.path}: cannot {verb} the file: it does not exist")
    lines = split_lines(current)
    out: list[str] = []
    done = 0
    for number, hunk in enumerate(fp.hunks, 1):
        _check_hunk(fp, number, hunk, lines)
        out += lines[done : hunk.old_index]
        out += hunk.new_lines
        done = hunk.old_index + hunk.old_count
    out += lines[done:]
    if fp.status == "deleted":
        if out:
            raise ValidationError(
                f"{fp.path}: the delete would leave content behind ({len(out)} line(s) "
                "not removed by the patch)"
            )
        return None
    for number, line in enumerate(out[:-1], 1):
        if not line.endswith("\n"):
            raise ValidationError(
                f"{fp.path}: the patch would join line {number} to the next one: a line "
                "without a newline must be the last line of the file"
            )
    result = "".join(out)
    size = len(result.encode("utf-8"))
    if size > MAX_RESULT_BYTES:
        raise ValidationError(
            f"{fp.path}: the patched file would be {size} bytes, over the 1 MiB limit"
        )
    return result


def plan_patch(
    patches: Sequence[FilePatch], read: Callable[[str], str | None]
) -> list[PlannedChange]:
    """Preflight: read every target and compute every result before anything is written.

    ``read(path)`` returns the file's text, None when it does not exist, and raises
    ValidationError for a target that is not a regular UTF-8 file. Returns
    (path, new text or None for a delete, status) sorted by path; writes nothing.
    """
    paths = [fp.path for fp in patches]
    if len(set(paths)) != len(paths):
        raise ValidationError("the patch has more than one entry for the same file")
    planned = [(fp.path, apply_file_patch(fp, read(fp.path)), fp.status) for fp in patches]
    return sorted(planned, key=lambda change: change[0])


def summarize_patch(planned: Iterable[tuple[str, str | None, Status]]) -> PatchReport:
    """``{changed, summary: {total, added, modified, deleted}, entries: [{path, status}]}``."""
    entries: list[PatchEntry] = [
        {"path": path, "status": status}
        for path, _, status in sorted(planned, key=lambda change: change[0])
    ]
    summary: PatchSummary = {
        "total": len(entries),
        "added": sum(e["status"] == "added" for e in entries),
        "modified": sum(e["status"] == "modified" for e in entries),
        "deleted": sum(e["status"] == "deleted" for e in entries),
    }
    return {"changed": bool(entries), "summary": summary, "entries": entries}
