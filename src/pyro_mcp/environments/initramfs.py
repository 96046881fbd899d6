"""The small initramfs that VM engines boot: busybox, the virtio modules, and an init script.

The init mounts the environment's ext4 image read-only, puts a writable overlay on top (tmpfs,
or the workspace disk when one is attached), copies the guest agent in and switches root to it.
The base image is never written, so any number of VMs share it.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

# Loaded in this order; dependencies are resolved from each module's own .modinfo.
BOOT_MODULES = ("virtio_pci", "virtio_blk", "virtio_console", "virtio_net", "overlay", "virtio_rng")

INIT_SCRIPT = r"""#!/bin/busybox sh
export PATH=/bin
busybox mount -t proc proc /proc
busybox mount -t sysfs sys /sys
busybox mount -t devtmpfs dev /dev
for m in $(busybox cat /modules.order); do busybox insmod /modules/$m.ko 2>/dev/null; done
upper=tmpfs
for arg in $(busybox cat /proc/cmdline); do
  case "$arg" in pyro.upper=*) upper="${arg#pyro.upper=}";; esac
done
fail() { echo "pyro-init: $*" > /dev/console; busybox sleep 1; echo o > /proc/sysrq-trigger; }
busybox mkdir -p /lower /rw /newroot
busybox mount -t ext4 -o ro /dev/vda /lower || fail "cannot mount root image"
if [ "$upper" = tmpfs ]; then
  busybox mount -t tmpfs -o mode=755 rw /rw || fail "cannot mount tmpfs"
else
  busybox mount -t ext4 "$upper" /rw || fail "cannot mount $upper"
fi
busybox mkdir -p /rw/upper /rw/work
busybox mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \
  || fail "cannot mount overlay"
busybox rm -rf /newroot/opt/pyro
busybox mkdir -p /newroot/opt/pyro
busybox cp -a /pyro/. /newroot/opt/pyro/
busybox mount --move /dev /newroot/dev
busybox umount /proc /sys
cd /newroot
busybox mount -t proc -o nosuid,nodev,noexec proc proc
busybox mount -t sysfs -o nosuid,nodev,noexec sysfs sys
busybox mkdir -p dev/pts dev/shm run tmp
busybox mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts dev/pts
busybox mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs dev/shm
busybox mount -t tmpfs -o nosuid,nodev,mode=755 tmpfs run
busybox mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs tmp
[ -e dev/ptmx ] || busybox ln -s pts/ptmx dev/ptmx
cd /
export PYTHONPATH=/opt/pyro PYTHONDONTWRITEBYTECODE=1
exec busybox switch_root /newroot /usr/bin/python3 -S -B -m pyro_guest.agent --init --channel virtio
"""


class CpioWriter:
    """A minimal writer for the kernel's ``newc`` cpio format (deterministic: mtime 0)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", nlink: int = 1) -> None:
        encoded = name.encode() + b"\0"
        fields = [
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            len(data),
            0,
            0,
            0,
            0,
            len(encoded),
            0,
        ]
        self.ino += 1
        header = b"070701" + b"".join(f"{value:08X}".encode() for value in fields)
        self.buf.write(header + encoded)
        self._pad()
        self.buf.write(data)
        self._pad()

    def _pad(self) -> None:
        self.buf.write(b"\0" * (-self.buf.tell() % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return gzip.compress(self.buf.getvalue(), compresslevel=6, mtime=0)


def module_index(modules_root: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in modules_root.rglob("*.ko"):
        index[path.stem.replace("-", "_")] = path
    return index


def module_depends(path: Path) -> list[str]:
    match = re.search(rb"depends=([A-Za-z0-9_,-]*)", path.read_bytes())
    if not match or not match.group(1):
        return []
    return [dep.decode().replace("-", "_") for dep in match.group(1).split(b",") if dep]


def resolve_modules(index: dict[str, Path], wanted: Iterable[str]) -> list[str]:
    """Wanted modules plus their dependencies, dependencies first."""
    order: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in order or name in trail:
            return
        if name not in index:
            raise FileNotFoundError(f"kernel module {name} not found")
        for dep in module_depends(index[name]):
            visit(dep, (*trail, name))
        order.append(name)

    for name in wanted:
        visit(name, ())
    return order


def build_base_initramfs(busybox: Path, modules_root: Path) -> bytes:
    index = module_index(modules_root)
    order = resolve_modules(index, BOOT_MODULES)
    cpio = CpioWriter()
    for name in ("bin", "dev", "proc", "sys", "modules", "lower", "rw", "newroot"):
        cpio.directory(name)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    cpio.file("modules.order", ("\n".join(order) + "\n").encode())
    for name in order:
        cpio.file(f"modules/{name}.ko", index[name].read_bytes())
    return cpio.finish()


def build_agent_initramfs(agent_dir: Path) -> bytes:
    """The second cpio (the kernel unpacks concatenated archives): /init and /pyro/pyro_guest.

    The init script travels with the agent, so both follow the installed pyro-mcp version
    without rebuilding environments.
    """
    cpio = CpioWriter()
    cpio.file("init", INIT_SCRIPT.encode(), 0o755)
    cpio.directory("pyro")
    cpio.directory("pyro/pyro_guest")
    package = agent_dir / "pyro_guest"  # only the package: agent.cpio.gz is written beside it
    for root, dirs, files in os.walk(package):
        dirs.sort()
        rel_root = Path(root).relative_to(agent_dir)
        for name in dirs:
            cpio.directory(str(Path("pyro") / rel_root / name))
        for name in sorted(files):
            cpio.file(str(Path("pyro") / rel_root / name), (Path(root) / name).read_bytes())
    return cpio.finish()
