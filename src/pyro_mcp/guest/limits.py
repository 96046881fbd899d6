"""Limits the guest keeps itself: a process cap, and a watchdog where the engine's are coarse.

The host sends ``{"processes", "agent_tasks", "memory_mib", "watchdog"}`` with the first
``hello`` (see ``pyro_mcp.engines.limits``). The agent then moves itself into a pids cgroup
of its own, so every process it starts (exec, shells, services, and all their children)
counts against ``processes`` and a fork past it fails with EAGAIN. A Linux guest kernel
enforces that exactly. gVisor's cgroups are its own and may run over under a fork storm,
and its memory is bounded only by the host cgroup around the whole sandbox (crossing that
ends the sandbox). So there the ``watchdog`` thread polls: past the memory limit it kills
the process using the most memory, as a kernel's OOM killer would, and past the process
cap every process the agent started. A fork storm can still outrun it (gVisor gives the
watchdog little time then): the host cgroup's backstop ends the sandbox, and the
workspace's supervisor boots a fresh one on the same /workspace and says why.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from . import mounts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CGROUP_DIR = "/run/pyro-limits"
GROUP = "guest"
IDLE_POLL = 0.1  # seconds between checks while far from every limit
BUSY_POLL = 0.01  # once past half of one
AFTER_KILL = 0.3  # a killed process's memory takes a moment to come back

_STARTED = threading.Event()
# What the watchdog killed and why: (monotonic time, session id or None for all, note).
EVENTS: list[tuple[float, int | None, str]] = []
MAX_EVENTS = 64


def notes_for(session: int, since: float) -> list[str]:
    """Why the watchdog killed processes of ``session`` (or everything) after ``since``."""
    return [note for at, sid, note in list(EVENTS) if at >= since and sid in (None, session)]


def _record(session: int | None, note: str) -> None:
    EVENTS.append((time.monotonic(), session, note))
    del EVENTS[:-MAX_EVENTS]


def apply(limits: dict[str, Any]) -> None:
    """Set the limits up once (a restored VM template sends them again: ignored)."""
    if _STARTED.is_set():
        return
    _STARTED.set()
    processes = int(limits["processes"])
    group = _join_pids_cgroup(processes + int(limits.get("agent_tasks") or 0))
    if limits.get("watchdog"):
        watch = Watchdog(int(limits["memory_mib"]) * 1024 * 1024, group)
        threading.Thread(target=watch.run, name="pyro-limits", daemon=True).start()


def _join_pids_cgroup(max_tasks: int) -> str | None:
    """Mount a pids cgroup hierarchy (v1, else v2), make our group, move the agent in."""
    os.makedirs(CGROUP_DIR, exist_ok=True)
    group = f"{CGROUP_DIR}/{GROUP}"
    for kind, options in (("cgroup", "pids"), ("cgroup2", None)):
        try:
            mounts.mount("pyro-pids", CGROUP_DIR, kind, 0, options)  # no `mount` process
            break
        except OSError:
            continue
    else:
        return None
    try:
        if os.path.exists(f"{CGROUP_DIR}/cgroup.subtree_control"):
            _write(f"{CGROUP_DIR}/cgroup.subtree_control", "+pids")
        os.makedirs(group, exist_ok=True)
        _write(f"{group}/pids.max", str(max_tasks))
        _write(f"{group}/cgroup.procs", str(os.getpid()))
    except OSError:
        return None
    return group


def _write(path: str, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


class Watchdog:
    def __init__(self, memory_bytes: int, group: str | None) -> None:
        self.memory_bytes = memory_bytes
        self.group = group
        self.max_tasks = int(_read(f"{group}/pids.max") or 0) if group else 0
        self.spared = {1, os.getpid(), os.getppid()}

    def run(self) -> None:
        delay = IDLE_POLL
        while True:
            time.sleep(delay)
            try:
                delay = self.check()
            except Exception:  # never let the watchdog die on a racing /proc
                delay = IDLE_POLL

    def check(self) -> float:
        used = memory_used()
        tasks = self.tasks()
        if used > self.memory_bytes:
            self.kill_largest_memory()
            return AFTER_KILL
        if self.max_tasks and tasks >= self.max_tasks:
            self.kill_group()
        busy = used * 2 > self.memory_bytes or (self.max_tasks and tasks * 2 > self.max_tasks)
        return BUSY_POLL if busy else IDLE_POLL

    def tasks(self) -> int:
        """Tasks in the guest's group, or in the whole hierarchy when a guest root moved
        processes out of it; puts the group's cap back if it was raised."""
        if not self.group:
            return 0
        if _read(f"{self.group}/pids.max") != str(self.max_tasks):
            try:
                _write(f"{self.group}/pids.max", str(self.max_tasks))
            except OSError:
                pass
        counts = (_read(f"{self.group}/pids.current"), _read(f"{CGROUP_DIR}/pids.current"))
        return max(int(c) for c in counts if c.isdigit()) if any(counts) else 0

    def kill_largest_memory(self) -> None:
        sizes = {pid: _resident(pid) for pid in self._pids()}
        if sizes:
            pid = max(sizes, key=lambda p: sizes[p])
            _kill([pid])
            mib = self.memory_bytes >> 20
            _record(
                _session(pid),
                f"pyro: process {pid} was killed: the workspace went over its memory limit "
                f"({mib} MiB; files in /tmp, /run, /dev/shm and outside /workspace count too)\n",
            )

    def kill_group(self) -> None:
        """Past the process cap: end every process the agent started (a fork storm outruns
        any finer choice here, and counting sessions in /proc under one takes seconds)."""
        assert self.group is not None
        listed = _read(f"{self.group}/cgroup.procs") + " " + _read(f"{CGROUP_DIR}/cgroup.procs")
        pids = {int(p) for p in listed.split()}
        _kill(pids - self.spared)
        _record(
            None,
            f"pyro: every process was killed: the workspace went over its process limit "
            f"({self.max_tasks} tasks)\n",
        )

    def _pids(self) -> list[int]:
        return [int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) not in self.spared]


def _kill(pids: list[int] | set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def memory_used() -> int:
    """Bytes the guest uses (processes, tmpfs, the root's writable layer): total - free."""
    fields: dict[str, int] = {}
    with open("/proc/meminfo", "rb") as handle:
        for line in handle:
            name, _, rest = line.partition(b":")
            if name in (b"MemTotal", b"MemFree"):
                fields[name.decode()] = int(rest.split()[0]) * 1024
    return fields.get("MemTotal", 0) - fields.get("MemFree", 0)


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _resident(pid: int) -> int:
    fields = _read(f"/proc/{pid}/statm").split()
    return int(fields[1]) if len(fields) > 1 else 0


def _session(pid: int) -> int | None:
    fields = _read(f"/proc/{pid}/stat").rpartition(")")[2].split()
    return int(fields[3]) if len(fields) > 3 else None
