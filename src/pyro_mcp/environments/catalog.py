"""The fixed environment catalog (PRODUCT_SPEC §1.3)."""

from __future__ import annotations

from typing import NamedTuple

from ..errors import NotFoundError
from ..version import CATALOG_VERSION

DEBIAN_SUITE = "bookworm"
DEBIAN_VERSION = "12"
# Every environment gets these: python3 runs the guest agent; the rest keep a shell usable.
AGENT_PACKAGES = ("python3", "ca-certificates", "procps")


class EnvironmentSpec(NamedTuple):
    name: str
    description: str
    default_packages: tuple[str, ...]
    extra_packages: tuple[str, ...]
    source_profile: str
    version: str = "1.0.0"
    compatibility: str = ">=3.0.0,<4.0.0"
    distribution: str = "debian"
    distribution_version: str = DEBIAN_VERSION
    platform: str = "linux-x86_64"

    @property
    def packages(self) -> tuple[str, ...]:
        """What mmdebstrap installs on top of the minbase variant, sorted and unique."""
        return tuple(sorted(set(self.default_packages + self.extra_packages + AGENT_PACKAGES)))

    @property
    def dir_name(self) -> str:
        return f"{self.name.replace(':', '_')}-{self.version}"

    @property
    def oci_repository(self) -> str:
        return f"pyro-environment-{self.name.replace(':', '-')}"

    @property
    def catalog_version(self) -> str:
        return CATALOG_VERSION


CATALOG: dict[str, EnvironmentSpec] = {
    spec.name: spec
    for spec in (
        EnvironmentSpec(
            name="debian:12",
            description="Debian 12 (bookworm) with bash, coreutils and git.",
            default_packages=("bash", "coreutils", "git"),
            extra_packages=("less", "openssh-client", "python3-pip", "python3-venv"),
            source_profile="debian-git",
        ),
        EnvironmentSpec(
            name="debian:12-base",
            description="Minimal Debian 12 (bookworm) with bash and coreutils.",
            default_packages=("bash", "coreutils"),
            extra_packages=(),
            source_profile="debian-base",
        ),
        EnvironmentSpec(
            name="debian:12-build",
            description="Debian 12 (bookworm) with git, gcc, make, cmake and python3 for builds.",
            default_packages=("bash", "coreutils", "git", "gcc", "make", "cmake", "python3"),
            extra_packages=("build-essential", "pkg-config", "less", "python3-pip", "python3-venv"),
            source_profile="debian-build",
        ),
    )
}

DEFAULT_ENVIRONMENT = "debian:12"


def get_spec(name: str) -> EnvironmentSpec:
    spec = CATALOG.get(name)
    if spec is None:
        known = ", ".join(sorted(CATALOG))
        raise NotFoundError(f"unknown environment {name!r}; known environments: {known}")
    return spec
