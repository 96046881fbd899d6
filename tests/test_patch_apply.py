"""Applying parsed patches (PRODUCT_SPEC §2.8): strict matching, newlines at EOF both ways,
CRLF, add/modify/delete rules, preflight planning and the summary."""

from __future__ import annotations

import pytest

from pyro_mcp.errors import ValidationError
from pyro_mcp.workspaces.patch import (
    FilePatch,
    apply_file_patch,
    parse_patch,
    plan_patch,
    summarize_patch,
)

Files = dict[str, str]


def run(text: str, files: Files) -> Files:
    """Apply ``text`` to ``files`` (relative name -> text) the way the service would."""
    current = {f"/workspace/{name}": body for name, body in files.items()}
    result = dict(current)
    for path, new, _ in plan_patch(parse_patch(text), current.get):
        if new is None:
            del result[path]
        else:
            result[path] = new
    return {path.removeprefix("/workspace/"): body for path, body in result.items()}


def one(text: str) -> FilePatch:
    [fp] = parse_patch(text)
    return fp


def test_add_modify_delete_in_one_patch() -> None:
    text = (
        "--- a/x.txt\n+++ b/x.txt\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
        "--- /dev/null\n+++ b/dir/new.txt\n@@ -0,0 +1,2 @@\n+n1\n+n2\n"
        "--- a/old.txt\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-o1\n-o2\n"
    )
    files = {"x.txt": "a\nb\nc\n", "old.txt": "o1\no2\n", "keep.txt": "k\n"}
    assert run(text, files) == {"x.txt": "a\nB\nc\n", "dir/new.txt": "n1\nn2\n", "keep.txt": "k\n"}


def test_several_hunks_shift_line_numbers() -> None:
    before = "".join(f"{n}\n" for n in range(1, 21))
    text = (
        "--- a/n\n+++ b/n\n"
        "@@ -2,0 +3,2 @@\n+2a\n+2b\n"  # insert after line 2
        "@@ -10,2 +12 @@\n-10\n-11\n+ten-eleven\n"
        "@@ -20 +21 @@\n-20\n+twenty\n"
    )
    after = run(text, {"n": before})["n"].split("\n")
    assert after[:5] == ["1", "2", "2a", "2b", "3"]
    assert after[11:13] == ["ten-eleven", "12"]
    assert after[-2:] == ["twenty", ""]


def test_context_must_match_at_the_stated_line() -> None:
    # The right context exists, but at lines 4-6 rather than the stated 1-3: no offset search.
    text = "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
    with pytest.raises(ValidationError, match=r"hunk 1 \(@@ -1,3 \+1,3 @@\) does not apply"):
        run(text, {"x": "z\nz\nz\na\nb\nc\n"})
    with pytest.raises(ValidationError, match="line 1: the file has 'z\\\\n', the patch expects"):
        run(text, {"x": "z\na\nb\nc\n"})  # off by one: no fuzz either
    assert run(text, {"x": "a\nb\nc\nz\n"}) == {"x": "a\nB\nc\nz\n"}


def test_hunk_beyond_the_end_of_the_file() -> None:
    text = "--- a/x\n+++ b/x\n@@ -3,2 +3,2 @@\n c\n-d\n+D\n"
    with pytest.raises(ValidationError, match="needs lines 3-4 but the file has 3 lines"):
        run(text, {"x": "a\nb\nc\n"})


def test_removing_the_final_newline() -> None:
    text = "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+b\n\\ No newline at end of file\n"
    assert run(text, {"x": "a\nb\n"}) == {"x": "a\nb"}


def test_adding_the_final_newline() -> None:
    text = "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n"
    assert run(text, {"x": "a\nb"}) == {"x": "a\nb\n"}


