"""Parsing patches for ``workspace patch apply`` (PRODUCT_SPEC §2.8): what is accepted and
every rejection. Applying them is in test_patch_apply.py."""

from __future__ import annotations

import re

import pytest

from pyro_mcp.errors import ValidationError
from pyro_mcp.workspaces.patch import parse_patch

MODIFY = "--- a/x.txt\n+++ b/x.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"


def test_git_style_section() -> None:
    text = (
        "diff --git a/src/x.py b/src/x.py\n"
        "index 3b18e51..a042389 100644\n"
        "--- a/src/x.py\n"
        "+++ b/src/x.py\n"
        "@@ -1,3 +1,3 @@ def main():\n"
        " a\n"
        "-b\n"
        "+c\n"
        " d\n"
    )
    [fp] = parse_patch(text)
    assert fp.path == "/workspace/src/x.py"
    assert fp.status == "modified"
    [hunk] = fp.hunks
    assert hunk.header == "@@ -1,3 +1,3 @@"
    assert hunk.old_lines == ["a\n", "b\n", "d\n"]
    assert hunk.new_lines == ["a\n", "c\n", "d\n"]


def test_several_files_add_modify_delete() -> None:
    text = (
        MODIFY
        + "--- /dev/null\n+++ b/new/file.txt\n@@ -0,0 +1,2 @@\n+one\n+two\n"
        + "--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-gone\n"
    )
    patches = parse_patch(text)
    assert [(p.path, p.status) for p in patches] == [
        ("/workspace/x.txt", "modified"),
        ("/workspace/new/file.txt", "added"),
        ("/workspace/old.txt", "deleted"),
    ]


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("x.txt", "x.txt", "/workspace/x.txt"),  # no prefixes
        ("/workspace/x.txt", "/workspace/x.txt", "/workspace/x.txt"),
        ("a/./src//x.txt", "b/src/x.txt", "/workspace/src/x.txt"),
        ("a/x.txt\t2024-01-01 10:00:00 +0000", "b/x.txt\t2024-01-02", "/workspace/x.txt"),
        ("a/x.txt ", "b/x.txt", "/workspace/x.txt"),  # stray trailing blank
        ("a/my file.txt\t", "b/my file.txt\t", "/workspace/my file.txt"),
        (
            '"a/caf\\303\\251 \\"q\\".txt"',
            '"b/caf\\303\\251 \\"q\\".txt"',
            '/workspace/café "q".txt',
        ),
        ("a/a/x.txt", "b/a/x.txt", "/workspace/a/x.txt"),  # only one prefix is stripped
    ],
)
def test_header_paths(old: str, new: str, path: str) -> None:
    [fp] = parse_patch(f"--- {old}\n+++ {new}\n@@ -1 +1 @@\n-a\n+b\n")
    assert fp.path == path


def test_tolerant_of_crlf_headers_missing_final_newline_and_blank_lines() -> None:
    text = "\n--- a/x\r\n+++ b/x\r\n@@ -1,3 +1,3 @@\r\n a\r\n\n-b\r\n+c\r\n\n\n"
    [fp] = parse_patch(text)
    # Header '\r's are dropped; content '\r's are content; '' is an empty context line.
    assert fp.hunks[0].lines == ((" ", "a\r\n"), (" ", "\n"), ("-", "b\r\n"), ("+", "c\r\n"))
    [fp] = parse_patch(MODIFY.rstrip("\n"))  # as after --patch "$(cat fix.patch)"
    assert fp.hunks[0].new_lines == ["a\n", "c\n"]


def test_no_newline_markers_strip_the_line_ending() -> None:
    text = (
        "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n"
        "+c\n\\ Kein Zeilenumbruch am Dateiende.\n"
    )
    [fp] = parse_patch(text)
    assert fp.hunks[0].old_lines == ["a\n", "b"]
    assert fp.hunks[0].new_lines == ["a\n", "c"]


def test_default_counts_and_multiple_hunks() -> None:
    text = "--- a/x\n+++ b/x\n@@ -2 +2 @@\n-b\n+B\n@@ -5,0 +6,2 @@\n+x\n+y\n@@ -9 +10,0 @@\n-z\n"
    [fp] = parse_patch(text)
    assert [(h.old_start, h.old_count, h.new_start, h.new_count) for h in fp.hunks] == [
        (2, 1, 2, 1),
        (5, 0, 6, 2),
        (9, 1, 10, 0),
    ]


