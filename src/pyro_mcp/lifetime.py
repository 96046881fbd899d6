"""The one lifetime policy of ephemeral VMs and workspaces.

admit: the shared max-active cap (every VM of this process and every running or starting
workspace of the state dir counts) and its message. expire: the one expiry step, used on
access, by the reapers, by a VM's timer and by a workspace supervisor's TTL watch.
extend: a new expiry counted from now. idle_stop_at: when a running workspace stops
for want of activity (its supervisor's watch reads both clocks from the record).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import StateError

if TYPE_CHECKING:
    from .vms import VmRecord
    from .workspaces.store import Store

Kind = Literal["vm", "workspace"]
# What to do about a full cap, said to the caller of the refused create or start.
ADVICE: dict[Kind, str] = {
    "vm": "delete old VMs first",
    "workspace": "stop or delete a running workspace first (stopped workspaces do not count)",
}


def admit(kind: Kind, active: int, limit: int) -> None:
    """The capacity rule: one more running VM or workspace needs ``active`` (those running
    already, itself not included) below ``limit``."""
    if active >= limit:
        raise StateError(f"max active VMs reached ({limit}); {ADVICE[kind]}")


def due(expires_at: float, now: float | None = None) -> bool:
    """The expiry rule: a VM or workspace lives until its ``expires_at``, not a moment on."""
    return (time.time() if now is None else now) >= float(expires_at)


def extend(ttl_seconds: int, now: float | None = None) -> dict[str, float]:
    """An extension (or shortening): the workspace now expires ``ttl_seconds`` from now
    (already held to the operator's ceiling)."""
    stamp = time.time() if now is None else now
    return {"ttl_seconds": ttl_seconds, "expires_at": stamp + ttl_seconds}


def idle_stop_at(record: dict[str, Any], since: float = 0.0) -> float | None:
    """The idle rule: a running workspace with ``idle_stop_seconds`` (0: never) is stopped,
    not deleted, that long after its ``last_activity_at`` (or ``since``, its supervisor's
    start, if later: a start is activity)."""
    idle = int(record.get("idle_stop_seconds") or 0)
    if not idle or record["state"] != "started":
        return None
    return max(float(record["last_activity_at"]), since) + idle


def idle_due(record: dict[str, Any], now: float | None = None, since: float = 0.0) -> bool:
    at = idle_stop_at(record, since)
    return at is not None and (time.time() if now is None else now) >= at


def expired_error(kind: Kind, ident: str, ttl_seconds: int) -> StateError:
    """What a call on an expired VM or workspace is told."""
    if kind == "vm":
        return StateError(f"vm {ident!r} expired and was automatically deleted")
    return StateError(
        f"workspace {ident!r} expired (ttl {ttl_seconds}s) and was automatically deleted"
    )


def expire(
    kind: Kind, ident: str, ttl_seconds: int, end: Callable[[], None], store: Store | None
) -> None:
    """The expiry step: a workspace is remembered as expired (so later calls say so, not
    'does not exist'), then ``end`` removes it and everything it ran."""
    if kind == "workspace":
        assert store is not None
        store.mark_expired(ident, ttl_seconds, time.time())
    end()


class Lifetime:
    """The cap shared by one runtime's VMs (``vms``: this process's, by id) and the state
    dir's workspaces (counted in their database, opened only once one exists)."""

    def __init__(self, home: Path, max_active: int) -> None:
        self.home = home
        self.max_active = max_active
        self.vms: dict[str, VmRecord] = {}
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        """The workspaces' database (made on first use)."""
        if self._store is None:
            from .workspaces.store import Store

            self._store = Store(self.home / "state.db")
        return self._store

    def running_workspaces(self) -> int:
        if self._store is None and (
            not (self.home / "state.db").exists() or not _has_entries(self.home / "workspaces")
        ):
            return 0  # every workspace has its directory from before it counts until deleted
        return self.store.count_active()

    def admit_vm(self) -> None:
        admit("vm", len(self.vms) + self.running_workspaces(), self.max_active)

    def admit_workspace(self, running_workspaces: int) -> None:
        """For the store, inside the transaction that counted ``running_workspaces``."""
        admit("workspace", running_workspaces + len(self.vms), self.max_active)


def _has_entries(path: Path) -> bool:
    try:
        with os.scandir(path) as entries:
            return any(True for _ in entries)
    except OSError:
        return False