def test_editing_a_file_that_keeps_no_final_newline() -> None:
    text = (
        "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n"
        "+c\n\\ No newline at end of file\n"
    )
    assert run(text, {"x": "a\nb"}) == {"x": "a\nc"}
    # Context that is the unterminated last line, on both sides.
    text = "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n+A\n b\n\\ No newline at end of file\n"
    assert run(text, {"x": "a\nb"}) == {"x": "A\nb"}


def test_add_and_delete_without_final_newline() -> None:
    add = "--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+only\n\\ No newline at end of file\n"
    assert run(add, {}) == {"x": "only"}
    delete = "--- a/x\n+++ /dev/null\n@@ -1 +0,0 @@\n-only\n\\ No newline at end of file\n"
    assert run(delete, {"x": "only"}) == {}
    with pytest.raises(ValidationError, match="has a newline at its end here"):
        run(delete, {"x": "only\n"})


def test_newline_markers_are_not_ignored() -> None:
    # A patch without a marker must not silently apply to a file lacking the final newline,
    # and one with a marker must not apply to a file that has it.
    plain = "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"
    with pytest.raises(ValidationError, match="line 2: the file has no newline at its end here"):
        run(plain, {"x": "a\nb"})
    marked = "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n"
    with pytest.raises(ValidationError, match="has a newline at its end here, but the patch"):
        run(marked, {"x": "a\nb\n"})


def test_a_line_without_newline_cannot_end_up_mid_file() -> None:
    # Appending after an unterminated last line would glue two lines together.
    text = "--- a/x\n+++ b/x\n@@ -1,0 +2 @@\n+b\n"
    with pytest.raises(ValidationError, match="would join line 1 to the next one"):
        run(text, {"x": "a"})
    # A marked new line whose hunk stops short of the end of the file.
    text = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+A\n\\ No newline at end of file\n"
    with pytest.raises(ValidationError, match="would join line 1"):
        run(text, {"x": "a\nb\n"})


def test_crlf_content_is_preserved() -> None:
    text = "--- a/w.txt\n+++ b/w.txt\n@@ -1,3 +1,3 @@\n one\r\n-two\r\n+TWO\r\n three\r\n"
    assert run(text, {"w.txt": "one\r\ntwo\r\nthree\r\n"}) == {"w.txt": "one\r\nTWO\r\nthree\r\n"}
    # A whole patch converted to CRLF (headers too) applies to the CRLF file the same way.
    crlf = text.replace("\r\n", "\n").replace("\n", "\r\n")
    assert run(crlf, {"w.txt": "one\r\ntwo\r\nthree\r\n"}) == {"w.txt": "one\r\nTWO\r\nthree\r\n"}
    lf = text.replace("\r", "")
    with pytest.raises(ValidationError, match=r"line endings differ \(CRLF versus LF\)"):
        run(lf, {"w.txt": "one\r\ntwo\r\nthree\r\n"})
    # Other separators that str.splitlines() would split on are plain content.
    odd = "a\x0cb\u2028c\n"
    text = f"--- a/o\n+++ b/o\n@@ -1 +1 @@\n-{odd}+x{odd}"
    assert run(text, {"o": odd}) == {"o": "x" + odd}


def test_add_existing_modify_missing_delete_missing() -> None:
    add = "--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+a\n"
    with pytest.raises(
        ValidationError, match="/workspace/x: cannot add the file: it already exists"
    ):
        run(add, {"x": ""})
    modify = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"
    with pytest.raises(ValidationError, match="cannot modify the file: it does not exist"):
        run(modify, {})
    delete = "--- a/x\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n"
    with pytest.raises(ValidationError, match="cannot delete the file: it does not exist"):
        run(delete, {})


def test_delete_that_leaves_content_behind() -> None:
    delete = "--- a/x\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n"
    with pytest.raises(ValidationError, match=r"leave content behind \(1 line\(s\) not removed"):
        run(delete, {"x": "a\nb\n"})


