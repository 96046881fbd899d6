"""The initramfs builder: a valid newc cpio (checked with the system's cpio) and module order."""

from __future__ import annotations

import gzip
import os
import stat
import subprocess
from pathlib import Path

import pytest

from pyro_mcp.engines.bundle import stage_agent
from pyro_mcp.environments.initramfs import (
    BOOT_MODULES,
    CpioWriter,
    build_agent_initramfs,
    build_base_initramfs,
    module_depends,
    module_index,
    resolve_modules,
)


def extract(archive_gz: bytes, into: Path) -> list[str]:
    """gunzip + ``cpio -idm`` with the system tools; return ``cpio -t``'s listing."""
    raw = subprocess.run(["gunzip", "-c"], input=archive_gz, capture_output=True, check=True)
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["cpio", "-idm", "--quiet", "--no-absolute-filenames"],
        input=raw.stdout,
        cwd=into,
        capture_output=True,
        check=True,
    )
    listing = subprocess.run(
        ["cpio", "-t", "--quiet"], input=raw.stdout, capture_output=True, check=True
    )
    return listing.stdout.decode().split()


def test_archive_extracts_with_system_cpio(tmp_path: Path) -> None:
    cpio = CpioWriter()
    cpio.directory("bin")
    cpio.file("bin/tool", b"#!/bin/sh\necho tool\n", 0o755)
    cpio.directory("etc")
    cpio.file("etc/empty", b"")
    cpio.symlink("bin/sh", "tool")
    binary = os.urandom(4099)
    cpio.file("etc/blob", binary, 0o600)
    archive = cpio.finish()
    assert archive[:2] == b"\x1f\x8b"  # gzip, as the kernel accepts it

    names = extract(archive, tmp_path)
    assert names == ["bin", "bin/tool", "etc", "etc/empty", "bin/sh", "etc/blob"]
    assert (tmp_path / "bin/tool").read_bytes() == b"#!/bin/sh\necho tool\n"
    assert stat.S_IMODE((tmp_path / "bin/tool").stat().st_mode) == 0o755
    assert (tmp_path / "etc/empty").read_bytes() == b""
    assert (tmp_path / "etc/blob").read_bytes() == binary
    assert stat.S_IMODE((tmp_path / "etc/blob").stat().st_mode) == 0o600
    assert os.readlink(tmp_path / "bin/sh") == "tool"
    assert (tmp_path / "bin").is_dir()


@pytest.mark.parametrize("size", range(8))
def test_every_name_and_data_length_is_padded_correctly(tmp_path: Path, size: int) -> None:
    # newc pads header+name and data to 4 bytes; each residue must round-trip.
    cpio = CpioWriter()
    names = []
    for n in range(1, 6):
        name = "f" * n + str(size)
        names.append(name)
        cpio.file(name, bytes([65 + n]) * (size + n))
    extract(cpio.finish(), tmp_path)
    for n, name in enumerate(names, start=1):
        assert (tmp_path / name).read_bytes() == bytes([65 + n]) * (size + n)


