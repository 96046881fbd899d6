"""The local cache of built environments: list, inspect, pull (build), prune, ensure."""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import BuildError
from .catalog import CATALOG, EnvironmentSpec, get_spec

if TYPE_CHECKING:  # building is rare: .build (and its imports) load only for it
    from .build import Progress

PLATFORM = "linux-x86_64"
ARTIFACTS = ("rootfs.ext4", "vmlinuz", "initramfs.cpio.gz", "environment.json")


class InstalledEnvironment(NamedTuple):
    spec: EnvironmentSpec
    path: Path
    manifest: dict[str, Any]

    @property
    def rootfs_dir(self) -> Path:
        return self.path / "rootfs"

    @property
    def rootfs_image(self) -> Path:
        return self.path / "rootfs.ext4"

    @property
    def kernel(self) -> Path:
        return self.path / "vmlinuz"

    @property
    def initramfs(self) -> Path:
        return self.path / "initramfs.cpio.gz"


def _quiet(phase: str, detail: str) -> None:
    return None


class EnvironmentStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.platform_dir = root / PLATFORM

    def install_dir(self, spec: EnvironmentSpec) -> Path:
        return self.platform_dir / spec.dir_name

    def _read_manifest(self, spec: EnvironmentSpec) -> dict[str, Any] | None:
        path = self.install_dir(spec)
        if not all((path / name).exists() for name in ARTIFACTS) or not (path / "rootfs").is_dir():
            return None
        try:
            manifest = json.loads((path / "environment.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict) or manifest.get("version") != spec.version:
            return None
        if manifest.get("requested_packages") != list(spec.packages):
            return None  # the catalog changed what this environment holds: rebuild it
        return manifest

    def installed(self, name: str) -> InstalledEnvironment | None:
        spec = get_spec(name)
        manifest = self._read_manifest(spec)
        if manifest is None:
            return None
        return InstalledEnvironment(spec, self.install_dir(spec), manifest)

    def describe(self, spec: EnvironmentSpec) -> dict[str, Any]:
        manifest = self._read_manifest(spec)
        info: dict[str, Any] = {
            "name": spec.name,
            "version": spec.version,
            "description": spec.description,
            "default_packages": list(spec.default_packages),
            "distribution": spec.distribution,
            "distribution_version": spec.distribution_version,
            "platform": spec.platform,
            "oci_registry": None,
            "oci_repository": spec.oci_repository,
            "oci_reference": spec.version,
            "source_profile": spec.source_profile,
            "source_digest": manifest.get("source_digest") if manifest else None,
            "compatibility": spec.compatibility,
            "catalog_version": spec.catalog_version,
            "installed": manifest is not None,
            "cache_dir": str(self.root),
            "install_dir": str(self.install_dir(spec)),
        }
        if manifest is not None:
            info["install_manifest"] = {
                key: manifest.get(key)
                for key in (
                    "source",
                    "source_digest",
                    "suite",
                    "kernel_package",
                    "kernel_release",
                    "installed_at",
                    "build_seconds",
                    "artifacts",
                )
            }
            info["install_manifest"]["package_count"] = len(manifest.get("packages", []))
            certs = manifest.get("host_ca_certificates") or []
            info["host_ca_certificates"] = certs
            info["host_ca_note"] = (
                f"{len(certs)} CA certificate(s) the host trusts beyond Debian's were added "
                "(from /usr/local/share/ca-certificates) so HTTPS egress works behind "
                "intercepting proxies"
                if certs
                else "no extra host CA certificates were added"
            )
        return info

    def list(self) -> list[dict[str, Any]]:
        return [self.describe(spec) for spec in CATALOG.values()]

    def inspect(self, name: str) -> dict[str, Any]:
        return self.describe(get_spec(name))

    @contextlib.contextmanager
    def _lock(self, spec: EnvironmentSpec) -> Iterator[None]:
        self.platform_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.platform_dir / f".lock-{spec.dir_name}"
        with lock_path.open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def pull(
        self, name: str, progress: Progress | None = None, force: bool = False
    ) -> InstalledEnvironment:
        """Build the environment if it is not installed (or ``force``); return it."""
        spec = get_spec(name)
        report = progress or _quiet
        with self._lock(spec):
            existing = None if force else self.installed(name)
            if existing is not None:
                report("ready", f"{name} already installed at {existing.path}")
                return existing
            report("install", f"building {name} into {self.install_dir(spec)}")
            import tempfile

            from .build import build_environment, unmount_under

            partial = Path(
                tempfile.mkdtemp(prefix=f".partial-{spec.dir_name}-", dir=self.platform_dir)
            )
            try:
                manifest = build_environment(spec, partial, self.root / "kernels", report)
                target = self.install_dir(spec)
                if target.exists():
                    # Sandboxes still running from the old build keep their open files:
                    # move it aside (prune deletes it) instead of deleting it under them.
                    target.rename(self.platform_dir / f".stale-{spec.dir_name}-{partial.name}")
                partial.rename(target)
            except BaseException as exc:
                unmount_under(partial)
                shutil.rmtree(partial, ignore_errors=True)
                if isinstance(exc, OSError):
                    raise BuildError(f"building {name} failed: {exc}") from exc
                raise
            report("ready", f"{name} installed at {target}")
            return InstalledEnvironment(spec, target, manifest)

    def ensure(self, name: str, progress: Progress | None = None) -> InstalledEnvironment:
        return self.installed(name) or self.pull(name, progress)

    def prune(self) -> dict[str, Any]:
        """Delete partial builds, unknown or stale-version installs, and broken installs."""
        deleted: list[str] = []
        if self.platform_dir.is_dir():
            valid = {
                spec.dir_name for spec in CATALOG.values() if self._read_manifest(spec) is not None
            }
            for entry in sorted(self.platform_dir.iterdir()):
                if entry.name.startswith(".lock-"):
                    continue
                if entry.is_dir() and entry.name not in valid:
                    shutil.rmtree(entry, ignore_errors=True)
                    deleted.append(str(entry))
        return {"deleted_environment_dirs": deleted, "count": len(deleted)}
