"""A strict unified-diff parser for ``workspace patch apply`` (PRODUCT_SPEC §2.8).

Hand-written on purpose: the contract asks us to *reject* a long list of things (mode lines,
renames, binary patches, stray lines, wrong hunk counts …) that permissive parsers such as
``unidiff`` keep as header noise, so we would have to re-scan the raw text anyway. The grammar
is small, and parsing it ourselves keeps every rule, and every error message, in one place.

Lines are split on ``\\n`` only; a ``\\r`` before it is file content (CRLF files patch exactly).
Header lines (``diff``, ``---``, ``+++``, ``@@``) may end in a stray ``\\r``, which is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..errors import ValidationError
from .paths import normalize_workspace_path

MAX_PATCH_BYTES = 1024 * 1024
Status = Literal["added", "modified", "deleted"]

_HUNK_HEADER = re.compile(r"@@ -(\d{1,9})(?:,(\d{1,9}))? \+(\d{1,9})(?:,(\d{1,9}))? @@(?: .*)?")
_MODE_LINES = ("old mode ", "new mode ", "new file mode ", "deleted file mode ")
_RENAME_LINES = (
    "rename from ",
    "rename to ",
    "copy from ",
    "copy to ",
    "similarity index ",
    "dissimilarity index ",
)
_BINARY_LINES = ("GIT binary patch", "Binary files ")
_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


@dataclass(frozen=True, slots=True)
class Hunk:
    """One ``@@`` block. ``lines`` are (tag, text) with tag in ' -+' and the text carrying its
    own line ending, so a line before a ``\\ No newline at end of file`` marker has none."""

    header: str
    old_start: int
    old_count: int
    new_start: int
    new_count: int
    lines: tuple[tuple[str, str], ...]

    @property
    def old_index(self) -> int:
        """0-based index of the first old line (an empty range sits *after* ``old_start``)."""
        return self.old_start if self.old_count == 0 else self.old_start - 1

    @property
    def old_lines(self) -> list[str]:
        return [text for tag, text in self.lines if tag != "+"]

    @property
    def new_lines(self) -> list[str]:
        return [text for tag, text in self.lines if tag != "-"]


@dataclass(frozen=True, slots=True)
class FilePatch:
    """Every change the patch makes to one file; ``path`` is an absolute guest path."""

    path: str
    status: Status
    hunks: tuple[Hunk, ...]


def _fail(where: str | None, message: str) -> ValidationError:
    return ValidationError(f"patch for {where}: {message}" if where else f"patch: {message}")


def _unquote(value: str, line_no: int) -> tuple[str, str]:
    """Decode a git C-quoted name (``"a/caf\\303\\251.txt"``); return (name, rest of line)."""
    out = bytearray()
    i = 1
    while i < len(value):
        char = value[i]
        if char == '"':
            try:
                return out.decode("utf-8"), value[i + 1 :]
            except UnicodeDecodeError:
                break
        if char != "\\":
            out += char.encode("utf-8")
            i += 1
            continue
        octal = re.match(r"[0-7]{1,3}", value[i + 1 : i + 4])
        if octal and int(octal.group(), 8) < 256:
            out.append(int(octal.group(), 8))
            i += 1 + len(octal.group())
        elif value[i + 1 : i + 2] in _ESCAPES:
            out.append(_ESCAPES[value[i + 1]])
            i += 2
        else:
            break
    raise ValidationError(f"patch line {line_no}: malformed quoted file name {value!r}")


def _header_path(line: str, line_no: int, prefix: str) -> str | None:
    """The path of a ``---``/``+++`` line with its ``a/``/``b/`` prefix stripped; None for
    /dev/null. A tab ends the name (``diff -u`` puts a timestamp after it)."""
    value = line[4:]
    if value.startswith('"'):
        name, rest = _unquote(value, line_no)
        if rest and not rest.startswith("\t"):
            raise ValidationError(f"patch line {line_no}: malformed file header {line!r}")
    elif "\t" in value:
        name = value.split("\t", 1)[0]
    else:
        name = value.rstrip(" ")
    if name == "/dev/null":
        return None
    if name.startswith(prefix):
        name = name[len(prefix) :]
    if not name.strip():
        raise ValidationError(f"patch line {line_no}: file header {line!r} names no file")
    return name


def _guest_path(name: str, line_no: int) -> str:
    try:
        return normalize_workspace_path(name, allow_root=False)
    except ValidationError as exc:
        raise ValidationError(f"patch line {line_no}: {name!r}: {exc}") from None


def _git_name(line: str) -> str:
    """A readable name for a ``diff --git a/X b/X`` section, for error messages only."""
    rest = line.split(" ", 2)[-1]
    if rest.startswith('"'):
        try:
            return _unquote(rest, 0)[0].removeprefix("a/")
        except ValidationError:
            return rest
    old, sep, new = rest.partition(" b/")
    if sep and old.startswith("a/") and old[2:] == new:
        return new
    return rest


class _Parser:
    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        if self.lines[-1] == "":
            self.lines.pop()
        self.i = 0

    def header(self, i: int) -> str:
        return self.lines[i].removesuffix("\r")

    def run(self) -> list[FilePatch]:
        patches: list[FilePatch] = []
        seen: set[str] = set()
        section: tuple[str, int] | None = None  # (name, line number) of a pending `diff` line
        while self.i < len(self.lines):
            line, no = self.header(self.i), self.i + 1
            where = section[0] if section else None
            if line.startswith("diff "):
                if section:
                    raise _fail(section[0], f"section at line {section[1]} has no ---/+++ headers")
                section = (_git_name(line), no)
            elif line.startswith("--- "):
                patch = self.file_section()
                if patch.path in seen:
                    raise _fail(patch.path, "the patch has more than one entry for this file")
                seen.add(patch.path)
                patches.append(patch)
                section = None
                continue
            elif line.startswith(_MODE_LINES):
                raise _fail(
                    where,
                    f"file mode lines are not supported ({line!r} at line {no}); remove it "
                    "(an added file is '--- /dev/null', a deleted one '+++ /dev/null')",
                )
            elif line.startswith(_RENAME_LINES):
                raise _fail(where, f"renames and copies are not supported ({line!r}, line {no})")
            elif line.startswith(_BINARY_LINES):
                raise _fail(where, f"binary patches are not supported (line {no})")
            elif line.startswith("+++ "):
                raise _fail(where, f"'+++' header without a '---' header before it (line {no})")
            elif line.startswith("@@"):
                raise _fail(where, f"hunk outside a file section (line {no})")
            elif line[:1] in ("+", "-", " ") and patches and section is None:
                raise _fail(
                    patches[-1].path,
                    f"line {no} is past the end of the last hunk: the hunk has more lines "
                    "than its header says",
                )
            elif line and not line.startswith("index "):
                raise ValidationError(f"patch line {no}: unexpected line {line[:80]!r}")
            self.i += 1
        if section:
            raise _fail(section[0], f"section at line {section[1]} has no ---/+++ headers")
        if not patches:
            raise ValidationError("patch contains no file changes")
        return patches

    def file_section(self) -> FilePatch:
        no = self.i + 1
        old = _header_path(self.header(self.i), no, "a/")
        if no >= len(self.lines) or not self.header(no).startswith("+++ "):
            raise _fail(old or "/dev/null", f"missing '+++' header after line {no}")
        new = _header_path(self.header(no), no + 1, "b/")
        old_path = None if old is None else _guest_path(old, no)
        new_path = None if new is None else _guest_path(new, no + 1)
        status: Status
        if old_path is None and new_path is None:
            raise ValidationError(f"patch line {no}: both sides of a file section are /dev/null")
        if old_path is None:
            status, path = "added", new_path
        elif new_path is None:
            status, path = "deleted", old_path
        elif old_path != new_path:
            raise _fail(old_path, f"old and new paths differ ({new_path}); renames are unsupported")
        else:
            status, path = "modified", old_path
        assert path is not None
        self.i += 2
        hunks: list[Hunk] = []
        while self.i < len(self.lines) and self.header(self.i).startswith("@@"):
            hunks.append(self.hunk(path, len(hunks) + 1))
        if not hunks:
            raise _fail(path, f"file section at line {no} has no hunks")
        _check_hunks(path, status, hunks)
        return FilePatch(path, status, tuple(hunks))

    def hunk(self, path: str, number: int) -> Hunk:
        no = self.i + 1
        line = self.header(self.i)
        match = _HUNK_HEADER.fullmatch(line)
        if not match:
            raise _fail(path, f"malformed hunk header at line {no}: {line[:80]!r}")
        o_start, o_count, n_start, n_count = (
            int(g) if g is not None else 1 for g in match.groups()
        )
        header = line[: line.index(" @@") + 3]
        where = f"hunk {number} ({header}, line {no})"
        old_left, new_left = o_count, n_count
        body: list[tuple[str, str]] = []
        self.i += 1
        while self.i < len(self.lines):
            text, no = self.lines[self.i], self.i + 1
            if text.startswith("\\"):
                # "\ No newline at end of file": the line before it has no line ending. It
                # must be the last line of its side (context: of both), so counts stop anything
                # of that side from following it.
                if not body or not body[-1][1].endswith("\n"):
                    raise _fail(path, f"{where}: misplaced 'No newline' marker at line {no}")
                tag, content = body[-1]
                if {" ": old_left + new_left, "-": old_left, "+": new_left}[tag]:
                    raise _fail(
                        path,
                        f"{where}: 'No newline' marker at line {no} does not follow "
                        "the last line of its side",
                    )
                body[-1] = (tag, content.removesuffix("\n"))
                self.i += 1
                continue
            if not old_left and not new_left:
                break
            tag, content = (text[:1] or " "), text[1:] + "\n"
            if tag not in " -+":
                if text.startswith(("@@", "diff ")):
                    raise _fail(
                        path,
                        f"{where} ends early at line {no}: header says "
                        f"{o_count} old and {n_count} new lines",
                    )
                raise _fail(path, f"{where}: malformed hunk line {no}: {text[:80]!r}")
            if tag != "+":
                old_left -= 1
            if tag != "-":
                new_left -= 1
            if old_left < 0 or new_left < 0:
                raise _fail(path, f"{where}: more lines than its header says (line {no})")
            body.append((tag, content))
            self.i += 1
        if old_left or new_left:
            raise _fail(
                path,
                f"{where} ends early at the end of the patch: header says "
                f"{o_count} old and {n_count} new lines",
            )
        if not body:
            raise _fail(path, f"{where} is empty")
        return Hunk(header, o_start, o_count, n_start, n_count, tuple(body))


def _check_hunks(path: str, status: Status, hunks: list[Hunk]) -> None:
    """Ranges valid, ordered, non-overlapping, new starts consistent, adds/deletes one-sided."""
    old_end = 0
    shift = 0
    for number, hunk in enumerate(hunks, 1):
        where = f"hunk {number} ({hunk.header})"
        if (hunk.old_count and not hunk.old_start) or (hunk.new_count and not hunk.new_start):
            raise _fail(path, f"{where}: a non-empty range cannot start at line 0")
        if status == "added" and hunk.old_count:
            raise _fail(path, f"{where}: a new file (--- /dev/null) can only have added lines")
        if status == "deleted" and hunk.new_count:
            raise _fail(path, f"{where}: a deleted file (+++ /dev/null) can only lose lines")
        if hunk.old_index < old_end:
            raise _fail(path, f"{where}: hunks are out of order or overlap")
        new_index = hunk.new_start if hunk.new_count == 0 else hunk.new_start - 1
        if new_index != hunk.old_index + shift:
            expected = hunk.old_index + shift + (1 if hunk.new_count else 0)
            raise _fail(
                path,
                f"{where}: new start line {hunk.new_start} does not agree with "
                f"the old start line and earlier hunks (expected {expected})",
            )
        if any(text[-1:] != "\n" for _, text in hunk.lines) and number != len(hunks):
            raise _fail(path, f"{where}: only the last hunk may end without a newline")
        old_end = hunk.old_index + hunk.old_count
        shift += hunk.new_count - hunk.old_count


def parse_patch(text: str) -> list[FilePatch]:
    """Parse and validate unified-diff text; one FilePatch per file, in patch order."""
    if not isinstance(text, str):
        raise ValidationError("patch must be a string")
    if not text.strip():
        raise ValidationError("patch must not be empty")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError("patch is not valid UTF-8 text") from None
    if size > MAX_PATCH_BYTES:
        raise ValidationError(f"patch is {size} bytes; the limit is {MAX_PATCH_BYTES} (1 MiB)")
    if "\0" in text:
        raise ValidationError("patch must not contain NUL bytes")
    return _Parser(text).run()
