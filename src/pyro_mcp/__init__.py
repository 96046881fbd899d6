"""pyro-mcp: disposable, isolated Linux workspaces for coding agents."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .api import Pyro
from .manager import VmManager
from .version import __version__

if TYPE_CHECKING:
    from mcp.server.fastmcp import FastMCP


def create_server(
    manager: VmManager | Pyro | None = None, *, profile: str = "workspace-full"
) -> FastMCP:
    """The MCP server for ``profile`` (vm-run, workspace-core or workspace-full)."""
    from .mcp.server import create_server as _create

    pyro = manager if isinstance(manager, Pyro) else Pyro(manager)
    return _create(pyro, profile=profile)


__all__ = ["Pyro", "VmManager", "__version__", "create_server"]
