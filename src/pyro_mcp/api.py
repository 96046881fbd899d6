"""The Python SDK: ``from pyro_mcp import Pyro``.

Each public method is an operation declaration (see ``pyro_mcp.operations``); the CLI and the
MCP server are derived from these same methods. Methods return plain JSON-style dicts.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .manager import VmManager
from .operations.disk import DiskOperations
from .operations.environments import EnvironmentOperations
from .operations.host import HostOperations
from .operations.network import NetworkOperations
from .operations.registry import Operation, collect
from .operations.secrets import SecretOperations
from .operations.services import ServiceOperations
from .operations.shells import ShellOperations
from .operations.snapshots import SnapshotOperations
from .operations.vms import VmOperations
from .operations.workspace_files import WorkspaceFileOperations
from .operations.workspaces import WorkspaceOperations

if TYPE_CHECKING:
    from mcp.server.fastmcp import FastMCP

    from .mcp.policy import OperatorPolicy


class Pyro(
    VmOperations,
    WorkspaceOperations,
    WorkspaceFileOperations,
    SnapshotOperations,
    ShellOperations,
    ServiceOperations,
    DiskOperations,
    NetworkOperations,
    SecretOperations,
    EnvironmentOperations,
    HostOperations,
):
    """Disposable, isolated Linux sandboxes and workspaces."""

    def __init__(
        self,
        manager: VmManager | None = None,
        *,
        backend_name: str | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        max_active_vms: int = 4,
    ) -> None:
        """``backend_name`` picks the engine: auto (default), gvisor or qemu.

        ``base_dir`` holds state (default ``$PYRO_HOME`` or ~/.local/share/pyro-mcp) and
        ``cache_dir`` the built environments (default ``$PYRO_CACHE_DIR`` or ~/.cache/pyro-mcp).
        """
        self._manager = manager or VmManager(
            engine=backend_name,
            base_dir=base_dir,
            cache_dir=cache_dir,
            max_active_vms=max_active_vms,
        )

    def create_server(
        self, profile: str = "workspace-full", policy: OperatorPolicy | None = None
    ) -> FastMCP:
        """An MCP server (FastMCP, stdio) exposing this instance's tools for ``profile``.

        ``policy`` holds the operator's settings (host roots, host compat, secrets; see
        ``pyro_mcp.mcp.policy``); the default allows no host compat and no secrets.
        """
        from .mcp.server import create_server

        return create_server(self, profile=profile, policy=policy)

    def close(self) -> None:
        """Delete every ephemeral VM this instance still holds."""
        self._manager.close()

    def __enter__(self) -> Pyro:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def operations(cli_word: str | None = None) -> list[Operation]:
    """Every public operation, mixin by mixin from the last base class to the first, each
    in its own declaration order (or those of one CLI command word)."""
    return collect(Pyro, cli_word)
