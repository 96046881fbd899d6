"""The base of the operation mixins: what every SDK method reaches through."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..manager import VmManager
    from ..workspaces.handle import Handle


class OperationsBase:
    _manager: VmManager

    @property
    def manager(self) -> VmManager:
        return self._manager

    def _ws(self, workspace_id: str) -> Handle:
        """The workspace the operations in ``pyro_mcp.workspaces`` act on."""
        return self._manager.workspaces.handle(workspace_id)
