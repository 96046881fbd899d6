"""Loop-mounting from the supervisor's process (workspaces/loopdev.py), on this real host.

Each mount is made in a child process in a private mount namespace, as the supervisor
does; the test checks what the host then sees: the device while it is mounted, none once
the mount and its process are gone (autoclear), the data in the image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyro_mcp.workspaces import blank_disk, loopdev

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/loop-control") or not shutil.which("unshare"),
    reason="needs root and loop devices",
)
CHILD = """
import sys, time
from pathlib import Path
from pyro_mcp.workspaces import loopdev
image, target, action = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
try:
    loopdev.mount(image, target)
except OSError as exc:
    print("error", exc.errno, flush=True)
    sys.exit(0)
(target / "f").write_text("kept\\n")
print("mounted", *loopdev.users(image), flush=True)
if action == "hold":
    sys.stdin.read()  # until the test closes stdin
loopdev.detach(target)
print("detached", flush=True)
"""


def child(image: Path, target: Path, action: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *("unshare", "--mount", "--propagation", "private", sys.executable, "-c", CHILD),
            *(str(image), str(target), action),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def gone(image: Path, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while loopdev.users(image) and time.monotonic() < deadline:
        time.sleep(0.05)
    return loopdev.users(image) == []


def test_mount_is_seen_while_held_and_freed_with_its_process(tmp_path: Path) -> None:
    image, target = tmp_path / "disk.ext4", tmp_path / "mnt"
    target.mkdir()
    blank_disk.make(tmp_path, image, 64)
    assert loopdev.users(image) == []
    proc = child(image, target, "hold")
    try:
        line = proc.stdout.readline().split() if proc.stdout else []
        assert line[:1] == ["mounted"] and len(line) == 2, line
        assert loopdev.users(image) == [line[1]]  # the host sees it: a second mount waits
        assert not os.path.ismount(target)  # the mount itself stays in the child's namespace
    finally:
        proc.communicate("", timeout=30)
    assert gone(image), "the loop device outlived its mount"
    dump = subprocess.run(
        ["debugfs", "-R", "cat /f", str(image)], capture_output=True, text=True, check=True
    )
    assert dump.stdout == "kept\n"


def test_a_lazy_detach_frees_the_device(tmp_path: Path) -> None:
    image, target = tmp_path / "disk.ext4", tmp_path / "mnt"
    target.mkdir()
    blank_disk.make(tmp_path, image, 64)
    out, _ = child(image, target, "detach").communicate("", timeout=30)
    assert out.split("\n")[1] == "detached", out
    assert gone(image)


def test_not_an_ext4_image_fails_and_leaves_no_device(tmp_path: Path) -> None:
    image, target = tmp_path / "junk.img", tmp_path / "mnt"
    target.mkdir()
    with image.open("wb") as handle:
        handle.write(os.urandom(4096))
        handle.truncate(64 * 1024 * 1024)
    out, _ = child(image, target, "detach").communicate("", timeout=30)
    assert out.split()[0] == "error", out
    assert gone(image)


def test_users_of_an_image_never_mounted(tmp_path: Path) -> None:
    assert loopdev.users(tmp_path / "none.ext4") == []
