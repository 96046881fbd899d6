"""Build an environment from Debian packages: rootfs (mmdebstrap), ext4 image, kernel, initramfs.

Everything happens in a ``.partial-*`` directory that is renamed into place only when complete,
so an interrupted or failed build leaves nothing half-installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import BuildError
from ..hostcmd import mkfs_ext4
from .catalog import DEBIAN_SUITE, EnvironmentSpec
from .initramfs import build_base_initramfs

Progress = Callable[[str, str], None]

HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
MIRROR = os.environ.get("PYRO_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get(
    "PYRO_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security"
)
# Reproducible timestamps in the rootfs (mmdebstrap honours it).
SOURCE_DATE_EPOCH = "1735689600"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(cmd: list[str], what: str, progress: Progress | None = None, **kw: Any) -> str:
    """Run a build tool; stream its info lines as progress; raise BuildError with its tail."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    lines: list[str] = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip()
        lines.append(line)
        if progress is not None and line.startswith("I: "):
            progress("detail", line[3:])
    if proc.wait() != 0:
        tail = "\n".join(lines[-15:])
        raise BuildError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return "\n".join(lines)


def unmount_under(path: Path) -> None:
    """Lazily unmount anything a failed build left mounted below ``path`` (mmdebstrap
    mounts /proc, /sys and /dev in the chroot), so deleting it never reaches the host's."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = str(path.resolve()) + "/"
    points = [
        line.split()[1].encode().decode("unicode_escape")
        for line in mounts
        if len(line.split()) > 1
    ]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def host_ca_certificates() -> list[Path]:
    """CA certificates the host trusts beyond Debian's own (corporate proxies, this network)."""
    if not HOST_CA_DIR.is_dir():
        return []
    return sorted(p for p in HOST_CA_DIR.rglob("*.crt") if p.is_file())


def build_rootfs(spec: EnvironmentSpec, rootfs: Path, progress: Progress) -> None:
    if shutil.which("mmdebstrap") is None:
        raise BuildError("mmdebstrap is not installed; run scripts/host-setup.sh (or make setup)")
    hook = Path(__file__).with_name("customize.sh")
    cmd = [
        "mmdebstrap",
        "--variant=minbase",
        "--mode=root" if os.geteuid() == 0 else "--mode=unshare",
        "--format=directory",
        f"--include={','.join(spec.packages)}",
        "--aptopt=Acquire::Retries=3",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-include=/usr/share/locale/locale.alias",
        f'--customize-hook=sh "{hook}" "$1"',
        DEBIAN_SUITE,
        str(rootfs),
        f"deb {MIRROR} {DEBIAN_SUITE} main",
        f"deb {MIRROR} {DEBIAN_SUITE}-updates main",
        f"deb {SECURITY_MIRROR} {DEBIAN_SUITE}-security main",
    ]
    env = dict(
        os.environ,
        SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH,
        LC_ALL="C.UTF-8",
        PYRO_HOST_CA_DIR=str(HOST_CA_DIR) if host_ca_certificates() else "",
    )
    _run(cmd, "mmdebstrap", progress, env=env, stdin=subprocess.DEVNULL)


def installed_packages(rootfs: Path) -> list[str]:
    status = rootfs / "var/lib/dpkg/status"
    packages: list[str] = []
    name = version = ""
    for line in [*status.read_text(errors="replace").splitlines(), ""]:
        if line.startswith("Package: "):
            name = line.split(": ", 1)[1]
        elif line.startswith("Version: "):
            version = line.split(": ", 1)[1]
        elif not line and name:
            packages.append(f"{name}={version}")
            name = version = ""
    return sorted(packages)


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def build_image(rootfs: Path, image: Path) -> None:
    size_mib = int(_dir_size(rootfs) * 1.25 / (1024 * 1024)) + 64
    _run(
        mkfs_ext4(
            image,
            *("-L", "pyro-root", "-U", "8d5ad5d1-7a7e-4a4f-9f39-7079726f0001"),
            *("-E", "root_owner=0:0,hash_seed=7079726f-6d63-7000-0000-000000000001"),
            *("-d", str(rootfs)),
            size_mib=size_mib,
        ),
        "mkfs.ext4",
        env=dict(os.environ, E2FSPROGS_FAKE_TIME=SOURCE_DATE_EPOCH),
    )