def test_newc_header_fields() -> None:
    cpio = CpioWriter()
    cpio.file("hello", b"abc", 0o640)
    raw = gzip.decompress(cpio.finish())
    assert raw.startswith(b"070701")
    fields = [int(raw[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
    _ino, mode, uid, gid, nlink, mtime, filesize = fields[:7]
    assert mode == stat.S_IFREG | 0o640
    assert (uid, gid, mtime, filesize, nlink) == (0, 0, 0, 3, 1)
    assert fields[11] == len(b"hello\0")  # namesize includes the NUL
    assert raw.rstrip(b"\0").endswith(b"TRAILER!!!")
    assert len(raw) % 4 == 0


def test_archives_are_deterministic() -> None:
    def build() -> bytes:
        cpio = CpioWriter()
        cpio.directory("d")
        cpio.file("d/f", b"same")
        return cpio.finish()

    assert build() == build()


# -- kernel modules ---------------------------------------------------------------------------


def fake_modules(root: Path, deps: dict[str, str]) -> dict[str, Path]:
    """Write fake .ko files whose .modinfo-like text is ``depends=…``."""
    for name, depends in deps.items():
        path = root / "kernel" / f"{name}.ko"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x7fELF\0junk\0license=GPL\0depends=" + depends.encode() + b"\0more")
    return module_index(root)


def test_dependencies_come_first(tmp_path: Path) -> None:
    index = fake_modules(tmp_path, {"a": "b,c", "b": "c", "c": "", "unused": "c"})
    assert resolve_modules(index, ["a"]) == ["c", "b", "a"]


def test_shared_dependencies_appear_once(tmp_path: Path) -> None:
    index = fake_modules(tmp_path, {"a": "c", "b": "c", "c": ""})
    assert resolve_modules(index, ["a", "b", "c"]) == ["c", "a", "b"]


def test_dashes_and_underscores_name_the_same_module(tmp_path: Path) -> None:
    index = fake_modules(tmp_path, {"virtio-ring": "", "virtio_pci": "virtio-ring"})
    assert sorted(index) == ["virtio_pci", "virtio_ring"]
    assert module_depends(index["virtio_pci"]) == ["virtio_ring"]
    assert resolve_modules(index, ["virtio_pci"]) == ["virtio_ring", "virtio_pci"]


def test_dependency_cycle_terminates(tmp_path: Path) -> None:
    index = fake_modules(tmp_path, {"a": "b", "b": "a"})
    assert sorted(resolve_modules(index, ["a"])) == ["a", "b"]


def test_missing_dependency_is_named(tmp_path: Path) -> None:
    index = fake_modules(tmp_path, {"a": "ghost"})
    with pytest.raises(FileNotFoundError, match="kernel module ghost not found"):
        resolve_modules(index, ["a"])


def test_base_initramfs_carries_busybox_and_ordered_modules(tmp_path: Path) -> None:
    deps = {name: "" for name in BOOT_MODULES}
    deps.update(
        virtio_pci="virtio_pci_legacy_dev,virtio",
        virtio_blk="virtio,virtio_ring",
        virtio_pci_legacy_dev="",
        virtio="virtio_ring",
        virtio_ring="",
    )
    fake_modules(tmp_path / "modules", deps)
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF fake busybox")

    out = tmp_path / "out"
    extract(build_base_initramfs(busybox, tmp_path / "modules"), out)

    order = (out / "modules.order").read_text().split()
    assert set(order) == set(deps)
    for name, depends in deps.items():
        for dep in filter(None, depends.split(",")):
            assert order.index(dep) < order.index(name), f"{dep} must load before {name}"
    assert (out / "bin/busybox").read_bytes() == busybox.read_bytes()
    assert os.access(out / "bin/busybox", os.X_OK)
    for name in order:
        assert (out / "modules" / f"{name}.ko").is_file()
    for mountpoint in ("dev", "proc", "sys", "lower", "rw", "newroot"):
        assert (out / mountpoint).is_dir()


def test_agent_initramfs_carries_init_and_the_agent(tmp_path: Path) -> None:
    agent_dir = stage_agent(tmp_path / "cache")
    out = tmp_path / "out"
    extract(build_agent_initramfs(agent_dir), out)
    init = out / "init"
    assert os.access(init, os.X_OK)
    assert init.read_text().startswith("#!/bin/busybox sh\n")
    assert "switch_root /newroot" in init.read_text()
    staged = sorted(p.name for p in (agent_dir / "pyro_guest").glob("*.py"))
    assert "agent.py" in staged
    assert sorted(p.name for p in (out / "pyro/pyro_guest").glob("*.py")) == staged
    assert (out / "pyro/pyro_guest/agent.py").read_bytes() == (
        agent_dir / "pyro_guest/agent.py"
    ).read_bytes()
