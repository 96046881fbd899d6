"""Workspace diff over two in-memory tars (§2.10, plus mode changes and a bounded patch)."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp.errors import ValidationError
from pyro_mcp.workspaces import diff
from pyro_mcp.workspaces.diff import diff_trees

Spec = bytes | str | tuple[bytes, int] | None
"""bytes: a 0644 file; (bytes, mode): a file; "->target": a symlink; None: a directory."""


def tree(entries: dict[str, Spec]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for name, spec in entries.items():
            info = tarfile.TarInfo(name)
            data = None
            if spec is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif isinstance(spec, str):
                info.type, info.linkname = tarfile.SYMTYPE, spec.removeprefix("->")
            else:
                data, info.mode = spec if isinstance(spec, tuple) else (spec, 0o644)
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def statuses(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(e["path"], e["status"], e["artifact_type"]) for e in result["entries"]]


LINES = b"".join(b"line %d\n" % i for i in range(1, 11))


def test_no_change_including_dotslash_and_implied_parents() -> None:
    base = tree({"./src": None, "./src/a.py": b"x\n", "empty": None})
    result = diff_trees(base, tree({"src/a.py": b"x\n", "empty/": None}))
    assert result["changed"] is False and result["entries"] == [] and result["patch"] == ""
    assert result["summary"] == dict.fromkeys(
        ("total", "added", "modified", "deleted", "type_changed", "text_patched", "non_text"), 0
    )
    assert diff_trees(b"", tree({}))["changed"] is False


def test_add_modify_delete_text_files() -> None:
    base = tree({"keep.txt": LINES, "old.txt": b"bye\n"})
    new_lines = LINES.replace(b"line 5\n", b"line five\n")
    result = diff_trees(base, tree({"keep.txt": new_lines, "new.txt": b"a\nb\n"}))
    assert statuses(result) == [
        ("keep.txt", "modified", "file"),
        ("new.txt", "added", "file"),
        ("old.txt", "deleted", "file"),
    ]
    modified, added, deleted = (e["text_patch"] for e in result["entries"])
    assert modified == (
        "--- a/keep.txt\n+++ b/keep.txt\n@@ -2,7 +2,7 @@\n line 2\n line 3\n line 4\n"
        "-line 5\n+line five\n line 6\n line 7\n line 8\n"
    )
    assert added == "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1,2 @@\n+a\n+b\n"
    assert deleted == "--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"
    assert result["patch"] == modified + added + deleted
    assert result["patch_truncated"] is False
    assert result["summary"] == {
        "total": 3,
        "added": 1,
        "modified": 1,
        "deleted": 1,
        "type_changed": 0,
        "text_patched": 3,
        "non_text": 0,
    }
    assert set(result["entries"][0]) == {"path", "status", "artifact_type", "text_patch"}


def test_missing_final_newline_is_marked() -> None:
    result = diff_trees(tree({"a": b"one\ntwo"}), tree({"a": b"one\nthree"}))
    assert result["patch"].endswith(
        "-two\n\\ No newline at end of file\n+three\n\\ No newline at end of file\n"
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [(b"\x00\x01", b"\x00\x02"), (b"text\n", b"\xff\xfe bad utf-8"), (b"a\n", b"a\x00\n")],
)
def test_binary_content_is_non_text_without_patch(old: bytes, new: bytes) -> None:
    result = diff_trees(tree({"blob": old}), tree({"blob": new, "img": b"\x89PNG\x00"}))
    assert statuses(result) == [("blob", "modified", "file"), ("img", "added", "file")]
    assert [e["text_patch"] for e in result["entries"]] == [None, None]
    assert result["summary"]["non_text"] == 2 and result["summary"]["text_patched"] == 0
    assert result["patch"] == ""


def test_type_changes_and_symlink_retarget() -> None:
    base = tree({"f2l": b"x\n", "d2f": None, "d2f/inner": b"i\n", "link": "->a", "same": "->b"})
    current = tree({"f2l": "->elsewhere", "d2f": b"now a file\n", "link": "->c", "same": "->b"})
    result = diff_trees(base, current)
    assert statuses(result) == [
        ("d2f", "type_changed", "file"),
        ("d2f/inner", "deleted", "file"),
        ("f2l", "type_changed", "symlink"),
        ("link", "modified", "symlink"),
    ]
    by_path = {e["path"]: e for e in result["entries"]}
    assert by_path["link"]["text_patch"] is None and by_path["f2l"]["text_patch"] is None
    assert result["summary"]["type_changed"] == 2 and result["summary"]["text_patched"] == 1


def test_directories_appear_only_when_empty() -> None:
    base = tree({"gone": None, "full": None, "full/x": b"x\n", "stays": None})
    current = tree({"stays": None, "new": None, "tree": None, "tree/y": b"y\n"})
    assert statuses(diff_trees(base, current)) == [
        ("full/x", "deleted", "file"),
        ("gone", "deleted", "directory"),
        ("new", "added", "directory"),
        ("tree/y", "added", "file"),
    ]


def test_mode_change_is_reported() -> None:
    base = tree({"run.sh": (b"echo\n", 0o644), "tool": (b"v1\n", 0o644)})
    result = diff_trees(base, tree({"run.sh": (b"echo\n", 0o755), "tool": (b"v2\n", 0o755)}))
    run, tool = result["entries"]
    assert (run["status"], run["text_patch"], run["mode_change"]) == (
        "modified",
        None,
        "100644 -> 100755",
    )
    assert tool["mode_change"] == "100644 -> 100755" and "+v2" in tool["text_patch"]
    assert result["summary"]["modified"] == 2 and result["summary"]["text_patched"] == 1


def test_patch_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diff, "MAX_PATCH_BYTES", 200)
    current = {f"f{i}": b"".join(b"row %d\n" % j for j in range(30)) for i in range(3)}
    result = diff_trees(tree({}), tree(dict(current)))
    assert result["patch_truncated"] is True
    assert len(result["patch"].encode()) <= 200 and result["patch"].endswith("\n")
    assert all(e.get("patch_truncated") for e in result["entries"])


def test_hostile_trees_are_rejected() -> None:
    evil = tree({"../escape": b"x"})
    with pytest.raises(ValidationError, match=r"'\.\.'"):
        diff_trees(tree({}), evil)
    # Symlinks the guest made may point anywhere in the guest (a venv's bin/python):
    # diff reads them, never follows them.
    result = diff_trees(tree({}), tree({"up": "->../../etc", "py": "->/usr/bin/python3"}))
    assert sorted((e["path"], e["artifact_type"]) for e in result["entries"]) == [
        ("py", "symlink"),
        ("up", "symlink"),
    ]


@pytest.mark.skipif(shutil.which("patch") is None, reason="needs GNU patch")
def test_patch_applies_with_gnu_patch(tmp_path: Path) -> None:
    base = {"keep.txt": LINES, "old.txt": b"bye\n", "tail": b"no newline"}
    current = {
        "keep.txt": LINES.replace(b"line 9\n", b"nine\n") + b"eleven\n",
        "new/deep.txt": b"fresh\n",
        "tail": b"no newline, still",
    }
    for name, data in base.items():
        (tmp_path / name).write_bytes(data)
    patch = diff_trees(tree(dict(base)), tree(dict(current)))["patch"]
    subprocess.run(["patch", "-p1", "-s"], input=patch.encode(), cwd=tmp_path, check=True)
    assert not (tmp_path / "old.txt").exists()
    for name, data in current.items():
        assert (tmp_path / name).read_bytes() == data


def test_streams_compare_by_hash_and_keep_only_changed_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 13: the current tree is read once as a stream; a file over TEXT_LIMIT, or past
    the TEXT_BUDGET of changed text kept in one diff, is compared by its hash alone."""
    monkeypatch.setattr(diff, "TEXT_LIMIT", 8)
    monkeypatch.setattr(diff, "TEXT_BUDGET", 10)
    base = io.BytesIO(tree({"same": b"0123456789\n", "big": b"old text here\n"}))
    current = {"same": b"0123456789\n", "big": b"new text here\n", "a": b"aaaa\n"}
    current |= {"b": b"bbbb\n", "c": b"cccc\n"}
    result = diff_trees(base, io.BytesIO(tree(current)))
    patches = {e["path"]: e["text_patch"] for e in result["entries"]}
    assert set(patches) == {"a", "b", "big", "c"}  # "same" is unchanged by its hash
    assert patches["big"] is None  # over TEXT_LIMIT
    assert patches["a"] and patches["b"] and patches["c"] is None  # c: past the budget
    assert result["summary"]["non_text"] == 2
