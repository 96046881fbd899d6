"""pyro-mcp: disposable, isolated Linux workspaces for coding agents.

The public names are loaded on first use, so internal processes (the workspace supervisor,
the guest agent) do not pay for importing every surface.
"""

from __future__ import annotations

from .version import __version__

TYPE_CHECKING = False  # not typing's: `pyro` starts without importing typing (cli/launch.py)
if TYPE_CHECKING:
    from typing import Any

    from mcp.server.fastmcp import FastMCP

    from .api import Pyro
    from .manager import VmManager

__all__ = ["Pyro", "VmManager", "__version__", "create_server"]


def create_server(
    manager: VmManager | Pyro | None = None, *, profile: str = "workspace-full"
) -> FastMCP:
    """The MCP server for ``profile`` (vm-run, workspace-core or workspace-full)."""
    from .api import Pyro
    from .mcp.server import create_server as _create

    pyro = manager if isinstance(manager, Pyro) else Pyro(manager)
    return _create(pyro, profile=profile)


def __getattr__(name: str) -> Any:
    if name == "Pyro":
        from .api import Pyro

        return Pyro
    if name == "VmManager":
        from .manager import VmManager

        return VmManager
    raise AttributeError(f"module 'pyro_mcp' has no attribute {name!r}")
