"""Patches made by the real tools (``git diff``, ``diff -u``) parse and apply exactly, and what
git can express but the contract rejects (modes, renames, binaries) is refused clearly."""

from __future__ import annotations

import os
import random
import re
import subprocess
from pathlib import Path

import pytest

from pyro_mcp.errors import ValidationError
from pyro_mcp.workspaces.patch import parse_patch, plan_patch

Files = dict[str, str]


def apply(text: str, files: Files) -> Files:
    current = {f"/workspace/{name}": body for name, body in files.items()}
    result = dict(current)
    for path, new, _ in plan_patch(parse_patch(text), current.get):
        if new is None:
            del result[path]
        else:
            result[path] = new
    return {path.removeprefix("/workspace/"): body for path, body in result.items()}


def write_tree(root: Path, files: Files) -> None:
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body.encode())


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "LC_ALL": "C",
    }
    proc = subprocess.run(
        ["git", "-c", "core.autocrlf=false", "-c", "core.quotePath=true", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        check=True,
    )
    return proc.stdout.decode("utf-8")


def diff(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["diff", *args], cwd=cwd, capture_output=True, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout.decode("utf-8")


BEFORE: Files = {
    "src/app.py": "".join(f"line {n}\n" for n in range(1, 31)),
    "crlf.txt": "one\r\ntwo\r\nthree\r\n",
    "noeol.txt": "a\nb",
    "eol.txt": "a\nb\n",
    "café.txt": "ünïcode\n",
    "dir with space/f.txt": "x\n",
}
AFTER: Files = {
    "src/app.py": BEFORE["src/app.py"]
    .replace("line 3\n", "line three\n")
    .replace("line 25\n", "line 25\nline 25.5\n"),
    "crlf.txt": "one\r\nTWO\r\nthree\r\n",
    "noeol.txt": "a\nb\n",
    "eol.txt": "a\nb",
    "café.txt": "ünïcödé\n",
    "dir with space/f.txt": "y\n",
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    write_tree(tmp_path, BEFORE)
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "base")
    return tmp_path


def test_git_diff_applies_exactly(repo: Path) -> None:
    write_tree(repo, AFTER)
    text = git(repo, "diff", "--no-color", "--no-ext-diff")
    assert '"a/caf\\303\\251.txt"' in text  # git quoted the non-ASCII name
    assert "\\ No newline at end of file" in text
    assert apply(text, BEFORE) == AFTER
    with pytest.raises(ValidationError, match="looks already applied"):
        apply(text, AFTER)


@pytest.mark.parametrize("context", ["-U0", "-U1", "-U5"])
def test_git_diff_context_sizes(repo: Path, context: str) -> None:
    write_tree(repo, AFTER)
    assert apply(git(repo, "diff", "--no-color", context), BEFORE) == AFTER


def test_git_adds_and_deletes_carry_mode_lines(repo: Path) -> None:
    write_tree(repo, {"new.txt": "fresh\n"})
    git(repo, "add", "-N", "new.txt")
    (repo / "eol.txt").unlink()
    text = git(repo, "diff", "--no-color")
    with pytest.raises(ValidationError, match="file mode lines are not supported"):
        apply(text, BEFORE)
    # Without the mode lines (as the error says) the same patch is what the contract takes.
    stripped = re.sub(r"(?m)^(new|deleted) file mode \d+\n", "", text)
    expected = {k: v for k, v in BEFORE.items() if k != "eol.txt"} | {"new.txt": "fresh\n"}
    assert apply(stripped, BEFORE) == expected


def test_git_mode_change_rename_and_binary_are_rejected(repo: Path) -> None:
    (repo / "src/app.py").chmod(0o755)
    with pytest.raises(ValidationError, match=r"patch for src/app\.py: file mode lines"):
        parse_patch(git(repo, "diff"))
    git(repo, "mv", "noeol.txt", "renamed.txt")
    with pytest.raises(ValidationError, match="renames and copies are not supported"):
        parse_patch(git(repo, "diff", "--cached", "-M"))
    git(repo, "reset", "-q")
    (repo / "blob.bin").write_bytes(b"\x00\x01\x02")
    git(repo, "add", "blob.bin")
    (repo / "blob.bin").write_bytes(b"\x00\x01\x03")
    for flags in ([], ["--binary"]):
        with pytest.raises(ValidationError, match="binary patches are not supported"):
            parse_patch(git(repo, "diff", *flags, "--", "blob.bin"))


def test_diff_u_output_applies_exactly(tmp_path: Path) -> None:
    write_tree(tmp_path / "a", BEFORE | {"gone.txt": "bye\n"})
    write_tree(tmp_path / "b", AFTER | {"new.txt": "hi\nthere"})
    text = diff(tmp_path, "-ru", "a", "b")  # "diff -ru a/x b/x" lines between files
    assert text.startswith("diff -ru ") and "Only in" in text
    modified = "".join(line for line in text.splitlines(True) if not line.startswith("Only in"))
    text = (
        modified
        + diff(tmp_path, "-u", "/dev/null", "b/new.txt")
        + diff(tmp_path, "-u", "a/gone.txt", "/dev/null")
    )
    assert "--- /dev/null\t" in text  # diff -u puts a timestamp after a tab
    result = apply(text, BEFORE | {"gone.txt": "bye\n"})
    assert result == AFTER | {"new.txt": "hi\nthere"}


def _random_text(rng: random.Random) -> str:
    lines = [rng.choice(["a", "b", "c", "", "a\r", "dup"]) for _ in range(rng.randint(0, 12))]
    text = "".join(f"{line}\n" for line in lines)
    if text and rng.random() < 0.4:
        text = text[:-1]  # no newline at the end
    return text


def _mutate(rng: random.Random, text: str) -> str:
    lines = text.split("\n")
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(lines))
        action = rng.random()
        if action < 0.4 and at < len(lines):
            del lines[at]
        elif action < 0.7:
            lines.insert(at, rng.choice(["new", "a", "", "b\r"]))
        elif at < len(lines):
            lines[at] = lines[at] + "!"
    return "\n".join(lines)


def test_random_round_trips_through_diff(tmp_path: Path) -> None:
    rng = random.Random(20261128)
    for case in range(80):
        old = _random_text(rng)
        new = _mutate(rng, old)
        if new == old or not old or not new:
            continue
        write_tree(tmp_path, {"a/f": old, "b/f": new})
        for context in ("-U0", "-U1", "-U3"):
            text = diff(tmp_path, context, "a/f", "b/f")
            assert apply(text, {"f": old}) == {"f": new}, (case, context, text)
            back = diff(tmp_path, context, "b/f", "a/f").replace("--- b/f", "--- a/f", 1)
            back = back.replace("+++ a/f", "+++ b/f", 1)
            assert apply(back, {"f": new}) == {"f": old}, (case, context, back)