def resolve_kernel_package() -> str:
    out = subprocess.run(
        ["apt-cache", "depends", KERNEL_META_PACKAGE], capture_output=True, text=True, check=False
    ).stdout
    for raw in out.splitlines():
        line = raw.strip()
        if line.startswith("Depends: linux-image-"):
            return line.split(": ", 1)[1]
    raise BuildError(
        f"cannot resolve {KERNEL_META_PACKAGE} (run 'apt-get update', or scripts/host-setup.sh)"
    )


def fetch_kernel(kernels_dir: Path, progress: Progress) -> Path:
    """Download and unpack Debian's cloud kernel once; shared by every environment."""
    package = resolve_kernel_package()
    target = kernels_dir / package
    if (target / "vmlinuz").is_file() and (target / "modules").is_dir():
        return target
    progress("detail", f"downloading {package}")
    kernels_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=kernels_dir, prefix=".partial-") as tmp:
        work = Path(tmp)
        _run(
            ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package],
            f"apt-get download {package}",
            cwd=work,
        )
        debs = list(work.glob("*.deb"))
        if not debs:
            raise BuildError(f"apt-get download {package} produced no package")
        extract = work / "x"
        _run(["dpkg-deb", "-x", str(debs[0]), str(extract)], "dpkg-deb -x")
        stage = work / "stage"
        stage.mkdir()
        vmlinuz = next((extract / "boot").glob("vmlinuz-*"))
        shutil.copy2(vmlinuz, stage / "vmlinuz")
        modules = next((extract / "lib/modules").iterdir())
        shutil.move(str(modules / "kernel"), stage / "modules")
        (stage / "release").write_text(modules.name + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.rename(stage, target)
    return target


def build_environment(
    spec: EnvironmentSpec, partial: Path, kernels_dir: Path, progress: Progress
) -> dict[str, Any]:
    """Build everything into ``partial``; return the manifest (also written there)."""
    started = time.monotonic()
    progress("rootfs", f"mmdebstrap {DEBIAN_SUITE} + {', '.join(spec.packages)}")
    rootfs = partial / "rootfs"
    build_rootfs(spec, rootfs, progress)
    progress("image", "mkfs.ext4 -d rootfs")
    build_image(rootfs, partial / "rootfs.ext4")
    progress("kernel", f"Debian {KERNEL_META_PACKAGE}")
    kernel = fetch_kernel(kernels_dir, progress)
    shutil.copy2(kernel / "vmlinuz", partial / "vmlinuz")
    busybox = Path("/bin/busybox")
    if not busybox.is_file():
        raise BuildError("busybox-static is not installed; run scripts/host-setup.sh")
    progress("initramfs", "busybox + virtio modules")
    (partial / "initramfs.cpio.gz").write_bytes(build_base_initramfs(busybox, kernel / "modules"))
    progress("manifest", "sha256 of each artifact")
    artifacts = {}
    for name in ("rootfs.ext4", "vmlinuz", "initramfs.cpio.gz"):
        path = partial / name
        artifacts[name] = {"sha256": sha256_file(path), "size_bytes": path.stat().st_size}
    packages = installed_packages(rootfs)
    certs = [{"name": cert.name, "sha256": sha256_file(cert)} for cert in host_ca_certificates()]
    manifest: dict[str, Any] = {
        "catalog_version": spec.catalog_version,
        "name": spec.name,
        "version": spec.version,
        "source": "mmdebstrap",
        "source_digest": "sha256:" + hashlib.sha256("\n".join(packages).encode()).hexdigest(),
        "suite": DEBIAN_SUITE,
        "kernel_package": kernel.name,
        "kernel_release": (kernel / "release").read_text().strip(),
        "installed_at": time.time(),
        "build_seconds": round(time.monotonic() - started, 1),
        "artifacts": artifacts,
        "requested_packages": list(spec.packages),
        "packages": packages,
        "host_ca_certificates": certs,
    }
    (partial / "environment.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