def test_result_over_one_mib() -> None:
    current = "a\n" + "y" * (1024 * 1024 - 3) + "\n"  # exactly 1 MiB
    grow = one("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+ab\n")
    with pytest.raises(ValidationError, match="would be 1048577 bytes, over the 1 MiB limit"):
        apply_file_patch(grow, current)
    same_size = one("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")
    assert apply_file_patch(same_size, current) == "b" + current[1:]


def test_applying_the_same_patch_twice_fails_clearly() -> None:
    modify = "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"
    once = run(modify, {"x": "a\nb\n"})
    with pytest.raises(ValidationError, match=r"line 2: .* \(this change looks already applied\)"):
        run(modify, once)
    add = "--- /dev/null\n+++ b/y\n@@ -0,0 +1 @@\n+y\n"
    with pytest.raises(ValidationError, match="already exists"):
        run(add, run(add, {}))
    delete = "--- a/y\n+++ /dev/null\n@@ -1 +0,0 @@\n-y\n"
    with pytest.raises(ValidationError, match="does not exist"):
        run(delete, run(delete, {"y": "y\n"}))


def test_plan_reads_everything_first_and_writes_nothing() -> None:
    text = (
        "--- a/z.txt\n+++ b/z.txt\n@@ -1 +1 @@\n-z\n+Z\n"
        "--- /dev/null\n+++ b/a.txt\n@@ -0,0 +1 @@\n+a\n"
        "--- a/m.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-m\n"
    )
    files = {"/workspace/z.txt": "z\n", "/workspace/m.txt": "m\n"}
    reads: list[str] = []

    def read(path: str) -> str | None:
        reads.append(path)
        return files.get(path)

    plan = plan_patch(parse_patch(text), read)
    assert reads == ["/workspace/z.txt", "/workspace/a.txt", "/workspace/m.txt"]
    assert plan == [
        ("/workspace/a.txt", "a\n", "added"),
        ("/workspace/m.txt", None, "deleted"),
        ("/workspace/z.txt", "Z\n", "modified"),
    ]
    assert files == {"/workspace/z.txt": "z\n", "/workspace/m.txt": "m\n"}


def test_plan_fails_as_a_whole_when_any_file_fails() -> None:
    text = "--- a/a\n+++ b/a\n@@ -1 +1 @@\n-a\n+A\n--- a/b\n+++ b/b\n@@ -1 +1 @@\n-b\n+B\n"
    with pytest.raises(ValidationError, match="/workspace/b: hunk 1"):
        plan_patch(parse_patch(text), {"/workspace/a": "a\n", "/workspace/b": "x\n"}.get)

    def read(path: str) -> str | None:
        if path.endswith("/b"):
            raise ValidationError(f"{path}: not a regular UTF-8 file")
        return "a\n"

    with pytest.raises(ValidationError, match="not a regular UTF-8 file"):
        plan_patch(parse_patch(text), read)
    fp = one("--- a/a\n+++ b/a\n@@ -1 +1 @@\n-a\n+A\n")
    with pytest.raises(ValidationError, match="more than one entry"):
        plan_patch([fp, fp], lambda _: "a\n")


def test_summary() -> None:
    plan: list[tuple[str, str | None, str]] = [
        ("/workspace/z", "z", "modified"),
        ("/workspace/a", "a", "added"),
        ("/workspace/d", None, "deleted"),
        ("/workspace/b", "b", "added"),
    ]
    assert summarize_patch(plan) == {  # type: ignore[arg-type]
        "changed": True,
        "summary": {"total": 4, "added": 2, "modified": 1, "deleted": 1},
        "entries": [
            {"path": "/workspace/a", "status": "added"},
            {"path": "/workspace/b", "status": "added"},
            {"path": "/workspace/d", "status": "deleted"},
            {"path": "/workspace/z", "status": "modified"},
        ],
    }
    empty = {"total": 0, "added": 0, "modified": 0, "deleted": 0}
    assert summarize_patch([]) == {"changed": False, "summary": empty, "entries": []}
