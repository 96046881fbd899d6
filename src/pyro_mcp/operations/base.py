"""The base of the operation mixins: what every SDK method reaches through."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..manager import VmManager


class OperationsBase:
    _manager: VmManager

    @property
    def manager(self) -> VmManager:
        return self._manager
