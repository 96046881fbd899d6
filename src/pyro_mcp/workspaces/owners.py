"""Processes a workspace depends on: who is creating or starting it, and its supervisor.

A create or start names its owner (the process's pid and start time, so a reused pid is
never taken for it) in the store before it changes anything, and drops the name when it is
done. An owner that died part-way (``kill -9`` of an SDK or MCP host) leaves that name
behind, which is how a later call knows there is something to sweep (lifecycle.py).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ..engines.profile import ENGINE_BINARIES
from ..procfs import stat_fields
from .layout import WorkspaceLayout

BINARIES = tuple(name.encode() for name in ENGINE_BINARIES)

SUPERVISOR_MODULE = b"pyro_mcp.workspaces.supervisor"


def identity(pid: int) -> str | None:
    """``pid:start-time`` of a live (non-zombie) process, or None."""
    fields = stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return f"{pid}:{fields[19]}"  # field 22 of stat: start time in clock ticks after boot


def current() -> str:
    return identity(os.getpid()) or f"{os.getpid()}:0"


def alive(owner: str) -> bool:
    pid, _, _ = owner.partition(":")
    return pid.isdigit() and identity(int(pid)) == owner


def _cmdlines() -> dict[int, bytes]:
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as handle:
                    found[int(name)] = handle.read()
            except OSError:
                continue
    return found


def supervisors(home: Path, workspace_id: str) -> list[int]:
    """The workspace's supervisor processes (booting or serving) for this state dir: by
    their command line, or (one started ahead, whose command line names no workspace:
    supervisor_start.py) by the identity its starter recorded before handing it over."""
    home_arg = b"\0--home\0" + str(home).encode() + b"\0"
    id_arg = b"\0--workspace\0" + workspace_id.encode() + b"\0"
    cmdlines = _cmdlines()
    found = {
        pid
        for pid, cmd in cmdlines.items()
        if SUPERVISOR_MODULE in cmd and home_arg in cmd and id_arg in cmd
    }
    for owner in _recorded(home, workspace_id):
        pid = int(owner.partition(":")[0]) if owner.partition(":")[0].isdigit() else -1
        if alive(owner) and SUPERVISOR_MODULE in cmdlines.get(pid, b""):
            found.add(pid)
    return sorted(found)


def is_supervisor(home: Path, workspace_id: str, pid: int | None) -> bool:
    """Whether live process ``pid`` is this workspace's supervisor (a reused pid is not):
    its command line names the workspace, or its starter noted its identity."""
    owner = identity(pid) if pid else None
    if owner is None or pid is None:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmd = handle.read()
    except OSError:
        return False
    if SUPERVISOR_MODULE not in cmd:
        return False
    if b"\0--workspace\0" + workspace_id.encode() + b"\0" in cmd:
        return True
    return owner in _recorded(home, workspace_id)


def _recorded(home: Path, workspace_id: str) -> list[str]:
    try:
        return WorkspaceLayout(home, workspace_id).supervisor_pids.read_text().split()
    except OSError:
        return []


def record_supervisor(home: Path, workspace_id: str, pid: int) -> None:
    """Note supervisor ``pid``'s identity for ``supervisors`` (by its starter, before the
    starter exits: the spawner waits for that exit, so it is never looked for unnoted)."""
    owner = identity(pid)
    if owner is not None:
        path = WorkspaceLayout(home, workspace_id).supervisor_pids
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "a") as out:
            out.write(owner + "\n")


def engines(path: Path) -> list[int]:
    """Live engine processes (runsc, qemu …) whose command line names ``path``."""
    needle = str(path).encode()
    return [
        pid
        for pid, cmd in _cmdlines().items()
        if needle in cmd and any(binary in cmd for binary in BINARIES) and identity(pid)
    ]


def kill(pid: int) -> None:
    """SIGKILL ``pid``'s process group if it leads one, else ``pid`` alone."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def end_processes(home: Path, workspace_id: str, root: Path, grace: float = 10.0) -> None:
    """End every process of a workspace whose owner is gone: its supervisors (one that is
    still booting included), then its engine. Killing a supervisor ends a gVisor sandbox
    cleanly (EOF on the agent's stdin); an engine still there after ``grace`` is killed."""
    empty_scans, deadline = 0, time.monotonic() + 3 * grace
    # Two empty scans in a row: a supervisor's first process may be forking the real one.
    while empty_scans < 2 and time.monotonic() < deadline:
        pids = supervisors(home, workspace_id)
        empty_scans = 0 if pids else empty_scans + 1
        for pid in pids:
            kill(pid)
        if pids:
            time.sleep(0.01)
    deadline = time.monotonic() + grace
    while (left := engines(root)) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in left:
        kill(pid)