def _hunk(body: str = "-a\n+b\n", header: str = "@@ -1 +1 @@") -> str:
    return f"{header}\n{body}"


REJECTED = [
    # input
    ("", "must not be empty"),
    (" \n\n", "must not be empty"),
    ("--- a/x\n+++ b/x\n" + _hunk("-a\0\n+b\n"), "NUL"),
    ("x" * (1024 * 1024 + 1), "limit is 1048576"),
    ("index 123..456\n", "no file changes"),
    ("Subject: fix things\n" + MODIFY, "unexpected line 'Subject: fix things'"),
    # git extended headers
    ("diff --git a/x b/x\nold mode 100644\nnew mode 100755\n", "patch for x: file mode lines"),
    ("diff --git a/x b/x\nnew file mode 100644\n--- /dev/null\n+++ b/x\n", "mode lines"),
    ("diff --git a/x b/x\ndeleted file mode 100644\n", "'deleted file mode 100644'"),
    ("new mode 100755\n", "patch: file mode lines"),
    ("diff --git a/x b/y\nsimilarity index 90%\n", "renames and copies"),
    ("diff --git a/x b/y\nrename from x\nrename to y\n", "renames and copies"),
    ("diff --git a/x b/y\ncopy from x\ncopy to y\n", "renames and copies"),
    ("diff --git a/x b/x\ndissimilarity index 80%\n", "renames and copies"),
    ("diff --git a/x b/x\nindex 1..2\nGIT binary patch\nliteral 5\n", "binary patches"),
    ("diff --git a/x b/x\nindex 1..2\nBinary files a/x and b/x differ\n", "binary patches"),
    ("Binary files a/x and b/x differ\n", "binary patches"),
    ("diff --git a/x b/x\n", "patch for x: section at line 1 has no ---/+++ headers"),
    ("diff --git a/x b/x\ndiff --git a/y b/y\n" + MODIFY, "has no ---/+++ headers"),
    # headers
    ("--- a/x\n" + _hunk(), "missing '+++' header after line 1"),
    ("--- a/x\n", "missing '+++' header"),
    ("+++ b/x\n" + _hunk(), "'+++' header without a '---' header"),
    ("--- a/x\n+++ b/y\n" + _hunk(), "old and new paths differ"),
    ("--- /dev/null\n+++ /dev/null\n" + _hunk(), "both sides"),
    ("--- a/\n+++ b/\n" + _hunk(), "names no file"),
    ('--- "a/x\n+++ b/x\n' + _hunk(), "malformed quoted file name"),
    ('--- "a/\\q"\n+++ b/x\n' + _hunk(), "malformed quoted file name"),
    ('--- "a/\\377"\n+++ b/x\n' + _hunk(), "malformed quoted file name"),  # not UTF-8
    ('--- "a/x"junk\n+++ b/x\n' + _hunk(), "malformed file header"),
    ("--- a/x\n+++ b/x\n", "patch for /workspace/x: file section at line 1 has no hunks"),
    ("--- a/x\n+++ b/x\n--- a/y\n+++ b/y\n" + _hunk(), "has no hunks"),
    ("@@ -1 +1 @@\n-a\n+b\n", "hunk outside a file section"),
    # paths
    ("--- a/../etc/passwd\n+++ b/../etc/passwd\n" + _hunk(), "must stay inside /workspace"),
    ("--- /etc/passwd\n+++ /etc/passwd\n" + _hunk(), "must stay inside /workspace"),
    ("--- /workspace/../x\n+++ /workspace/../x\n" + _hunk(), "must stay inside /workspace"),
    ("--- /dev/null\n+++ b/../../x\n" + _hunk("+a\n", "@@ -0,0 +1 @@"), "stay inside"),
    ("--- a/x/./../../y\n+++ b/x/./../../y\n" + _hunk(), "must stay inside /workspace"),
    ("--- /\n+++ /\n" + _hunk(), "must stay inside /workspace"),
    ("--- /workspace\n+++ /workspace\n" + _hunk(), "must name an entry inside /workspace"),
    ("--- a/x\x01\n+++ b/x\x01\n" + _hunk(), "control characters"),
    # hunk headers
    ("--- a/x\n+++ b/x\n@@ -1 +1\n-a\n+b\n", "malformed hunk header at line 3"),
    ("--- a/x\n+++ b/x\n@@ -a,1 +1 @@\n-a\n+b\n", "malformed hunk header"),
    ("--- a/x\n+++ b/x\n@@ 1 1 @@\n-a\n+b\n", "malformed hunk header"),
    ("--- a/x\n+++ b/x\n@@@ -1 -1 +1 @@@\n-a\n+b\n", "malformed hunk header"),
    ("--- a/x\n+++ b/x\n@@ -1 +1 @@junk\n-a\n+b\n", "malformed hunk header"),
    ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n@@ -9999999999 +1 @@\n-c\n", "malformed hunk"),
    ("--- a/x\n+++ b/x\n@@ -1,0 +1,0 @@\n", "is empty"),
    ("--- a/x\n+++ b/x\n@@ -0 +0 @@\n-a\n+b\n", "cannot start at line 0"),
    # hunk lines and counts
    ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n*a\n+b\n", "malformed hunk line 4: '*a'"),
    ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n\ta\n+b\n", "malformed hunk line"),
    ("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n", "ends early at the end of the patch"),
    ("--- a/x\n+++ b/x\n@@ -1,3 +1,2 @@\n a\n-b\n@@ -5 +4 @@\n-e\n+f\n", "ends early at line 6"),
    ("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\ndiff --git a/y b/y\n", "ends early at line 7"),
    # A short hunk swallows the next file's headers as lines, as in GNU patch; still an error.
    ("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n" + MODIFY, "overlap"),
    ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n-b\n+c\n", "more lines than its header says"),
    ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n+c\n", "past the end of the last hunk"),
    ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n c\n", "past the end of the last hunk"),
    # no-newline markers
    ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n\\ No newline at end of file\n-a\n+b\n", "misplaced"),
    ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n\\ No newline\n\\ No newline\n", "misplaced"),
    ("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n\\ No newline\n-b\n+c\n+d\n", "does not follow"),
    ("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n\\ No newline\n-b\n+c\n", "does not follow"),
    ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n\\ No newline\n@@ -3 +3 @@\n-c\n+d\n", "last hunk"),
    ("\\ No newline at end of file\n", "unexpected line"),
    # hunk order, overlap, line numbers, add/delete shape
    ("--- a/x\n+++ b/x\n@@ -5 +5 @@\n-e\n+E\n@@ -2 +2 @@\n-b\n+B\n", "out of order or overlap"),
    ("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n@@ -3 +3 @@\n-c\n+C\n", "overlap"),
    ("--- a/x\n+++ b/x\n@@ -2 +3 @@\n-b\n+B\n", "new start line 3 does not agree"),
    ("--- a/x\n+++ b/x\n@@ -1 +1,2 @@\n-a\n+A\n+B\n@@ -4 +4 @@\n-d\n+D\n", "(expected 5)"),
    ("--- /dev/null\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n", "can only have added lines"),
    ("--- a/x\n+++ /dev/null\n@@ -1 +1 @@\n-a\n+b\n", "can only lose lines"),
    # duplicates
    (MODIFY + MODIFY, "more than one entry"),
    (MODIFY + "--- a/./x.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n", "more than one entry"),
]


@pytest.mark.parametrize(("text", "message"), REJECTED)
def test_rejections(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        parse_patch(text)


def test_non_string_and_unencodable_input() -> None:
    with pytest.raises(ValidationError, match="must be a string"):
        parse_patch(b"--- a/x\n")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not valid UTF-8"):
        parse_patch(MODIFY + "\ud800")


def test_size_limit_is_in_utf8_bytes() -> None:
    body = "+" + "é" * 100 + "\n"  # 202 bytes a line
    lines = (1024 * 1024) // len(body.encode()) + 1
    text = f"--- /dev/null\n+++ b/x\n@@ -0,0 +1,{lines} @@\n" + body * lines
    assert len(text) < 1024 * 1024 < len(text.encode())
    with pytest.raises(ValidationError, match="limit is 1048576"):
        parse_patch(text)
    fits = f"--- /dev/null\n+++ b/x\n@@ -0,0 +1,{lines - 10} @@\n" + body * (lines - 10)
    assert parse_patch(fits)[0].status == "added"
