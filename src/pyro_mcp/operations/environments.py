"""Environment operations: list, pull, inspect, prune (PRODUCT_SPEC §1.3)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, cast

from .base import OperationsBase
from .params import EnvironmentName
from .registry import FULL, HumanOutput, Param, operation
from .render import details

if TYPE_CHECKING:  # the shapes are for mypy and the MCP schema: not on the CLI's path
    from .results import EnvironmentInfo, PruneResult


def _render_list(items: list[dict[str, Any]]) -> HumanOutput:
    lines = [
        f"{env['name']} [{'installed' if env['installed'] else 'not installed'}] "
        f"{env['description']}"
        for env in items
    ]
    return HumanOutput(stdout="\n".join(lines) + "\n")


def _render_inspect(data: dict[str, Any]) -> HumanOutput:
    return HumanOutput(stdout=details(data, skip=("host_ca_certificates",)))


def _render_prune(data: dict[str, Any]) -> HumanOutput:
    paths = [*data["deleted_environment_dirs"], *data.get("deleted_cache_dirs", [])]
    if not paths:
        return HumanOutput(stdout="Nothing to prune.\n")
    return HumanOutput(stdout="".join(f"deleted {path}\n" for path in paths))


class EnvironmentOperations(OperationsBase):
    @operation(
        mcp="vm_list_environments",
        cli=("env", "list"),
        profiles=FULL,
        read_only=True,
        idempotent=True,
        render=_render_list,
    )
    def list_environments(self) -> list[EnvironmentInfo]:
        """List the environment catalog and which environments are installed here."""
        return cast("list[EnvironmentInfo]", self._manager.list_environments())

    @operation(cli=("env", "pull"), render=_render_inspect, idempotent=True)
    def pull_environment(
        self,
        environment: EnvironmentName,
        force: Annotated[bool, Param("Rebuild even if it is already installed.")] = False,
    ) -> EnvironmentInfo:
        """Build (or rebuild) an environment into the local cache, with progress.

        Environments are built reproducibly from Debian packages with mmdebstrap: a rootfs,
        an ext4 image, Debian's cloud kernel and a small initramfs, with a sha256 manifest.
        """
        return cast("EnvironmentInfo", self._manager.pull_environment(environment, force=force))

    @operation(cli=("env", "inspect"), read_only=True, idempotent=True, render=_render_inspect)
    def inspect_environment(self, environment: EnvironmentName) -> EnvironmentInfo:
        """Show one environment: catalog facts and, when installed, its manifest."""
        return cast("EnvironmentInfo", self._manager.inspect_environment(environment))

    @operation(cli=("env", "prune"), destructive=True, idempotent=True, render=_render_prune)
    def prune_environments(self) -> PruneResult:
        """Delete partial builds and unknown, stale or broken environment installs."""
        return cast("PruneResult", self._manager.prune_environments())
